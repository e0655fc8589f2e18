"""Command line: `openvasa generate | reenact | demo | prep | train-motion | eval | serve | verify`. A thin layer over openvasa.pipeline and
openvasa.data.prep."""

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from openvasa.errors import OpenVasaError
from openvasa.motion.controls import CONTROL_HELP, MOTION_MODELS, MotionControls
from openvasa.motion.settings import SETTING_HELP, GenerationSettings

DEMO_TEXT = (
    "Hello! I am a talking portrait made by open vasa. I run in real time on an ordinary laptop, "
    "and all I need is one picture and your voice."
)


FRAMINGS = ("auto", "wide")  # openvasa.face.detect.FRAMINGS (not imported here: --help stays light)
FRAMING_HELP = (
    "auto (default): head and shoulders as far as the picture reaches, a close-up when it is tight, every pixel "
    "from the picture; wide: head and shoulders always, what the picture lacks filled in, out of focus"
)
NO_WATERMARK_HELP = (
    "leave out the invisible watermark and the provenance tag that mark the video as generated (research on the "
    "frames only; docs/provenance.md)"
)
VERIFY_FRAMES = 150  # openvasa.provenance.verify.MAX_FRAMES (not imported here: --help stays light)


# A value that starts with a minus and a digit or point: a number or a comma-separated list of them (-20,0; -.5; -1e-3).
NEGATIVE_VALUE = re.compile(r"-[\d.][\d.,eE+\-]*")


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """argv with each long option followed by a negative value written as one token: `--gaze -20,0` ->
    `--gaze=-20,0`. argparse takes "-20,0" (a minus, not one plain number) for an unknown option and refuses it;
    joined, it is read as typed. No option starts with a minus and a digit, so nothing else changes meaning."""
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return out + list(argv[i:])
        if token.startswith("--") and "=" not in token and i + 1 < len(argv) and NEGATIVE_VALUE.fullmatch(argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
        else:
            out.append(token)
            i += 1
    return out


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reads negative values as typed (join_negative_values)."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        args = sys.argv[1:] if args is None else args
        return super().parse_known_args(join_negative_values(args), namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="openvasa", description="Talking-face videos from one portrait and speech.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="portrait + speech audio -> talking video (mp4)")
    gen.add_argument("--image", required=True, type=Path, help="portrait image (jpg/png/webp...)")
    gen.add_argument("--audio", required=True, type=Path, help="speech: wav/mp3/flac/m4a/ogg, any rate or channels")
    gen.add_argument("-o", "--output", required=True, type=Path, help="output mp4 (512x512, H.264 + AAC)")
    for name, text in CONTROL_HELP.items():  # read together by MotionControls.from_text
        gen.add_argument(f"--{name.replace('_', '-')}", help=text.replace("%", "%%"))
    gen.add_argument("--seed", type=int, default=0, help="random seed of the motion (blinks, head sway)")
    gen.add_argument("--fps", type=float, default=25.0, help="output frame rate (default 25)")
    gen.add_argument("--face-index", type=int, help="which face when the image has several (0 = largest)")
    gen.add_argument("--framing", choices=FRAMINGS, default="auto", help=FRAMING_HELP)
    gen.add_argument("--no-watermark", action="store_true", help=NO_WATERMARK_HELP)
    gen.add_argument(
        "--no-lip-closures",
        action="store_true",
        help="leave the lips as the motion model moves them; by default they shut on the p, b and m of English "
        "speech, found in its transcript",
    )
    gen.add_argument(
        "--motion",
        choices=MOTION_MODELS,
        default="dit",
        help="dit: the trained motion diffusion transformer (default); baseline: hand-built audio-driven motion",
    )
    for name, (kind, text) in SETTING_HELP.items():  # read together into GenerationSettings
        gen.add_argument(f"--{name.replace('_', '-')}", type=kind, help=text.replace("%", "%%"))

    ree = sub.add_parser("reenact", help="drive a portrait with the motion of a real talking video")
    ree.add_argument("--image", required=True, type=Path, help="portrait image")
    ree.add_argument("--video", required=True, type=Path, help="driving video with one face; its audio is kept")
    ree.add_argument("-o", "--output", required=True, type=Path, help="output mp4")
    only = ree.add_mutually_exclusive_group()
    only.add_argument("--pose-only", action="store_true", help="transfer head pose only (expression stays)")
    only.add_argument("--expression-only", action="store_true", help="transfer expression only (head stays)")
    ree.add_argument("--face-index", type=int, help="which face of the portrait when it has several")
    ree.add_argument("--framing", choices=FRAMINGS, default="auto", help=FRAMING_HELP)
    ree.add_argument("--no-watermark", action="store_true", help=NO_WATERMARK_HELP)

    sub.add_parser(
        "train-motion",
        add_help=False,
        help="train the motion diffusion transformer on prep shards (see `openvasa train-motion --help`)",
    )
    demo = sub.add_parser("demo", help="render the bundled demo: a public-domain portrait says a sentence")
    demo.add_argument("-o", "--output", type=Path, default=Path("out/demo.mp4"), help="output mp4")

    prep = sub.add_parser(
        "prep",
        help="talking videos -> aligned (audio, face latent) training shards",
        description="Track one face per clip, cut at lost tracking, scene changes and second faces, and write one "
        "shard per segment of at least 2 s (face latent + 16 kHz audio + audio features at --fps) with index.json "
        "and report.md. Clips already done with the same settings are skipped: rerun to resume, or share --out "
        "between machines with --worker-index/--worker-count.",
    )
    prep.add_argument("--videos", required=True, type=Path, help="folder of talking videos (mp4/mov/mkv/webm/avi)")
    prep.add_argument("--out", required=True, type=Path, help="output folder: shards/, index.json, report.md")
    prep.add_argument("--workers", type=int, default=1, help="local processes (default 1)")
    prep.add_argument(
        "--worker-index", type=int, default=0, help="this machine's share: clips at sorted position %% count == index"
    )
    prep.add_argument("--worker-count", type=int, default=1, help="number of machines sharing the clips (default 1)")
    prep.add_argument("--fps", type=float, default=25.0, help="frame rate of the shards (default 25)")
    prep.add_argument(
        "--frontends",
        default="energy",
        help="comma-separated audio front-ends stored per frame: energy, logmel, whisper-tiny, whisper-base (default energy)",
    )
    ev = sub.add_parser(
        "eval",
        help="compare real video, still image, baseline and the learned model on real clips (docs/metrics.md)",
        description="For each clip of people the shipped model never saw (--split val: the validation people only; "
        "all: every clip): generate from its "
        "first frame and its audio with each method, re-detect landmarks in the rendered frames and score lip sync, "
        "head motion, blinks, jitter, background flicker, identity and speed against the real clip. Writes "
        "results.json, results.md, metrics.png and mouth.png.",
    )
    ev.add_argument("--videos", required=True, type=Path, help="folder of real talking videos")
    ev.add_argument("--out", required=True, type=Path, help="output folder")
    ev.add_argument(
        "--split",
        choices=("unseen", "val", "all"),  # openvasa.eval.suite.SPLITS (not imported here: --help stays light)
        default="unseen",
        help="unseen (default): people the model was not trained on; val: the validation people; all: every clip",
    )
    ev.add_argument("--steps", default="10,50", help="sampling steps of the learned model, comma-separated")
    ev.add_argument("--max-clips", type=int, help="at most this many clips")
    ev.add_argument("--max-seconds", type=float, help="at most this many seconds of each clip")
    ev.add_argument("--drift-seconds", type=float, default=120.0, help="long generation for the drift check (0: skip)")
    ev.add_argument("--seed", type=int, default=0)
    srv = sub.add_parser(
        "serve",
        help="web page + live WebSocket sessions + offline jobs (docs/streaming.md)",
        description="Serve the web page (portrait, controls, microphone or audio file, live face; offline render "
        "with download) and the live API: WebSocket /ws/{portrait}, /api/health, /api/metrics.",
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help="live sessions at once (default: as many as fit at 25 fps, measured at start)",
    )
    srv.add_argument("--steps", type=int, default=10, help="sampling steps of the live motion model")
    srv.add_argument(
        "--token",
        default=os.environ.get("OPENVASA_TOKEN"),
        help="require this token on every endpoint but /api/health (Authorization: Bearer, or ?token=; default: "
        "$OPENVASA_TOKEN). Set one before listening beyond this machine",
    )
    srv.add_argument(
        "--cors-origin", action="append", default=[], help="let pages from this origin call the API (repeatable)"
    )
    srv.add_argument(
        "--job-ttl-minutes", type=float, default=60.0, help="an offline job's video is deleted this long after it ends"
    )
    srv.add_argument("--max-session-minutes", type=float, default=60.0, help="a live session is closed after this long")
    ver = sub.add_parser(
        "verify",
        help="was this video or image generated by openvasa? (invisible watermark + mp4 tag, docs/provenance.md)",
        description="Look for openvasa's invisible watermark in a video (its first --max-frames frames) or an image, "
        "and read an mp4's provenance tag. Exit code 0: watermark found; 1: not found; 2: bad input.",
    )
    ver.add_argument("path", type=Path, help="video (mp4/mov/mkv/webm...) or image (png/jpg/webp...)")
    ver.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ver.add_argument(
        "--max-frames", type=int, default=VERIFY_FRAMES, help=f"frames of a video to read (default {VERIFY_FRAMES})"
    )
    return parser


def run_verify(args: argparse.Namespace) -> int:
    """Print what `openvasa verify` found; exit code 0 when the watermark was found, else 1."""
    from openvasa.provenance.verify import verify

    if args.max_frames < 1:
        raise OpenVasaError(f"--max-frames must be at least 1, got {args.max_frames}")
    result = verify(args.path, args.max_frames)
    print(json.dumps(result.to_json()) if args.json else result.summary())
    return 0 if result.found else 1


def run(args: argparse.Namespace) -> Path:
    from openvasa import pipeline

    if args.command == "prep":
        from openvasa.data.config import PrepConfig
        from openvasa.data.prep import prep_videos

        config = PrepConfig(fps=args.fps, audio_frontends=tuple(args.frontends.split(",")))
        report = prep_videos(args.videos, args.out, config, args.workers, args.worker_index, args.worker_count)
        return report.report_path

    if args.command == "serve":
        from openvasa.stream.server import serve
        from openvasa.stream.state import ServerLimits

        limits = ServerLimits(job_ttl_s=args.job_ttl_minutes * 60, max_session_s=args.max_session_minutes * 60)
        serve(args.host, args.port, args.max_sessions, args.steps, limits, args.token, tuple(args.cors_origin))
        return Path(f"http://{args.host}:{args.port}/")

    if args.command == "eval":
        from openvasa.eval.suite import EvalConfig, evaluate

        config = EvalConfig(
            videos=args.videos,
            out=args.out,
            split=args.split,
            steps=tuple(int(s) for s in args.steps.split(",")),
            seed=args.seed,
            max_clips=args.max_clips,
            max_seconds=args.max_seconds,
            drift_seconds=args.drift_seconds,
        )
        evaluate(config)
        return args.out / "results.md"

    if args.command == "generate":
        controls = MotionControls.from_text(vars(args))
        settings = GenerationSettings(**{k: getattr(args, k) for k in SETTING_HELP if getattr(args, k) is not None})
        return pipeline.generate(
            args.image,
            args.audio,
            args.output,
            controls,
            motion=args.motion,
            settings=settings,
            seed=args.seed,
            face_index=args.face_index,
            framing=args.framing,
            fps=args.fps,
            progress=True,
            watermark=not args.no_watermark,
            lip_closures=not args.no_lip_closures,
        )
    if args.command == "reenact":
        mode = "pose" if args.pose_only else "expression" if args.expression_only else "full"
        return pipeline.reenact(
            args.image,
            args.video,
            args.output,
            mode,
            face_index=args.face_index,
            framing=args.framing,
            progress=True,
            watermark=not args.no_watermark,
        )
    return run_demo(args.output)


def run_demo(output: Path) -> Path:
    """The astronaut portrait (public domain, shipped in scikit-image) speaking a sentence made with espeak-ng."""
    import skimage.data

    from openvasa import pipeline

    if shutil.which("espeak-ng") is None:
        raise OpenVasaError("the demo needs espeak-ng for its speech: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(speech), DEMO_TEXT], check=True)
        return pipeline.generate(skimage.data.astronaut(), speech, output, progress=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train-motion"]:  # its options are generated from the training config dataclass
        from openvasa.tools import train_motion as train

        train.main(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        if args.command == "verify":
            return run_verify(args)
        path = run(args)
    except OpenVasaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def console() -> None:
    """The `openvasa` command: main(), then a quick exit. By then every output is written, closed and renamed;
    Python's own shutdown would tear torch, Numba and MediaPipe down module by module, 0.4-0.6 s of nothing."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
