"""Motion and image metrics as small pure functions over latents, landmarks and frames (docs/metrics.md says
what each measures and where it falls short). Angles are in degrees, landmarks in pixels of the 512 framing,
canonical shapes in eye distances."""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from openvasa.face import landmarks as lm
from openvasa.face.latent import EYE_OPEN, PITCH, POSE_ANGLES, YAW, FaceBasis, FaceLatent, mouth_opening, mouth_width

N_FD_CODES = 8  # dynamics codes in the motion features (the largest; the rest are mostly noise)
# Lips meet when the inner-lip gap is within this of the real clip's 5th percentile (its lips together).
LIPS_MEET = 0.02


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the common length; 0 when either is constant (a still mouth has no sync)."""
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if n < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def lip_error(latent: FaceLatent, real: FaceLatent, neutral: np.ndarray, basis: FaceBasis) -> float:
    """Mean distance of the 40 lip landmarks to the real ones in the canonical frame (eye distances)."""
    n = min(len(latent), len(real))
    lips = (neutral + basis.expression(latent.eyes[:n], latent.dynamics[:n]))[:, lm.LIPS]
    real_lips = (neutral + basis.expression(real.eyes[:n], real.dynamics[:n]))[:, lm.LIPS]
    return float(np.linalg.norm(lips - real_lips, axis=-1).mean())


def pose_variation(pose: np.ndarray) -> float:
    """Delta-P: mean absolute change of yaw, pitch and roll between adjacent frames (degrees per frame)."""
    return float(np.degrees(np.abs(np.diff(pose[:, POSE_ANGLES], axis=0))).mean()) if len(pose) > 1 else 0.0


def pose_std(pose: np.ndarray) -> float:
    """Standard deviation of yaw and pitch (degrees), averaged: how far the head wanders."""
    return float(np.degrees(pose[:, [YAW, PITCH]].std(0)).mean())


def audio_pose_correlation(pose: np.ndarray, loudness: np.ndarray) -> float:
    """Correlation of head angular speed with loudness: does the head move with the speech's rhythm."""
    speed = np.linalg.norm(np.diff(pose[:, POSE_ANGLES], axis=0), axis=1)
    return correlation(speed, loudness[1:])


def blink_rate(eyes: np.ndarray, fps: float) -> float:
    """Blinks per minute: onsets of eye openness below half its median."""
    openness = eyes[:, EYE_OPEN].mean(1)
    closed = openness < 0.5 * np.median(openness)
    onsets = np.count_nonzero(closed[1:] & ~closed[:-1]) + int(closed[0])
    return onsets / (len(eyes) / fps) * 60


@dataclass
class MotionPair:
    """A motion and the real clip's, with what the motion metrics need to compare them (cut to the common length)."""

    latent: FaceLatent
    real: FaceLatent
    neutral: np.ndarray  # (478, 3) the person's neutral shape
    basis: FaceBasis
    loudness: np.ndarray  # (T,) frame energy of the audio
    fps: float
    closures: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # frames of /p b m/ in the audio

    def __post_init__(self) -> None:
        n = min(len(self.latent), len(self.real), len(self.loudness))
        self.latent, self.real, self.loudness = self.latent[:n], self.real[:n], self.loudness[:n]
        self.closures = self.closures[self.closures < n]

    def mouth(self, latent: FaceLatent) -> np.ndarray:
        return mouth_opening(latent, self.neutral, self.basis)

    def width(self, latent: FaceLatent) -> np.ndarray:
        return mouth_width(latent, self.neutral, self.basis)


def bilabials_closed(pair: MotionPair) -> float:
    """Share of the audio's /p b m/ (openvasa.audio.phonetics) at which the lips meet within a frame; nan without
    any. The places come from the transcript, so they are known only to about a frame or two: the real clips
    themselves reach 0.84 on the validation people."""
    if not len(pair.closures):
        return float("nan")
    shut = np.percentile(pair.mouth(pair.real), 5) + LIPS_MEET
    mouth = pair.mouth(pair.latent)
    return float(np.mean([mouth[max(f - 1, 0) : f + 2].min() <= shut for f in pair.closures]))


def blinks_seen(pair: MotionPair) -> float:
    """Blinks per minute of the motion; nan on a clip whose real motion shows none. A detector that does not see
    the real person's blinks (MediaPipe on a 160 px crop's eyes reads a closed eye as 0.5-0.7 open) cannot see a
    generated one either, and such a clip, counted as 0, measured the detector, not the blinks."""
    if blink_rate(pair.real.eyes, pair.fps) == 0:
        return float("nan")
    return blink_rate(pair.latent.eyes, pair.fps)


def mouth_std_ratio(pair: MotionPair) -> float:
    """How much the mouth moves against the real one: the std of the inner-lip opening, over the real clip's."""
    return float(pair.mouth(pair.latent).std() / max(pair.mouth(pair.real).std(), 1e-9))


@dataclass(frozen=True)
class Metric:
    header: str  # table column
    fmt: str
    score: Callable[[MotionPair], float]


# Every metric of a motion against the real one, by key: the evaluators (eval.suite on re-detected renders,
# eval.motion_quality in the latent) score and tabulate from here, so a metric is added once.
MOTION_METRICS: dict[str, Metric] = {
    "mouth_r": Metric("mouth r", "{:.3f}", lambda p: correlation(p.mouth(p.latent), p.mouth(p.real))),
    "width_r": Metric("width r", "{:.3f}", lambda p: correlation(p.width(p.latent), p.width(p.real))),
    "lip_error": Metric("lip error", "{:.4f}", lambda p: lip_error(p.latent, p.real, p.neutral, p.basis)),
    "mouth_std_ratio": Metric("mouth std / real", "{:.2f}", mouth_std_ratio),
    "bilabials_closed": Metric("p/b/m closed", "{:.2f}", bilabials_closed),
    "pose_variation": Metric("ΔP (deg/frame)", "{:.3f}", lambda p: pose_variation(p.latent.pose)),
    "pose_std_deg": Metric("pose std (deg)", "{:.2f}", lambda p: pose_std(p.latent.pose)),
    "audio_pose_r": Metric("audio-pose r", "{:.3f}", lambda p: audio_pose_correlation(p.latent.pose, p.loudness)),
    "blinks_per_min": Metric("blinks/min", "{:.1f}", blinks_seen),
}


