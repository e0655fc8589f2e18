"""Blinks of the generated eyes: which of the model's eye dips become blinks, and a floor under the blink rate.

The model dips its eyes often, but few dips reach a blink's depth, so after rendering most did not register. A map
from generated to real openness quantiles (the first calibration) deepened every dip in proportion, and a model
retrained on more clips, which dips more often, blinked twice as often as people (45.5 a minute for 23). So rate and
depth are set apart: a dip below a threshold fitted per model on the training people (BlinkCalibration,
openvasa.tools.calibrate) becomes a blink of a real blink's depth and shape, and shallower dips stay, though never below HELD_OPEN.

And a floor: on some voices the model hardly dips at all (one validation speaker: 0-12 a minute over 6 seeds, where
real people blink 20-40 times). A face that does not blink for ten seconds reads as dead, so where the eyes stay
open longer than people's do, a real blink is added. Causal: it runs block by block in live sessions exactly as it
does offline.
"""

from dataclasses import asdict, dataclass

import numpy as np

# Median eye openness (over the open level) around the 136 blinks of the training clips, from the frame before the
# lids start to drop to the frame they are nearly open again, at 25 fps.
BLINK_PROFILE = np.array([0.86, 0.44, 0.16, 0.43, 0.71, 0.86, 0.93, 0.96])
DIP_PHASE = 1  # a dip is seen when it is already on its way down: its blink starts at the profile's first drop
BLINK_FRACTION = 0.5  # openness below this share of the open level is a blink (as in prep and the metrics)
# A calibrated model's eyes stay at least this open between blinks and while a blink reopens. Its dips that are
# not blinks are half-shut flickers, and one that outlasted the blink drawn over it closed the eye again: the
# low-latency model dipped below half open 34 times a minute and was counted blinking 66.5 times, and with the
# eyes held open only between blinks, 16% of the offline model's blinks still came 0.3 s or less after the last
# one (a flutter a viewer sees; real clips: 5% of 129 gaps, and 2% once the reopening is held too).
HELD_OPEN = BLINK_FRACTION + 0.1
# The longest a face stays unblinking: drawn per blink from the upper part of the gaps between blinks in the
# training clips, their 70th to 95th percentiles (below: the quantiles and their gaps), so added blinks do not come
# like a metronome. A floor drawn from the 90th-95th (3.3-4.7 s) let a voice the model hardly dips to blink 15
# times a minute; people blink 20-40, and the gaps' 70th-95th give a face left to the floor about 20.
MAX_GAP_QUANTILES = (0.7, 0.8, 0.9, 0.95)
MAX_GAP_S = (2.0, 2.47, 3.28, 5.03)


@dataclass
class BlinkCalibration:
    """Which dips of one motion model are blinks; stored in its checkpoint (MotionCheckpoint.blink_calibration)."""

    threshold: float  # openness (share of the open level) below which a dip becomes a blink
    real_rate: float  # blinks per minute of the real training clips, which the threshold was fitted to give...
    model_rate: float  # ...and what it gave there, floor included

    @property
    def rearm(self) -> float:
        """The eyes must reopen above this share of open before a dip can start the next blink: a dip that
        lingers, or jitters about the threshold, is one blink, not several."""
        return (1.0 + self.threshold) / 2

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}  # plain floats: checkpoints load weights only

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> "BlinkCalibration":
        return cls(**d)


class Blinks:
    """Shapes the blinks of a stream of eye openness: calibrated dips and the floor. fps: frames per second; seed:
    for the floor's gaps; calibration: None leaves the model's dips as they are (an uncalibrated model)."""

    def __init__(self, fps: float, seed: int = 0, calibration: BlinkCalibration | None = None) -> None:
        self.fps = fps
        self.calibration = calibration
        self.random = np.random.default_rng(seed)
        self.open_frames = 0  # frames since the eyes were last closed
        self.gap = self._draw_gap()
        self.phase: int | None = None  # frame of BLINK_PROFILE being drawn, None between blinks
        self.armed = True  # whether a dip may start a blink (the eyes reopened since the last one)

    def _draw_gap(self) -> int:
        quantile = self.random.uniform(MAX_GAP_QUANTILES[0], MAX_GAP_QUANTILES[-1])
        return round(float(np.interp(quantile, MAX_GAP_QUANTILES, MAX_GAP_S)) * self.fps)

    def apply(self, openness: np.ndarray, open_level: np.ndarray) -> np.ndarray:
        """openness: (T, 2) eye openness of the next frames; open_level: (2,) the eyes' open openness. Returns the
        openness with the blinks drawn and, with a calibration, the eyes held HELD_OPEN open between them and while
        a blink reopens."""
        out = openness.copy()
        level = open_level.mean()
        for t in range(len(out)):
            if self.phase is None and self.calibration is not None:
                ratio = out[t].mean() / level
                if self.armed and ratio < self.calibration.threshold:
                    self.phase, self.armed = DIP_PHASE, False
                elif ratio >= self.calibration.rearm:
                    self.armed = True
            closing = self.phase is not None and BLINK_PROFILE[self.phase] < BLINK_FRACTION
            if self.calibration is not None and not closing:
                out[t] = np.maximum(out[t], open_level * HELD_OPEN)
            if self.phase is not None:
                out[t] = np.minimum(out[t], open_level * BLINK_PROFILE[self.phase])
                self.phase = self.phase + 1 if self.phase + 1 < len(BLINK_PROFILE) else None
            closed = out[t].mean() < BLINK_FRACTION * level
            self.open_frames = 0 if closed else self.open_frames + 1
            if self.phase is None and self.open_frames >= self.gap:
                self.phase, self.gap = 0, self._draw_gap()
        return out
