"""A floor under the motion model's blink rate. The model plans blinks from the audio and the portrait, and on some
voices it hardly plans any: from the first frames of the validation clips, 6 seeds each, one speaker got 0-12 blinks
a minute (mean 3) where real people blink 20-40 times. A face that does not blink for ten seconds reads as dead, so
where the model leaves the eyes open longer than people do, a real blink's shape is added. Causal: it runs block by
block in live sessions as well as offline."""

import numpy as np

# Median eye openness (over the open level) around the 136 blinks of the training clips, from the frame before the
# lids start to drop to the frame they are nearly open again, at 25 fps.
BLINK_PROFILE = np.array([0.86, 0.44, 0.16, 0.43, 0.71, 0.86, 0.93, 0.96])
BLINK_FRACTION = 0.5  # openness below this share of the open level is a blink (as in prep and the metrics)
# The longest a face stays unblinking: drawn per blink between the 90th and the 95th percentile of the gaps
# between blinks in the training clips (3.3 s and 4.7 s), so added blinks do not come like a metronome.
MAX_GAP_S = (3.3, 4.7)


class BlinkFloor:
    """Adds a blink when the eyes have stayed open longer than the drawn gap. fps: frames per second; seed: for the
    gaps."""

    def __init__(self, fps: float, seed: int = 0) -> None:
        self.fps = fps
        self.random = np.random.default_rng(seed)
        self.open_frames = 0  # frames since the eyes were last closed
        self.gap = self._draw_gap()
        self.phase: int | None = None  # frame of BLINK_PROFILE being drawn, None between blinks

    def _draw_gap(self) -> int:
        return round(self.random.uniform(*MAX_GAP_S) * self.fps)

    def apply(self, openness: np.ndarray, open_level: np.ndarray) -> np.ndarray:
        """openness: (T, 2) eye openness of the next frames; open_level: (2,) the eyes' open openness. Returns the
        openness with any added blink (never more open than given)."""
        out = openness.copy()
        for t in range(len(out)):
            if self.phase is not None:
                out[t] = np.minimum(out[t], open_level * BLINK_PROFILE[self.phase])
                self.phase = self.phase + 1 if self.phase + 1 < len(BLINK_PROFILE) else None
            closed = out[t].mean() < BLINK_FRACTION * open_level.mean()
            self.open_frames = 0 if closed else self.open_frames + 1
            if self.phase is None and self.open_frames >= self.gap:
                self.phase, self.gap = 0, self._draw_gap()
        return out
