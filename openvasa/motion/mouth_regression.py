"""The mouth's opening and width read linearly from the audio features, steering the generated mouth towards them.

On people it never saw, the motion model's mouth opening correlates 0.43 with the real one (8 validation people, in
the latent), where a ridge regression on the same Whisper features and loudness, over 11 frames, reaches 0.53
(fitted on each training clip's mouth at the clip's own audio-video offset, clip_offsets; 0.49 at the offsets the
clips were recorded with): trained on 26 clips of 14 people, the diffusion model learns those people's mouths, and a
low-capacity regularised read-out generalises better. Sampling it with other seeds or averaging samples does not
close the gap (the mouth hardly varies between seeds), nor does a time shift (the model's mouth is best aligned at
lag 0).

So the generated opening and width are moved part of the way (`blend`, one share for each, fitted on training-split
people the model was not trained on: each measure's own correlation with the real one peaks at its own share)
towards the regression's, along fitted directions of the expression code; everything else (the lips' shape,
expression, eyes, head) stays the model's. Both are taken about their running means (a few seconds), so the mouth's
resting level, an emotion's and the portrait's stay as generated. The regression's output is scaled to real mouths'
amplitude (a ridge regression shrinks it). Fitted by openvasa.tools.calibrate and stored in the motion checkpoint
(MotionCheckpoint.mouth_regression).

Offline the regression looks 7 frames ahead. A live session has no later audio, so the live models' regressions end
at the frame (LiveSteering): alone it reaches r 0.41 on the validation people (0.29 fitted at the recorded offsets
on half the encoder's components), and steering the live models' mouths part of the way to it takes them from their
own 0.345 (4-frame blocks) and 0.318 (1-frame) to 0.427 and 0.400 (0.386 and 0.368 with that earlier regression).
Their running means are exponential, carried from block to block, so a session steers exactly as a whole generation
does.
"""

from dataclasses import dataclass

import numpy as np

from openvasa.face.latent import FaceLatent
from openvasa.face.track import gaussian_smooth

# Time constant (frames) of the running means the opening and width are taken about: the regression was fitted on
# clip-centred measures of 5-20 s clips; a few seconds keeps a long generation's resting level its own.
LEVEL_SIGMA = 50.0


@dataclass
class MouthRegression:
    """taps: (L, A, 2) weights of the audio features (A) at frames t + first ... t + first + L - 1 for the
    opening and width (eye distances) at frame t; readout: (K, 2) expression code -> opening and width; directions:
    (2, K) code change per eye distance of each (readout applied to them gives the identity); blend: (2,) the share
    of the way to the regression's opening and width (a single share is used for both)."""

    taps: np.ndarray
    first: int
    readout: np.ndarray
    directions: np.ndarray
    blend: np.ndarray

    def __post_init__(self) -> None:
        self.blend = np.broadcast_to(np.asarray(self.blend, np.float64), (2,)).copy()

    @property
    def causal(self) -> bool:
        """Whether the taps end at the frame: what a live session can use."""
        return self.first + len(self.taps) <= 1

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(T, 2) opening and width about their running means, of audio features (T, A)."""
        rows = _tap_rows(features, self.first, len(self.taps))
        out = sum(r @ w for r, w in zip(rows, self.taps, strict=True))
        return out - gaussian_smooth(out, LEVEL_SIGMA)

    def steer(self, latent: FaceLatent, features: np.ndarray, weight: np.ndarray | None = None) -> FaceLatent:
        """The latent with its mouth moved `blend` of the way to the regression's; features: (T, A) its audio;
        weight: (T,) the share of that move made at each frame (all of it if None). A causal regression steers as a
        live session does."""
        if self.causal:
            return LiveSteering(self).apply(latent, features, weight)
        if not len(latent):
            return latent
        measured = latent.dynamics @ self.readout  # (T, 2)
        measured = measured - gaussian_smooth(measured, LEVEL_SIGMA)
        change = self.blend * (self.predict(features[: len(latent)]) - measured)
        if weight is not None:
            change = change * weight[: len(latent), None]
        return FaceLatent(latent.pose, latent.eyes, latent.dynamics + change @ self.directions)

    def to_dict(self) -> dict:
        """Plain lists and floats: checkpoints load weights only."""
        return {
            "taps": self.taps.tolist(),
            "first": int(self.first),
            "readout": self.readout.tolist(),
            "directions": self.directions.tolist(),
            "blend": self.blend.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "MouthRegression":
        return cls(
            np.asarray(d["taps"], np.float64),
            int(d["first"]),
            np.asarray(d["readout"], np.float64),
            np.asarray(d["directions"], np.float64),
            np.asarray(d["blend"], np.float64),  # one share in checkpoints before the width had its own
        )


class LiveSteering:
    """MouthRegression.steer block by block, for a causal regression: the last frames of audio features and the
    running means (exponential, LEVEL_SIGMA frames) are carried from one block to the next."""

    def __init__(self, regression: MouthRegression) -> None:
        if not regression.causal:
            raise ValueError("live steering needs a regression whose taps end at the frame")
        self.regression = regression
        self.history: np.ndarray | None = None  # (-first, A) the features before the next block
        self.means: np.ndarray | None = None  # (2, 2) running means of the predicted and the measured mouth

    def apply(self, latent: FaceLatent, features: np.ndarray, weight: np.ndarray | None = None) -> FaceLatent:
        """The next frames (T) of the latent, steered; features: (>= T, A) their audio features; weight: (>= T,)
        the share of the move made at each frame (all of it if None)."""
        r, n = self.regression, len(latent)
        if not n:
            return latent
        past = -r.first
        history = np.repeat(features[:1], past, 0) if self.history is None else self.history
        x = np.concatenate([history, features[:n]])  # frame t of the block is row past + t
        predicted = sum(x[k : k + n] @ w for k, w in enumerate(r.taps))  # tap k: frame t + first + k
        both = np.stack([predicted, latent.dynamics @ r.readout], 1)  # (T, 2 predicted|measured, 2)
        means = self.means if self.means is not None else both[0]
        about = np.empty_like(both)
        for t in range(n):
            means = means + (both[t] - means) / LEVEL_SIGMA
            about[t] = both[t] - means
        self.means, self.history = means, x[len(x) - past :]
        change = r.blend * (about[:, 0] - about[:, 1])
        if weight is not None:
            change = change * weight[:n, None]
        return FaceLatent(latent.pose, latent.eyes, latent.dynamics + change @ r.directions)


def fit_directions(dynamics: np.ndarray, measures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Readout (K, 2) and directions (2, K) from real frames' expression codes (N, K) and their opening and width
    (N, 2), both centred per clip. The directions are the codes' regression on the measures (so they move the face
    as real mouths move), rescaled so that the readout reads exactly one eye distance of each along its own."""
    readout = np.linalg.lstsq(dynamics, measures, rcond=None)[0]
    directions = np.linalg.lstsq(measures, dynamics, rcond=None)[0]
    return readout, np.linalg.solve(directions @ readout, directions)


