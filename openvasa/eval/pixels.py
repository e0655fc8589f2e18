"""Self-reenactment judged in pixels: each validation clip's first frame is the portrait, the clip's own tracked
motion drives it, and the rendered frames are compared with the real ones where a viewer looks.

    python -m openvasa.eval.pixels --videos ../shared/data/videos --out out/pixels [--max-seconds 10]

Per clip, in the portrait's 512² framing: face SSIM and PSNR (inside the real face's outline), mouth SSIM (the
real lips' box, grown by a third), and blinks re-detected with MediaPipe in both videos: blinks per minute, and
how far the eye closes at the deepest frame of each real blink (openness over the clip's median). And for
`generate` from the same first frame and the clip's audio: the blinks per minute in the motion model's latent and
re-detected in the rendered frames (what a viewer sees). Writes
results.json, results.md and a contact sheet (the deepest blink and the widest mouth of each clip, real beside
rendered) to --out. Metric definitions: docs/metrics.md.
"""

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from openvasa.eval.metrics import blink_rate
from openvasa.eval.suite import EvalConfig, eval_clips, frames_at
from openvasa.face import landmarks as lm
from openvasa.face.detect import FRAME_SIZE, FaceAnalyzer
from openvasa.face.latent import FaceLatentCodec
from openvasa.face.track import fill_gaps, track_frames
from openvasa.motion.generator import load_generator
from openvasa.pipeline import Portrait, drive, prepare_portrait, render_latents
from openvasa.render.mouth_atlas import MouthAtlas
from openvasa.render.renderer import PortraitRenderer
from openvasa.units import FPS

MOUTH_MARGIN = 1 / 3  # the lips' box grows by this share of its size on each side: lips, teeth and the skin around
SHEET_TILE = 256


@dataclass
class PixelScores:
    face_ssim: float
    mouth_ssim: float
    face_psnr: float
    blinks_per_min_real: float
    blinks_per_min_rendered: float
    blink_depth_real: float  # median over the real blinks of the deepest openness / the clip's median openness
    blink_depth_rendered: float  # the rendered eye's at the same frames
    generate_blinks_per_min_latent: float  # generate from the first frame and the clip's audio: the model's blinks
    generate_blinks_per_min_seen: float  # ... and those re-detected in its frames
    frames: int


def face_mask(points: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """(size, size) bool: inside the face outline of one frame's landmarks (478, 2|3)."""
    mask = np.zeros((size, size), np.uint8)
    outline = points[list(lm.FACE_OVAL), :2]
    cv2.fillConvexPoly(mask, np.round(outline).astype(np.int32), 1)
    return mask.astype(bool)


def mouth_box(points: np.ndarray, size: int = FRAME_SIZE) -> tuple[slice, slice]:
    """(rows, cols) of the lips' bounding box grown by MOUTH_MARGIN on each side."""
    lips = points[lm.LIPS, :2]
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    dx, dy = (x1 - x0) * MOUTH_MARGIN, (y1 - y0) * MOUTH_MARGIN + (x1 - x0) * 0.1  # a closed mouth is thin
    top, bottom = int(max(0, y0 - dy)), int(min(size, y1 + dy + 1))
    left, right = int(max(0, x0 - dx)), int(min(size, x1 + dx + 1))
    return slice(top, bottom), slice(left, right)


def frame_scores(real: np.ndarray, rendered: np.ndarray, points: np.ndarray) -> tuple[float, float, float]:
    """Face SSIM, mouth SSIM and face PSNR (dB) of one rendered frame against the real one; points: the real
    frame's landmarks (478, 3) in the same framing."""
    gray_real = cv2.cvtColor(real, cv2.COLOR_RGB2GRAY)
    gray_rendered = cv2.cvtColor(rendered, cv2.COLOR_RGB2GRAY)
    _, ssim_map = structural_similarity(gray_real, gray_rendered, data_range=255, full=True)
    mask = face_mask(points, real.shape[0])
    rows, cols = mouth_box(points, real.shape[0])
    error = np.mean((real[mask].astype(np.float64) - rendered[mask]) ** 2)
    psnr = 10 * np.log10(255**2 / max(error, 1e-10))
    return float(ssim_map[mask].mean()), float(ssim_map[rows, cols].mean()), float(psnr)


def blink_depths(real_openness: np.ndarray, rendered_openness: np.ndarray) -> tuple[float, float]:
    """Median over the real clip's blinks (runs below half its median openness) of the deepest openness relative
    to the median, for the real eye and the rendered eye at the same frames; nan without blinks. (T,) each."""
    closed = real_openness < 0.5 * np.median(real_openness)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], closed.astype(np.int8), [0]])))
    runs = list(zip(edges[::2], edges[1::2], strict=True))
    if not runs:
        return float("nan"), float("nan")
    # The rendered eye may close a frame early or late: its deepest point within a frame of the real blink.
    deepest = [(real_openness[a:b].min(), rendered_openness[max(0, a - 1) : b + 1].min()) for a, b in runs]
    real_depth, rendered_depth = np.median(np.array(deepest), axis=0)
    return float(real_depth / np.median(real_openness)), float(rendered_depth / np.median(rendered_openness))


def redetect(frames: list[np.ndarray]) -> np.ndarray:
    """(T, 478, 3) landmarks tracked in 512² frames, gaps filled from the nearest found frames."""
    marks, found = [], []
    with FaceAnalyzer(static=False) as tracker:
        for frame in frames:
            points = tracker.landmarks(frame)
            found.append(points is not None)
            marks.append(points if points is not None else np.full((lm.N_LANDMARKS, 3), np.nan, np.float32))
    return fill_gaps(np.stack(marks), np.array(found))


