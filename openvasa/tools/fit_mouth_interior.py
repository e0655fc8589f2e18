"""Fit the mouth-interior atlas (openvasa.render.mouth_atlas) on the real clips of the people the models were trained
on (split.json's training clips; validation people are never used):

    python -m openvasa.tools.fit_mouth_interior [--videos DIR] [--out NPZ] [--sheet PNG]

Every other frame of each clip is tracked; where the lips are apart, the inner mouth is resampled into the atlas's
two strips and divided by the clip's light (`light_reference`: this takes out each clip's exposure and white
balance, and not the skin's own shade). The strips at each opening are the per-pixel median of one clip's samples
nearest that opening; which clip is chosen by re-enacting other training people with each (see `fit`).
"""

import argparse
import json
import warnings
from pathlib import Path

import cv2
import numpy as np

from openvasa.data.clips import SPLIT_FILE
from openvasa.data.tracking import timed_frames
from openvasa.eval.pixels import frame_scores, redetect, self_reenact
from openvasa.eval.suite import frames_at
from openvasa.face import landmarks as lm
from openvasa.face.track import FaceTracker, frame_in_framing
from openvasa.render.eyes import polygon_mask
from openvasa.render.mouth_atlas import ATLAS_FILE, MouthAtlas, MouthFrame, light_reference, sclera_luma
from openvasa.units import FPS

OPENINGS = np.array([0.03, 0.05, 0.08, 0.11, 0.15, 0.2, 0.26])  # eye distances: the atlas's openings
DEPTH = 0.18  # eye distances each strip reaches from its lip: past the teeth, into the dark
ROWS, COLS = 18, 48
MAX_YAW = 0.25  # |nose offset from the corners' midpoint| / half mouth width: frames turned further are skipped
MAX_PER_CLIP = 80  # samples per clip and opening
JUDGES = 3  # training clips each candidate atlas is judged on
JUDGE_SECONDS = 6.0
LIP_LIKE = 0.15  # a strip pixel this close to the frame's lip colour (share of its length) may be lip
MIN_SAMPLES = 5  # samples of an opening for a clip's median to stand for it
LUMA = np.array([0.299, 0.587, 0.114])
LOWER_SHADE = 0.8  # the lower strips' brightest over the upper strips' (shaded_lower)
LEVELS = np.linspace(0, 1, 41)  # the quantiles at which a median strip's brightness is matched to a sample's
REQUIRED = 0.2  # the chosen clip reaches every opening from the second up to this
SSIM_MARGIN = 0.002  # candidates this close to the best mouth SSIM are told apart by their teeth (see `fit`)
TEETH_OPENINGS = (0.08, 0.2)  # the openings whose upper strips' teeth contrast is compared
TEETH_INDICES = np.flatnonzero((OPENINGS >= TEETH_OPENINGS[0]) & (OPENINGS <= TEETH_OPENINGS[1]))
FRAME_STEP = 2


