"""Do the emotion presets show in the rendered face, and do the lips keep in sync under them?

    python benchmarks/bench_emotion.py [--portraits a.png b.jpg] [--audio speech.wav] [--seconds 5] \
        [--emotions neutral happy sad surprised angry] [--strength 1] [--sheet docs/img/emotion_sheet.jpg]

Each portrait speaks the same audio under each emotion (the shipped motion model, the same seed); the frames are
rendered and their landmarks re-detected. Prints, per portrait and emotion, the expression measures of the
re-detected face (openvasa.eval.expression) relative to neutral, in outer-eye distances: mouth-corner lift, inner-brow
raise, eye openness; the happy - sad corner lift; the correlation of the mouth opening with neutral's; and the lip-sync
judge's confidence and offset (openvasa.eval.sync). --sheet writes one frame per portrait and emotion side by side.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from openvasa.audio.frontends import get_frontend
from openvasa.eval.expression import expression_summary, eye_openness
from openvasa.eval.pixels import redetect
from openvasa.eval.sync import lip_features, load_judge, sync_scores
from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceLatentCodec
from openvasa.io.media import load_audio
from openvasa.motion.controls import MotionControls
from openvasa.motion.generator import load_generator
from openvasa.pipeline import prepare_portrait, render_latents
from openvasa.units import FPS, SAMPLE_RATE

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PORTRAITS = ("sadtalker_people_0.png", "liveportrait_s1.jpg", "liveportrait_s0.jpg")  # two photos, a painting
AUDIO = "echomimic_echomimic_en.wav"
SHEET_CELL = 224


def face_cell(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The face of a frame, a square around its landmarks with a little margin, SHEET_CELL wide."""
    low, high = points[:, :2].min(0), points[:, :2].max(0)
    centre, half = (low + high) / 2, 0.6 * (high - low).max()
    x0, y0 = np.clip(np.round(centre - half).astype(int), 0, None)
    x1, y1 = np.round(centre + half).astype(int)
    return cv2.resize(frame[y0:y1, x0:x1], (SHEET_CELL, SHEET_CELL), interpolation=cv2.INTER_AREA)


def measure(portrait_path: Path, pcm: np.ndarray, emotions: list[str], strength: float, judge, audio_features):
    """Per emotion: re-detected expression summary, mouth opening per frame, sync scores and one mid-clip frame."""
    codec = FaceLatentCodec()
    portrait = prepare_portrait(portrait_path)
    reference, rest = portrait.identity.reference, portrait.identity.rest_opening(codec.basis)
    generator = load_generator()
    out, shown = {}, None
    for emotion in emotions:
        controls = MotionControls(emotion=emotion, emotion_strength=strength)
        latent = generator.generate(pcm, FPS, reference, codec.basis, controls, seed=0, rest_opening=rest)
        frames = list(render_latents(portrait, latent, codec))
        points = redetect(frames)
        measured = codec.encode(points, portrait.identity)
        if shown is None:  # the sheet's frame: eyes open (no blink) in the middle half of the first emotion's clip
            quarter = len(frames) // 4
            shown = quarter + int(np.argmax(eye_openness(points[quarter:-quarter])))
        out[emotion] = {
            "summary": expression_summary(points),
            "mouth": lm.mouth_opening(points),
            "sync": sync_scores(judge, lip_features(measured, codec.basis), audio_features),
            "frame": face_cell(frames[shown], points[shown]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portraits", nargs="+", type=Path, default=[DATA / "portraits" / p for p in PORTRAITS])
    parser.add_argument("--audio", type=Path, default=DATA / "audio" / AUDIO)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--emotions", nargs="+", default=["neutral", "happy", "sad", "surprised", "angry"])
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet (rows: portraits, columns: emotions)")
    args = parser.parse_args()
    pcm = load_audio(args.audio)[: int(args.seconds * SAMPLE_RATE)]
    judge = load_judge()
    audio_features = get_frontend(judge.config.audio).features(pcm, FPS)
    rows = []
    for path in args.portraits:
        results = measure(path, pcm, args.emotions, args.strength, judge, audio_features)
        base = results.get("neutral", next(iter(results.values())))
        print(f"\n{path.name} (strength {args.strength}; changes from neutral, outer-eye distances)")
        print(
            f"{'emotion':10s} {'corners':>8s} {'in.brows':>8s} {'eyes':>7s} {'mouth r':>8s} {'sync':>6s} {'offset':>6s}"
        )
        for emotion, r in results.items():
            change = {k: r["summary"][k] - base["summary"][k] for k in r["summary"]}
            r_mouth = np.corrcoef(r["mouth"], base["mouth"])[0, 1]
            print(
                f"{emotion:10s} {change['corner_lift']:+8.4f} {change['inner_brow_raise']:+8.4f} "
                f"{change['eye_openness']:+7.3f} {r_mouth:8.3f} {r['sync']['sync_confidence']:6.3f} "
                f"{r['sync']['sync_offset']:6d}"
            )
        if "happy" in results and "sad" in results:
            lift = results["happy"]["summary"]["corner_lift"] - results["sad"]["summary"]["corner_lift"]
            print(f"happy - sad corner lift: {lift:+.4f}")
        rows.append([r["frame"].copy() for r in results.values()])
    if args.sheet is not None:
        for row in rows:
            for cell, emotion in zip(row, args.emotions, strict=True):
                cell[:30, :] //= 3
                cv2.putText(cell, emotion, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        sheet = np.vstack([np.hstack(row) for row in rows])
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"\nwrote {args.sheet}")


if __name__ == "__main__":
    main()