def self_reenact(
    real: list[np.ndarray], mouth_atlas: MouthAtlas | None = None
) -> tuple[Portrait, list[np.ndarray], list[np.ndarray]]:
    """The first frame as the portrait, driven by the clip's own motion: (portrait, real frames in the portrait's
    framing, rendered frames). mouth_atlas: the renderer's (default: the shipped one)."""
    codec = FaceLatentCodec()
    portrait = prepare_portrait(real[0], codec=codec)
    if mouth_atlas is not None:
        portrait = replace(portrait, renderer=PortraitRenderer(portrait.crop, mouth_atlas))
    latent = drive(portrait, track_frames(real, keep_frames=False), codec, same_start=True)
    rendered = list(render_latents(portrait, latent, codec))
    framed = [cv2.warpAffine(f, portrait.crop.to_crop, (FRAME_SIZE, FRAME_SIZE), flags=cv2.INTER_AREA) for f in real]
    return portrait, framed, rendered


def generated_blinks(portrait: Portrait, audio: np.ndarray) -> tuple[float, float]:
    """Blinks per minute of `generate` (the shipped model) from this portrait and 16 kHz audio: in the model's latent,
    and re-detected in the rendered frames."""
    codec = FaceLatentCodec()
    latent = load_generator().generate(
        audio, FPS, portrait.identity.reference, codec.basis, rest_opening=portrait.identity.rest_opening(codec.basis)
    )
    seen = lm.eye_openness(
        redetect(list(render_latents(portrait, latent, codec)))
    )  # (T, 2), as latent.eyes[:, EYE_OPEN]
    return float(blink_rate(latent.eyes, FPS)), float(blink_rate(seen, FPS))


def score_clip(real: list[np.ndarray], audio: np.ndarray) -> tuple[PixelScores, np.ndarray]:
    """Scores of one clip (frames and their 16 kHz audio): its self-reenactment, blinks of `generate` from its
    first frame, and its contact-sheet row (deepest blink, widest mouth)."""
    portrait, framed, rendered = self_reenact(real)
    real_points, rendered_points = redetect(framed), redetect(rendered)
    per_frame = np.array([frame_scores(a, b, p) for a, b, p in zip(framed, rendered, real_points, strict=True)])
    real_eyes, rendered_eyes = lm.eye_openness(real_points), lm.eye_openness(rendered_points)  # (T, 2) each
    real_open = real_eyes.mean(1)
    depth_real, depth_rendered = blink_depths(real_open, rendered_eyes.mean(1))
    scores = PixelScores(
        face_ssim=float(per_frame[:, 0].mean()),
        mouth_ssim=float(per_frame[:, 1].mean()),
        face_psnr=float(per_frame[:, 2].mean()),
        blinks_per_min_real=float(blink_rate(real_eyes, FPS)),
        blinks_per_min_rendered=float(blink_rate(rendered_eyes, FPS)),
        blink_depth_real=depth_real,
        blink_depth_rendered=depth_rendered,
        **dict(
            zip(
                ("generate_blinks_per_min_latent", "generate_blinks_per_min_seen"),
                generated_blinks(portrait, audio),
                strict=True,
            )
        ),
        frames=len(real),
    )
    blink, mouth = int(np.argmin(real_open)), int(np.argmax(lm.mouth_opening(real_points)))
    tiles = [framed[blink], rendered[blink], framed[mouth], rendered[mouth]]
    row = np.hstack([cv2.resize(t, (SHEET_TILE, SHEET_TILE), interpolation=cv2.INTER_AREA) for t in tiles])
    return scores, row


def evaluate(videos: Path, out: Path, max_seconds: float | None = 10.0, prep: Path | None = None) -> dict:
    """Score every validation clip; write results.json, results.md and contact_sheet.png to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    config = EvalConfig(videos=videos, out=out, prep=prep, split="val", max_seconds=max_seconds)
    results, rows = {}, []
    for clip in eval_clips(config):
        real = list(frames_at(clip.video, clip.start_s + np.arange(clip.frames) / FPS))
        scores, row = score_clip(real, clip.audio)
        results[clip.name] = asdict(scores)
        rows.append(row)
        print(clip.name, {k: round(v, 3) for k, v in asdict(scores).items()}, flush=True)
    keys = [k for k in asdict(scores) if k != "frames"]
    results["mean"] = {k: float(np.nanmean([r[k] for r in results.values()])) for k in keys}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    cv2.imwrite(str(out / "contact_sheet.png"), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return results


def markdown(results: dict) -> str:
    head = (
        "| clip | face SSIM | mouth SSIM | face PSNR (dB) | blinks/min real | rendered | blink depth real | rendered "
        "| generate: blinks/min in the latent | seen |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['face_ssim']:.3f} | {r['mouth_ssim']:.3f} | {r['face_psnr']:.1f} | "
            f"{r['blinks_per_min_real']:.1f} | {r['blinks_per_min_rendered']:.1f} | {r['blink_depth_real']:.2f} | "
            f"{r['blink_depth_rendered']:.2f} | {r['generate_blinks_per_min_latent']:.1f} | "
            f"{r['generate_blinks_per_min_seen']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=Path("../shared/data/videos"))
    parser.add_argument("--out", type=Path, default=Path("out/pixels"))
    parser.add_argument("--prep", type=Path, default=None, help="prep output to reuse (default: --out/prep)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="per clip")
    args = parser.parse_args()
    print(markdown(evaluate(args.videos, args.out, args.max_seconds, args.prep)))


if __name__ == "__main__":
    main()