def sample_strips(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The upper and lower strips (ROWS, COLS, 3) of a 512² frame in its own colours, nan past the middle of
    the lips' gap (the other lip's side) and on the band of lip each starts with: the tracked inner lip sits a little
    inside the visible lips, and the renderer's warp already draws the lips up to it (drawn again, they came out
    twice as thick and the mouth was re-detected 0.06 eye distances less open than asked). None for a face turned
    too far to see both sides of its mouth."""
    frame = MouthFrame.of(points)
    nose = points[1, :2] - frame.origin
    if abs(float(nose @ frame.axis_u)) / frame.half_width > MAX_YAW:
        return None
    u = np.linspace(-1, 1, COLS + 2)[1:-1][None, :]
    depth = ((np.arange(ROWS) + 0.5) / ROWS * DEPTH * frame.eye_distance)[:, None]
    t_up, t_lo = frame.lip_lines(u)
    image = image.astype(np.float32)
    lips = polygon_mask(image.shape[:2], points[lm.LIPS_OUTER_CONTOUR]) > 0.5
    lips &= polygon_mask(image.shape[:2], points[lm.LIPS_INNER_CONTOUR]) < 0.5
    lip_colour = np.median(image[lips], 0)
    strips = []
    for t in (t_up + depth, t_lo - depth):
        strip = cv2.remap(image, *frame.to_image(u, t), cv2.INTER_LINEAR)
        like_lip = np.linalg.norm(strip - lip_colour, axis=-1) < LIP_LIKE * np.linalg.norm(lip_colour)
        band = np.cumprod(like_lip, axis=0).astype(bool)  # lip-coloured all the way from the lip line
        strip[band | np.broadcast_to(depth > (t_lo - t_up) / 2, strip.shape[:2])] = np.nan
        strips.append(strip)
    return strips[0], strips[1]


def training_videos(video_dir: Path) -> list[Path]:
    split = json.loads(SPLIT_FILE.read_text())
    return [video_dir / c["file"] for c in split["clips"] if c["split"] == "train" and (video_dir / c["file"]).exists()]


def collect(video: Path, rng: np.random.Generator) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Strips of one clip relative to its light (the median `light_reference` of its frames), grouped by their
    nearest atlas opening (at most MAX_PER_CLIP each)."""
    groups: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in OPENINGS]
    references = []
    with FaceTracker() as tracker:
        for index, (_, frame) in enumerate(timed_frames(video)):
            points = tracker.track(frame)
            if points is None or index % FRAME_STEP:
                continue
            framed = frame_in_framing(frame, tracker.to_crop)
            if sclera_luma(framed, points) is not None:
                references.append(light_reference(framed, points))
            opening = float(lm.mouth_opening(points))
            if opening < OPENINGS[0] - 0.01:
                continue
            strips = sample_strips(framed, points)
            if strips is not None:
                groups[int(np.abs(OPENINGS - opening).argmin())].append(strips)
    if not references:
        return [[] for _ in OPENINGS]
    light = np.median(references, 0).astype(np.float32)
    print(f"{video.name}: light {light.round()}", flush=True)
    return [[(a / light, b / light) for a, b in (g[i] for i in rng.permutation(len(g))[:MAX_PER_CLIP])] for g in groups]


