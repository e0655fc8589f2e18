"""A contact sheet of mouth shapes: on validation clips, the real frame beside the generated one (from the clip's
first frame and its audio, as `generate` makes it, lip closures included) at a bilabial /p b m/, an open /a/ and a
rounded /o u/ found in the transcript.

    python -m openvasa.eval.visemes --videos ../shared/data/videos --out docs/img/visemes_sheet.jpg

The vowels are found in a few common English words whose vowel is certain from the spelling, at the vowel letter's
place in the word's timing (openvasa.audio.phonetics); clips Whisper cannot read, or without such words, are left
out.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from openvasa.audio.features import frame_energy_features
from openvasa.audio.phonetics import Word, bilabial_frames, letter_time, transcribe
from openvasa.eval.suite import Clip, EvalConfig, eval_clips, frames_at
from openvasa.face import landmarks as lm
from openvasa.face.detect import FRAME_SIZE, FaceAnalyzer
from openvasa.face.latent import FaceLatentCodec
from openvasa.motion.closures import close_lips
from openvasa.motion.generator import load_generator
from openvasa.pipeline import prepare_portrait
from openvasa.units import FPS

OPEN_A = frozenset(
    """and that can have at as back had has than man fact hand stand matter happen family animal black plan cat am
    bad sad add after last ask answer half past actually exactly understand thank thanks rather class gas""".split()
)
ROUNDED = frozenset(
    """no so go know only over most both those home open old told show also whole own hope going oh don't won't
    slowly social focus moment total notice program global soul to do who two you through true use school
    food soon move room""".split()
)
TILE = 160


def vowel_frame(words: list[Word], vocabulary: frozenset[str], letters: str, n_frames: int) -> int | None:
    """The first frame, in a word of the vocabulary, of its first letter among `letters`."""
    for word in words:
        text = "".join(c for c in word.text.lower() if c.isalpha() or c == "'")
        if text in vocabulary:
            index = min(text.index(c) for c in letters if c in text)
            frame = int(round(letter_time(word, index, len(text)) * FPS))
            if 0 <= frame < n_frames:
                return frame
    return None


def mouth_tile(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A square around the lips (478, 2|3 landmarks) of a 512² frame, resized to TILE."""
    lips = points[lm.LIPS, :2]
    centre, half = lips.mean(0), 0.9 * float(np.ptp(lips[:, 0]))
    x0, y0 = np.clip(np.round(centre - half).astype(int), 0, FRAME_SIZE - 1)
    x1, y1 = np.clip(np.round(centre + half).astype(int), 1, FRAME_SIZE)
    return cv2.resize(frame[y0:y1, x0:x1], (TILE, TILE), interpolation=cv2.INTER_AREA)


def clip_row(clip: Clip, codec: FaceLatentCodec, analyzer: FaceAnalyzer) -> np.ndarray | None:
    """Real | generated tiles at /p/, /a/ and /o u/ of one clip (blank where one is not found), or None when
    fewer than two are found."""
    words = transcribe(clip.audio)
    loudness = frame_energy_features(clip.audio, FPS)[:, 0]
    closures = bilabial_frames(words, loudness, FPS)
    chosen = [
        int(closures[0]) if len(closures) else None,
        vowel_frame(words, OPEN_A, "a", clip.frames),
        vowel_frame(words, ROUNDED, "ou", clip.frames),
    ]
    if sum(f is None for f in chosen) > 1:
        return None
    real = list(frames_at(clip.video, clip.start_s + np.arange(clip.frames) / FPS))
    portrait = prepare_portrait(real[0], codec=codec)
    identity = portrait.identity
    latent = load_generator().generate(
        clip.audio, FPS, identity.reference, codec.basis, rest_opening=identity.rest_opening(codec.basis)
    )
    latent = close_lips(latent, closures, identity.neutral, codec.basis)
    tiles = []
    for frame in chosen:
        if frame is None:
            tiles += [np.full((TILE, TILE, 3), 128, np.uint8)] * 2
            continue
        framed = cv2.warpAffine(real[frame], portrait.crop.to_crop, (FRAME_SIZE, FRAME_SIZE), flags=cv2.INTER_AREA)
        found = analyzer.landmarks(framed)
        target = codec.decode(latent[frame : frame + 1], identity)[0]
        tiles += [
            mouth_tile(framed, found if found is not None else target),
            mouth_tile(portrait.renderer.render(target), target),
        ]
    return np.hstack(tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=Path("../shared/data/videos"))
    parser.add_argument("--prep", type=Path, default=Path("out/visemes/prep"))
    parser.add_argument("--out", type=Path, default=Path("out/visemes_sheet.jpg"))
    parser.add_argument("--max-rows", type=int, default=5)
    args = parser.parse_args()
    codec = FaceLatentCodec()
    clips = eval_clips(EvalConfig(videos=args.videos, out=args.out.parent, prep=args.prep, split="val"))
    rows = []
    with FaceAnalyzer(static=True) as analyzer:
        for clip in clips:
            row = clip_row(clip, codec, analyzer)
            if row is not None:
                rows.append(row)
                print(clip.name)
            if len(rows) == args.max_rows:
                break
    header = np.full((28, 6 * TILE, 3), 255, np.uint8)
    for i, label in enumerate(("/p b m/ real", "ours", "/a/ real", "ours", "/o u/ real", "ours")):
        cv2.putText(header, label, (i * TILE + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.vstack([header, *rows])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"{len(rows)} clips -> {args.out}")


if __name__ == "__main__":
    main()
