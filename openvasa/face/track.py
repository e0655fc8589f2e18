"""Landmarks for every frame of a talking video, in a 512x512 framing fixed from its first face.

`track_frames` tracks a whole clip in the framing of its first frame and fills lost frames; `FaceTracker`
follows a stream frame by frame, reports lost frames as they are and re-frames when told to (after a
scene cut), for preparing training data from edited videos.
"""

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from openvasa.errors import OpenVasaError
from openvasa.face.detect import FRAME_SIZE, FaceAnalyzer, least_padded_framing

log = logging.getLogger(__name__)


@dataclass
class TrackedClip:
    """frames: (T, S, S, 3) uint8 crops; landmarks: (T, 478, 3) px; valid: (T,) bool, False where tracking
    was lost (those landmarks are copied from the nearest tracked frame); to_crop: (2, 3) video pixels -> framing
    pixels."""

    frames: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    to_crop: np.ndarray


FIRST_FACE_SEARCH = 25  # frames searched for the face the crop is fixed on


def track_frames(frames: list[np.ndarray], keep_frames: bool = True) -> TrackedClip:
    """Fix one crop from the first frame where a face is found (the camera is assumed still), then track."""
    with FaceAnalyzer(static=True) as finder:
        for first in frames[:FIRST_FACE_SEARCH]:
            boxes = finder.detect(first)
            points = finder.landmarks_in_box(first, boxes[0]) if boxes else None
            if points is not None:
                break
        else:
            raise OpenVasaError("no face found in the first second of the video")
    to_crop = least_padded_framing(points, first.shape[:2])
    crops, marks, valid = [], [], []
    with FaceAnalyzer(static=False) as tracker:
        for frame in frames:
            crop = frame_in_framing(frame, to_crop)
            found = tracker.landmarks(crop)
            valid.append(found is not None)
            marks.append(found if found is not None else np.full((478, 3), np.nan, np.float32))
            if keep_frames:
                crops.append(crop)
    valid_arr = np.array(valid)
    if valid_arr.mean() < 0.5:
        raise OpenVasaError(f"the face was lost in {100 * (1 - valid_arr.mean()):.0f}% of the video's frames")
    landmarks = fill_gaps(np.stack(marks), valid_arr)
    frames_arr = np.stack(crops) if keep_frames else np.empty((0, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    return TrackedClip(frames_arr, landmarks, valid_arr, to_crop)


class FaceTracker:
    """One face through consecutive frames, in a 512 framing chosen whenever tracking (re)starts.

    Where no face is found `track` returns None and nothing is filled in; `restart` (after a scene cut or
    a long loss) makes the next frame search the whole image and choose a new framing. `finder` is a static
    FaceAnalyzer the caller may also use for whole-image detection.
    """

    def __init__(self) -> None:
        self.finder = FaceAnalyzer(static=True)
        self.to_crop: np.ndarray | None = None  # (2, 3) frame pixels -> framing pixels
        self._tracker: FaceAnalyzer | None = None

    def restart(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
        self._tracker, self.to_crop = None, None

    def track(self, frame: np.ndarray) -> np.ndarray | None:
        """(H, W, 3) RGB frame -> (478, 3) landmarks in pixels of the current framing, or None."""
        if self._tracker is None:
            boxes = self.finder.detect(frame)
            points = self.finder.landmarks_in_box(frame, boxes[0]) if boxes else None
            if points is None:
                return None
            self.to_crop = least_padded_framing(points, frame.shape[:2])
            self._tracker = FaceAnalyzer(static=False)
        return self._tracker.landmarks(frame_in_framing(frame, self.to_crop))

    def close(self) -> None:
        self.restart()
        self.finder.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_in_framing(frame: np.ndarray, to_crop: np.ndarray) -> np.ndarray:
    """A frame warped into a (2, 3) framing: what the tracker's landmarks are measured in."""
    return cv2.warpAffine(
        frame, to_crop, (FRAME_SIZE, FRAME_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )


def fill_gaps(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Copy each lost frame's landmarks from the nearest tracked frame."""
    good = np.flatnonzero(valid)
    nearest = good[np.abs(np.arange(len(valid))[:, None] - good[None]).argmin(1)]
    return landmarks[nearest]


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of tracked signals (T, D) along time with edge padding (removes tracking jitter);
    sigma in frames, 0 leaves x as it is."""
    if sigma <= 0:
        return x
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(x, ((radius, radius), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(x.shape[1])], 1)