def mean_of_known(values: list[float]) -> float:
    """Mean over the values that are not nan (a metric a clip cannot have, such as p/b/m closed without English
    speech); nan when none is known."""
    known = np.array(values, np.float64)
    known = known[~np.isnan(known)]
    return float(known.mean()) if len(known) else float("nan")


def score_motion(pair: MotionPair) -> dict[str, float]:
    return {key: metric.score(pair) for key, metric in MOTION_METRICS.items()}


def table(rows: dict[str, dict[str, float]], columns: list[tuple[str, str, str]]) -> list[str]:
    """Markdown lines: a row per method, a column per (key, header, format)."""
    lines = ["| method | " + " | ".join(h for _, h, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method, row in rows.items():
        lines.append(f"| {method} | " + " | ".join(f.format(row[k]) for k, _, f in columns) + " |")
    return lines


def jitter(landmarks: np.ndarray) -> float:
    """Median frame-to-frame acceleration of the landmarks (px / frame^2): high-frequency shake. The median
    over frames keeps a few re-detection slips from dominating. landmarks: (T, 478, 3)."""
    if len(landmarks) < 3:
        return 0.0
    accel = np.linalg.norm(np.diff(landmarks[:, :, :2], n=2, axis=0), axis=-1).mean(1)
    return float(np.median(accel))


def motion_features(latent: FaceLatent, basis: FaceBasis, window: int = 50, stride: int = 25) -> np.ndarray:
    """(N, 3 * (3 + N_FD_CODES)) features of 2 s windows, the input of the motion Frechet distance: for the head
    angles and the largest dynamics codes (in units of their data std), the std, mean absolute velocity and
    mean absolute acceleration over the window (motion, not the posture or expression it starts from)."""
    codes = latent.dynamics[:, :N_FD_CODES] / np.sqrt(basis.dynamics_var[:N_FD_CODES])
    signal = np.hstack([np.degrees(latent.pose[:, POSE_ANGLES]), codes])
    starts = range(0, len(signal) - window + 1, stride)
    rows = []
    for s in starts:
        w = signal[s : s + window]
        rows.append(
            np.concatenate([w.std(0), np.abs(np.diff(w, axis=0)).mean(0), np.abs(np.diff(w, n=2, axis=0)).mean(0)])
        )
    return np.array(rows).reshape(-1, 3 * signal.shape[1])


def frechet_distance(a: np.ndarray, b: np.ndarray, ridge: float = 1e-3) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D), each feature standardised by the
    second set's std (so units do not weigh), covariances regularised for small N."""
    scale = b.std(0) + 1e-9
    a, b = a / scale, b / scale
    mu_a, mu_b = a.mean(0), b.mean(0)
    eye = ridge * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a, rowvar=False) + eye, np.cov(b, rowvar=False) + eye
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * np.real(root)))


def background_mask(landmarks: np.ndarray, size: int, margin: int = 60) -> np.ndarray:
    """(size, size) bool: pixels farther than `margin` px from the face's bounding box in any frame (the
    warp's rings move the hair and neck near the face; beyond them the picture should stay put)."""
    lo = np.floor(landmarks[..., :2].reshape(-1, 2).min(0)).astype(int) - margin
    hi = np.ceil(landmarks[..., :2].reshape(-1, 2).max(0)).astype(int) + margin
    mask = np.ones((size, size), bool)
    mask[max(lo[1], 0) : max(hi[1], 0), max(lo[0], 0) : max(hi[0], 0)] = False
    return mask


class FlickerMeter:
    """Mean absolute change of background pixels between consecutive frames (0-255 grey levels), fed frame by
    frame so that videos need not be held in memory."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.previous: np.ndarray | None = None
        self.total, self.count = 0.0, 0

    def add(self, frame: np.ndarray) -> None:
        grey = frame.mean(-1, dtype=np.float32)[self.mask]
        if self.previous is not None:
            self.total += float(np.abs(grey - self.previous).mean())
            self.count += 1
        self.previous = grey

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else 0.0


def drift(latent: FaceLatent, neutral: np.ndarray, basis: FaceBasis, fps: float, span_s: float = 20.0) -> dict:
    """Statistics of the first vs the last `span_s` seconds of a long generation: a model that drifts or
    freezes changes them. Ratios are last / first."""
    n = int(span_s * fps)
    first, last = latent[:n], latent[-n:]
    mouth_first, mouth_last = mouth_opening(first, neutral, basis), mouth_opening(last, neutral, basis)
    return {
        "pose_mean_shift_deg": float(
            np.degrees(np.abs(last.pose[:, POSE_ANGLES].mean(0) - first.pose[:, POSE_ANGLES].mean(0))).max()
        ),
        "pose_variation_ratio": pose_variation(last.pose) / max(pose_variation(first.pose), 1e-9),
        "mouth_std_ratio": float(mouth_last.std() / max(mouth_first.std(), 1e-9)),
        "blinks_first": blink_rate(first.eyes, fps),
        "blinks_last": blink_rate(last.eyes, fps),
    }