def fit_taps(
    features: list[np.ndarray], measures: list[np.ndarray], first: int, n_taps: int, dims: int, ridge: float
) -> np.ndarray:
    """(n_taps, A, 2) ridge regression of clip-centred measures (T, 2) on the features (T, A) of the clips around
    each frame. The features' first `dims` principal components (audio encoders' dimensions are many and redundant)
    and the last few, loudness, are standardised; the fitted map is folded back onto the raw features. The output
    is scaled so that its per-clip std equals the real measures' on average: a ridge regression shrinks it."""
    encoder = features[0].shape[1] - 4  # the loudness front-end's 4 dims come last ('whisper-tiny+energy')
    stacked = np.concatenate(features)
    mean = stacked.mean(0)
    components = np.linalg.svd(stacked[:, :encoder] - mean[:encoder], full_matrices=False)[2][:dims]  # (dims, E)
    project = np.zeros((stacked.shape[1], dims + 4))  # raw features -> components and loudness
    project[:encoder, :dims] = components.T
    project[encoder:, dims:] = np.eye(4)
    reduced = [(f - mean) @ project for f in features]
    scale = np.concatenate(reduced).std(0) + 1e-9
    shifted = [np.concatenate(_tap_rows(r / scale, first, n_taps), 1) for r in reduced]
    x, y = np.concatenate(shifted), np.concatenate([m - m.mean(0) for m in measures])
    weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)  # (n_taps * (dims + 4), 2)
    fitted = [s @ weights for s in shifted]
    gain = np.mean([(m - m.mean(0)).std(0) for m in measures], 0) / np.concatenate(fitted).std(0)
    per_tap = weights.reshape(n_taps, dims + 4, 2) * gain / scale[None, :, None]
    return np.einsum("ad,ldo->lao", project, per_tap)  # the mean's part is taken out with the running mean


def delayed(x: np.ndarray, lag: int) -> np.ndarray:
    """x (T, D) shifted `lag` frames later (earlier if negative): row t is row t - lag of x, the edge rows repeated."""
    return _tap_rows(x, -lag, 1)[0]


def clip_offsets(
    features: list[np.ndarray],
    measures: list[np.ndarray],
    people: list[str],
    first: int,
    n_taps: int,
    dims: int,
    ridge: float,
    max_offset: int,
) -> list[int]:
    """Per clip, the delay of its measures (frames, at most max_offset either way) at which its opening best follows
    the regression fitted on the other people's clips: the clip's own audio-video offset, which real recordings
    carry (our sync judge puts the validation clips' at -1.3 frames on average, a few frames either way). Fitted
    across clips at their recorded offsets, the taps blur the mouth over them. Found once: refitting the others at
    the offsets found and searching again (three passes) moved a third of them by a frame and lowered the refitted
    regression's correlation on people it was not fitted on (0.532 -> 0.523; benchmarks/probe_mouth_offsets.py)."""
    offsets = [0] * len(features)
    for person in sorted(set(people)):
        others = [i for i, p in enumerate(people) if p != person]
        taps = fit_taps([features[i] for i in others], [measures[i] for i in others], first, n_taps, dims, ridge)
        regression = MouthRegression(taps, first, np.zeros((1, 2)), np.zeros((2, 1)), 0.0)
        for i in (i for i, p in enumerate(people) if p == person):
            predicted = regression.predict(features[i])[:, 0]
            real = (measures[i] - gaussian_smooth(measures[i], LEVEL_SIGMA))[:, :1]
            inner = slice(max_offset, len(real) - max_offset)  # the frames every candidate delay compares
            scores = [
                np.corrcoef(predicted[inner], delayed(real, lag)[inner, 0])[0, 1]
                for lag in range(-max_offset, max_offset + 1)
            ]
            offsets[i] = int(np.argmax(scores)) - max_offset
    return offsets


def _tap_rows(x: np.ndarray, first: int, n_taps: int) -> list[np.ndarray]:
    """For each tap k, (T, D) the rows of x (T, D) at t + first + k, the edge rows repeated past the ends."""
    before, after = max(-first, 0), max(first + n_taps - 1, 0)
    padded = np.pad(x, ((before, after), (0, 0)), mode="edge")
    start = before + first
    return [padded[start + k : start + k + len(x)] for k in range(n_taps)]