def median(samples: list[np.ndarray]) -> np.ndarray:
    """Per-pixel median of (ROWS, COLS, 3) strips; a pixel no sample reached repeats the nearest reached row of its
    column (the shallowest above, on the lip band; the deepest below, past half of every gap), and a column none
    reached (a corner where the lips touch) the nearest reached column."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        strip = np.nanmedian(np.stack(samples), axis=0)
    reached = ~np.isnan(strip[..., 0])
    columns = np.flatnonzero(reached.any(0))
    for c in range(strip.shape[1]):
        source = columns[np.abs(columns - c).argmin()]
        rows = np.flatnonzero(reached[:, source])
        strip[:, c] = strip[np.clip(np.arange(strip.shape[0]), rows.min(), rows.max()), source]
    return strip


def clip_strips(groups: list[list[tuple[np.ndarray, np.ndarray]]]) -> tuple[np.ndarray, np.ndarray]:
    """(K, ROWS, COLS, 3) upper and lower strips of one clip; an opening it reached fewer than MIN_SAMPLES times
    copies the nearest one it reached often enough."""
    counts = np.array([len(g) for g in groups])
    enough = np.flatnonzero(counts >= MIN_SAMPLES)
    upper, lower = [], []
    for k in range(len(groups)):
        group = groups[enough[np.abs(enough - k).argmin()]]
        upper.append(with_contrast_of(median([a for a, _ in group]), [a for a, _ in group]))
        lower.append(with_contrast_of(median([b for _, b in group]), [b for _, b in group]))
    return np.stack(upper), np.stack(lower)


def with_contrast_of(strip: np.ndarray, samples: list[np.ndarray]) -> np.ndarray:
    """A median strip (ROWS, COLS, 3) with the brightness distribution of one of its samples (the median of their
    quantiles), its hues and its layout kept.

    The per-pixel median of frames whose teeth and dark stand a little differently each time averages them into a
    grey mist: the atlas drew a wide-open mouth's brightest tenth 3.7-4.1 times its darkest on twelve portraits of
    every skin tone, where the real frames of the clip it came from have 8.6 (4.6-5.3 with this; the samples' pooled
    distribution, which adds the frames' changes of exposure, cost the validation people 0.0007 more mouth SSIM).
    Each pixel's brightness is moved to that distribution's at its quantile."""
    luma, each = strip @ LUMA, np.stack(samples) @ LUMA
    reached = ~np.isnan(each).all(0)  # not the rows and columns `median` filled in
    own = np.quantile(luma[reached], LEVELS)
    target = np.median([np.quantile(sample[~np.isnan(sample)], LEVELS) for sample in each], axis=0)
    return strip * (np.interp(luma, own, target) / np.maximum(luma, 1e-3))[..., None]


Samples = dict[str, list[list[tuple[np.ndarray, np.ndarray]]]]  # clip name -> strips grouped by opening


def collect_all(videos: list[Path]) -> Samples:
    rng = np.random.default_rng(0)
    return {video.name: collect(video, rng) for video in videos}


def mouth_ssim(atlas: MouthAtlas, video: Path) -> float:
    """Mouth SSIM of the first JUDGE_SECONDS of a clip re-enacted from its first frame with this atlas."""
    times = np.arange(int(JUDGE_SECONDS * FPS)) / FPS
    real = list(frames_at(video, times))
    _, framed, rendered = self_reenact(real, mouth_atlas=atlas)
    points = redetect(framed)
    return float(np.mean([frame_scores(a, b, p)[1] for a, b, p in zip(framed, rendered, points, strict=True)]))


def fit(per_clip: Samples, videos: dict[str, Path]) -> tuple[MouthAtlas, str]:
    """The atlas and the clip it comes from.

    One person's mouth: the teeth stay the same teeth as the mouth opens and closes, and they stay sharp (medians
    across people blur everyone's teeth into a pink mist: the tracked inner lip sits a little inside the lips, by a
    different amount on each person). The candidates are the clips that reach every opening of speech up to
    REQUIRED (MIN_SAMPLES frames at each), tried by re-enacting other training people's mouths (mouth SSIM on the
    JUDGES clips with the most open-mouth frames whose people are none of the candidates). SSIM rewards blur: the
    best of them (styletalk_Obama_clip2, 0.8553 on Reagan, KristiNoem and the InfiniteTalk speaker) showed mostly
    tongue, an open mouth read as a blurred pink mass on pale faces. So among the candidates within SSIM_MARGIN of
    the best, the one whose upper strips look most like a row of teeth over the dark (`teeth_contrast`) is chosen:
    the margin is the spread of one person's three clips (Obama 1-3: 0.8542, 0.8553, 0.8539), the other person's
    candidates are 0.008-0.009 lower (AndrewNg 0.8464, 0.8478), and of Obama's clips clip1 has the teeth (contrast
    2.42, clip3 1.29, clip2 1.02). Its channels are then scaled so that its teeth have the training clips' median
    hue over their light (`teeth_hue`). Validation people are not used."""
    counts = {name: np.array([len(g) for g in groups]) for name, groups in per_clip.items()}
    required = (OPENINGS <= REQUIRED) & (np.arange(len(OPENINGS)) > 0)
    candidates = [name for name, n in counts.items() if (n[required] >= MIN_SAMPLES).all()]
    if not candidates:
        raise SystemExit(f"no clip has {MIN_SAMPLES} samples at every opening up to {REQUIRED}")
    by_openness = sorted(counts, key=lambda name: -counts[name][required].sum())
    candidate_people = {identity_of(name) for name in candidates}
    judges = [name for name in by_openness if identity_of(name) not in candidate_people][:JUDGES]
    print("judged on", ", ".join(judges), flush=True)
    atlases, scores = {}, {}
    for name in candidates:
        atlases[name] = MouthAtlas(OPENINGS, *clip_strips(per_clip[name]), DEPTH)
        scores[name] = float(np.mean([mouth_ssim(atlases[name], videos[j]) for j in judges]))
        print(f"{name}: mouth SSIM {scores[name]:.4f}", flush=True)
    best = max(scores.values())
    near_best = [name for name in candidates if scores[name] >= best - SSIM_MARGIN]
    contrasts = {name: teeth_contrast(atlases[name].upper) for name in near_best}
    for name in near_best:
        print(f"{name}: teeth contrast {contrasts[name]:.2f}", flush=True)
    chosen = max(contrasts, key=contrasts.get)
    hues = [hue for hue in map(teeth_hue, per_clip.values()) if hue is not None]
    own, median_hue = teeth_hue(per_clip[chosen]), np.median(hues, 0)
    gain = median_hue / own
    gain /= (gain * own) @ LUMA
    print(f"{chosen}: teeth hue {own.round(3)}, the clips' median {median_hue.round(3)}")
    atlas = atlases[chosen]
    upper = atlas.upper * gain
    return MouthAtlas(OPENINGS, upper, shaded_lower(upper, atlas.lower * gain), DEPTH), chosen


def shaded_lower(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The lower strips (K, ROWS, COLS, 3) scaled so that their brightest row is LOWER_SHADE of the upper strips'
    brightest (over all openings, middle half of the columns). The lower teeth and tongue lie in the shadow of the
    upper lip and teeth; the chosen clip's lower strips, its lower teeth and the sheen of its lower lip (its tracked
    inner lip sits inside the lip), were 1.4 times as bright as its upper teeth. Drawn so, a wide-open mouth's lower
    half was a glowing pink band that MediaPipe took for lip: the lower inner lip was re-detected on it, the mouth
    read 0.7 as open as drawn, and wide openings saturated (on a 160 px crop 0.10 re-detected for 0.13-0.19 drawn)."""
    middle = slice(upper.shape[2] // 4, 3 * upper.shape[2] // 4)
    brightest = [float((strips[:, :, middle] @ LUMA).mean(2).max()) for strips in (upper, lower)]
    return lower * min(1.0, LOWER_SHADE * brightest[0] / brightest[1])


def teeth_hue(groups: list[list[tuple[np.ndarray, np.ndarray]]]) -> np.ndarray | None:
    """(3,) colour of a clip's teeth over its light, at unit brightness: the median of the brightest tenth of each
    upper strip at the openings in TEETH_OPENINGS (None under MIN_SAMPLES strips there).

    The light a clip's mouth is divided by has its cheeks' hue, and the skin's own colour goes with it: a clip with
    ruddier cheeks than most gets bluer teeth over its light, and gave them to every portrait. Obama clip1's are
    (0.82, 1.04, 1.28) where the training clips' median is (0.94, 1.01, 1.07): a pale face's open mouth was
    blue-white. `fit` scales the chosen clip's channels to the median's (its brightness and texture kept)."""
    strips = [a for k in TEETH_INDICES for a, _ in groups[k]]
    if len(strips) < MIN_SAMPLES:
        return None
    brightest = []
    for strip in strips:
        pixels = strip[~np.isnan(strip[..., 0])]
        luma = pixels @ LUMA
        brightest.append(pixels[luma >= np.percentile(luma, 90)])
    colour = np.median(np.concatenate(brightest), 0)
    return colour / (colour @ LUMA)


def teeth_contrast(upper: np.ndarray) -> float:
    """How much an atlas's upper strips (K, ROWS, COLS, 3) look like a row of upper teeth over the dark: the mean,
    over the openings in TEETH_OPENINGS, of the brightness of the half of the rows the renderer shows that lies
    next to the upper lip over that of the half next to the middle of the gap (middle half of the columns)."""
    middle = slice(upper.shape[2] // 4, 3 * upper.shape[2] // 4)
    ratios = []
    for k in TEETH_INDICES:
        shown = max(2, int(round(OPENINGS[k] / 2 / (DEPTH / ROWS))))  # rows above the seam at the gap's middle
        rows = (upper[k, :shown, middle] @ LUMA).mean(1)
        ratios.append(rows[: shown // 2].mean() / rows[shown // 2 :].mean())
    return float(np.mean(ratios))


def identity_of(name: str) -> str:
    return next(c["identity"] for c in json.loads(SPLIT_FILE.read_text())["clips"] if c["file"] == name)


def contact_sheet(
    upper: np.ndarray, lower: np.ndarray, skin: tuple[float, float, float] = (200, 150, 130)
) -> np.ndarray:
    """The atlas as RGB uint8 for a light-skinned face, 4x enlarged: one opening per row, each as the mouth it
    draws when the lips are 2 * DEPTH apart (upper strip above, lower strip upside down below)."""
    rows = [np.vstack([a, b[::-1]]) for a, b in zip(upper, lower, strict=True)]
    pictures = [np.clip(r * np.array(skin), 0, 255).astype(np.uint8) for r in rows]
    return np.vstack([cv2.resize(p, (COLS * 4, ROWS * 8), interpolation=cv2.INTER_NEAREST) for p in pictures])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=Path("../shared/data/videos"))
    parser.add_argument("--out", type=Path, default=Path("openvasa/assets") / ATLAS_FILE)
    parser.add_argument("--sheet", type=Path, default=None, help="also write the atlas as a PNG")
    args = parser.parse_args()
    videos = training_videos(args.videos)
    atlas, source = fit(collect_all(videos), {video.name: video for video in videos})
    print("atlas from", source)
    atlas.save(args.out, source)
    if args.sheet:
        cv2.imwrite(str(args.sheet), cv2.cvtColor(contact_sheet(atlas.upper, atlas.lower), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
