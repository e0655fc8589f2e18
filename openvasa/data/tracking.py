"""Tracking one face through a clip at its own frame times, and where it must be cut: lost tracking, scene
changes, missing frames, a second face."""

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from openvasa.data.config import PrepConfig
from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm
from openvasa.face.detect import invert_affine, transform_points
from openvasa.face.track import FaceTracker

log = logging.getLogger(__name__)

THUMBNAIL_PX = 32
MAX_FRAME_GAP_S = 0.25  # longer gaps between frame timestamps are not interpolated over


@dataclass
class ClipTrack:
    """One clip tracked at its own frame times. times: (N,) seconds after the first audio sample;
    landmarks: (N, 478, 3) float32 pixels of the framing in force, NaN where no face was found;
    second_face: (N,) bool; breaks: {frame: reason} where no segment may run on from the frame before."""

    times: np.ndarray
    landmarks: np.ndarray
    second_face: np.ndarray
    breaks: dict[int, str] = field(default_factory=dict)

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.landmarks[:, 0, 0])


def timed_frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(time, RGB frame) of each video frame, the time in seconds after the first audio sample and taken from
    the frame's own timestamp: variable frame rates and streams that start late both occur in the wild."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            audio = container.streams.audio
            zero = float(audio[0].start_time * audio[0].time_base) if audio and audio[0].start_time else 0.0
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if frame.time is None:
                    raise OpenVasaError(f"{path.name}: a video frame has no timestamp")
                yield frame.time - zero, frame.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
        raise OpenVasaError(f"{path.name}: cannot decode the video ({e.strerror})") from e


def track_clip(path: Path, config: PrepConfig, tracker: FaceTracker) -> ClipTrack:
    """Stream a clip through the tracker, noting scene cuts, landmark jumps, gaps and second faces."""
    check_every = config.second_face_check_every
    times, marks, breaks, crowded = [], [], {}, []
    previous_thumb, previous, last_found = None, None, -math.inf
    tracker.restart()
    for i, (time_s, frame) in enumerate(timed_frames(path)):
        thumb = _thumbnail(frame)
        if previous_thumb is not None and np.abs(thumb - previous_thumb).mean() > config.scene_cut_threshold:
            breaks[i] = "scene_cut"
        elif times and time_s - times[-1] > MAX_FRAME_GAP_S:
            breaks[i] = "frame_gap"
        previous_thumb = thumb
        if i in breaks or (previous is None and time_s - last_found > config.reframe_after_s):
            tracker.restart()
            previous, last_found = None, time_s
        points = tracker.track(frame)
        if points is not None and previous is not None and _jump(previous, points) > config.landmark_jump_threshold:
            # An unnoticed cut: the tracker snapped to a face elsewhere, in a framing chosen for the old one.
            breaks[i] = "landmark_jump"
            tracker.restart()
            points = tracker.track(frame)
        if points is not None:
            last_found = time_s
            if i % check_every == 0 and _second_face(tracker, frame, points, config):
                crowded.append(i)
        previous = points
        times.append(time_s)
        marks.append(np.full((lm.N_LANDMARKS, 3), np.nan, np.float32) if points is None else points)
    if not marks:
        raise OpenVasaError(f"{path.name}: the video has no frames")
    second_face = np.zeros(len(marks), bool)
    for i in crowded:
        # Up to the neighbouring checks: when the other face came and went between them is unknown.
        second_face[max(0, i - check_every + 1) : i + check_every] = True
    return ClipTrack(np.array(times), np.stack(marks), second_face, breaks)


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMBNAIL_PX, THUMBNAIL_PX), interpolation=cv2.INTER_AREA).astype(np.float32)


def _jump(before: np.ndarray, after: np.ndarray) -> float:
    """Median move of the rigid landmarks between two frames, in eye distances."""
    rigid = list(lm.RIGID)
    moves = np.linalg.norm(after[rigid, :2] - before[rigid, :2], axis=-1)
    return float(np.median(moves) / lm.eye_distance(after))


def _second_face(tracker: FaceTracker, frame: np.ndarray, points: np.ndarray, config: PrepConfig) -> bool:
    """Whether a whole-frame detection finds another face of comparable size to the tracked one."""
    face = transform_points(points, invert_affine(tracker.to_crop))[:, :2]
    (x0, y0), (x1, y1) = face.min(0), face.max(0)
    own, others = [], []
    for box in tracker.finder.detect(frame):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        area = (box[2] - box[0]) * (box[3] - box[1])
        (own if x0 <= cx <= x1 and y0 <= cy <= y1 else others).append(area)
    # Detector boxes are tighter than the landmarks' extent: compare like with like when possible.
    main = max(own) if own else (x1 - x0) * (y1 - y0)
    return any(area > config.second_face_area * main for area in others)


def usable_runs(track: ClipTrack) -> list[tuple[int, int, str]]:
    """Maximal runs [a, b) of native frames with the face tracked, alone and unbroken, with why each ended."""
    usable = track.found & ~track.second_face
    runs, start = [], None
    for i in range(len(usable) + 1):
        if i == len(usable):
            reason = "end"
        elif i in track.breaks:
            reason = track.breaks[i]
        elif not usable[i]:
            reason = "second_face" if track.second_face[i] else "tracking_lost"
        else:
            reason = None
        if start is not None and reason is not None:
            runs.append((start, i, reason))
            start = None
        if start is None and i < len(usable) and usable[i]:
            start = i
    return runs
