"""Find the face in a portrait, frame it as a 512x512 head-and-shoulders crop, and get 478 landmarks.

MediaPipe's full-range detector finds faces anywhere in the image; FaceMesh (with iris refinement) then
runs on the aligned crop, where the face has the size FaceMesh was trained on.
"""

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import cv2
import numpy as np

from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm

log = logging.getLogger(__name__)

FRAME_SIZE = 512
MIN_FACE_PX = 48  # forehead-to-chin height in the input image
# Forehead-to-chin height as a fraction of the output frame: the preferred value, and the largest one
# used to avoid padding when the portrait is cropped tightly.
FACE_HEIGHT_IN_FRAME = 0.36
MAX_FACE_HEIGHT_IN_FRAME = 0.55
FACE_CENTRE_Y_IN_FRAME = 0.42  # leaves room for hair above and shoulders below
# Portrait framings (`--framing`): "auto" frames the face as large as it must be and no larger for every output
# pixel to come from the picture (a tight picture gives a close-up); "wide" keeps the head-and-shoulders
# composition and synthesises what the picture lacks.
FRAMINGS = ("auto", "wide")
AUTO_FACE_HEIGHTS = np.linspace(FACE_HEIGHT_IN_FRAME, 0.85, 26)
AUTO_CENTRE_SHIFTS = (0.0, -0.04, 0.04, -0.08, 0.08, -0.12, 0.12)  # of the frame, x and y: off-centre before closer
NO_PADDING = 0.002  # the share of the frame that counts as none (a few pixels at the corners)
CONTEXT_MARGIN = FRAME_SIZE // 4


@dataclass
class FaceCrop:
    """A portrait framed for rendering.

    image: (S, S, 3) uint8 RGB; landmarks: (478, 3) float32 pixels of `image` (z in x's scale, away from
    the camera); to_crop: (2, 3) affine from input-image pixels to crop pixels; padded: (S, S) bool,
    pixels that came from outside the input image; context: (S + 2M, S + 2M, 3) the same framing with a
    margin M = CONTEXT_MARGIN all round, shown when the camera zooms out.
    """

    image: np.ndarray
    landmarks: np.ndarray
    to_crop: np.ndarray
    padded: np.ndarray
    context: np.ndarray


class FaceAnalyzer:
    """Detector + FaceMesh. `static=False` tracks across consecutive video frames (faster, steadier)."""

    def __init__(self, static: bool = True) -> None:
        import skimage.data

        self._quiet_next_inference = False
        with _quiet_native_logs():
            # Its native module prints a harmless protobuf 6 AttributeError (GetPrototype) on first import.
            mp = _import_mediapipe()

            # The full-range model finds small and distant faces, the short-range one close-ups; use both.
            self._detectors = [
                mp.solutions.face_detection.FaceDetection(model_selection=m, min_detection_confidence=0.5)
                for m in (1, 0)
            ]
            # MediaPipe's C++ side logs its set-up on the first inference: run one now, quietly. A tracker
            # must not carry the warm-up face into the video, so it is warmed up in static mode.
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1)
            face = skimage.data.astronaut()
            self.landmarks_in_box(face, self.detect(face)[0])
            self._quiet_next_inference = not static
            if not static:
                self._mesh.close()
                self._mesh = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=False, refine_landmarks=True, max_num_faces=1, min_detection_confidence=0.5
                )

    def close(self) -> None:
        for detector in self._detectors:
            detector.close()
        self._mesh.close()

    def __enter__(self) -> "FaceAnalyzer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes (x0, y0, x1, y1) in pixels, largest first; a face found by both detectors counts once."""
        h, w = image.shape[:2]
        pixels = np.ascontiguousarray(image)
        boxes: list[tuple[float, float, float, float]] = []
        for detector in self._detectors:
            with _quiet_native_logs():  # called once per image or video, so the fd juggling is cheap
                detections = detector.process(pixels).detections
            for det in detections or []:
                b = det.location_data.relative_bounding_box
                box = (b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h)
                if all(_overlap(box, other) < 0.3 for other in boxes):
                    boxes.append(box)
        return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 3) float32 landmarks in pixels of `image` (z scaled like x), or None if no face."""
        h, w = image.shape[:2]
        with _quiet_native_logs() if self._quiet_next_inference else contextlib.nullcontext():
            result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None  # the landmark model (which logs its set-up) only runs once a face is found
        self._quiet_next_inference = False
        pts = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], np.float32)
        return pts * np.array([w, h, w], np.float32)

    def crop_portrait(self, image: np.ndarray, face_index: int | None = None, framing: str = "auto") -> FaceCrop:
        """Frame the chosen face (largest by default) in a FRAME_SIZE crop, as `framing` (one of FRAMINGS) says."""
        if framing not in FRAMINGS:
            raise OpenVasaError(f"unknown framing {framing!r}; choose from {', '.join(FRAMINGS)}")
        boxes = self.detect(image)
        if not boxes:
            raise OpenVasaError("no face found in the image")
        if face_index is None:
            if len(boxes) > 1:
                log.warning("%d faces found; using the largest (choose another with --face-index)", len(boxes))
            face_index = 0
        if not 0 <= face_index < len(boxes):
            raise OpenVasaError(f"--face-index {face_index} is out of range: {len(boxes)} face(s) found")
        points = self.landmarks_in_box(image, boxes[face_index])
        if points is None:
            raise OpenVasaError("a face was detected but its landmarks could not be found (too blurred or turned?)")
        _check_face_visible(points, image.shape[:2])
        if framing == "auto":
            to_crop = unpadded_framing(points, image.shape[:2])
        else:
            to_crop = framing_transform(points, FACE_HEIGHT_IN_FRAME)
        crop, padded = warp_with_padding(image, to_crop, FRAME_SIZE)
        if padded.any():
            log.info("%.1f%% of the frame is not in the picture and was filled in", 100 * padded.mean())
        refined = self.landmarks(crop)
        if refined is None:  # fall back to the transformed first pass
            refined = transform_points(points, to_crop)
        with_margin = to_crop + np.array([[0, 0, CONTEXT_MARGIN], [0, 0, CONTEXT_MARGIN]])
        context, _ = warp_with_padding(image, with_margin, FRAME_SIZE + 2 * CONTEXT_MARGIN)
        return FaceCrop(crop, refined, to_crop, padded, context)

    def landmarks_in_box(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
        """FaceMesh on a square patch around a detected box, mapped back to image pixels. Stylised faces
        (posters, cartoons) are sometimes found only with a tighter or looser patch, so a few are tried."""
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        for margin in (2.0, 1.5, 2.6):
            scale = 256.0 / (margin * max(x1 - x0, y1 - y0))
            to_patch = np.array([[scale, 0, 128 - scale * cx], [0, scale, 128 - scale * cy]], np.float64)
            patch = cv2.warpAffine(image, to_patch, (256, 256), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
            pts = self.landmarks(patch)
            if pts is not None:
                return transform_points(pts, invert_affine(to_patch))
        return None


def _import_mediapipe() -> ModuleType:
    """mediapipe, imported without matplotlib.pyplot. Its solutions package loads pyplot (0.6 s of every start) for a
    3-D landmark plot this project never draws; an empty placeholder stands in during the import, and is gone after
    it, so a later `import matplotlib.pyplot` gets the real one."""
    if "mediapipe" in sys.modules or "matplotlib.pyplot" in sys.modules:
        import mediapipe

        return mediapipe
    sys.modules["matplotlib.pyplot"] = ModuleType("matplotlib.pyplot")
    try:
        import mediapipe
    finally:
        del sys.modules["matplotlib.pyplot"]
    return mediapipe


class _NativeLogSilencer:
    """Silences stderr at the file-descriptor level (MediaPipe's C++ logging ignores Python and env vars), for
    every thread at once: the first to enter points fd 2 at /dev/null, the last to leave restores it. Each caller
    saving and restoring fd 2 on its own broke under threads: two overlapping calls left fd 2 on /dev/null for
    good, and every later log line and traceback of the server was lost (seen in the soak)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: int | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                sys.stderr.flush()
                self._saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._saved is not None:
                    os.dup2(self._saved, 2)
                    os.close(self._saved)
                    self._saved = None


_quiet_native_logs = _NativeLogSilencer()


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _check_face_visible(points: np.ndarray, shape: tuple[int, int]) -> None:
    h, w = shape
    face_height = float(np.linalg.norm(points[lm.FOREHEAD_TOP, :2] - points[lm.CHIN, :2]))
    if face_height < MIN_FACE_PX:
        raise OpenVasaError(
            f"the face is too small ({face_height:.0f} px forehead to chin; need at least {MIN_FACE_PX} px)"
        )
    oval = points[list(lm.FACE_OVAL), :2]
    margin = 0.02 * face_height
    outside = (oval[:, 0] < -margin) | (oval[:, 0] > w + margin) | (oval[:, 1] < -margin) | (oval[:, 1] > h + margin)
    if outside.mean() > 0.1:
        raise OpenVasaError("the face is cut off by the image border; use a portrait showing the whole face")


def least_padded_framing(points: np.ndarray, shape: tuple[int, int], size: int = FRAME_SIZE) -> np.ndarray:
    """The framing closest to the preferred face size that needs (almost) no padding."""
    best, best_padding = None, 2.0
    for fraction in np.linspace(FACE_HEIGHT_IN_FRAME, MAX_FACE_HEIGHT_IN_FRAME, 8):
        affine = framing_transform(points, fraction, size)
        padding = _padding(affine, shape, size)
        if padding < 0.02:
            return affine
        if padding < best_padding - 0.01:
            best, best_padding = affine, padding
    return best


def unpadded_framing(points: np.ndarray, shape: tuple[int, int], size: int = FRAME_SIZE) -> np.ndarray:
    """The widest framing, eyes level or as the picture has them, face centred or a little off, whose every pixel
    is in the picture; where none is, the one that needs the least filling in."""
    best, best_padding = None, 2.0
    for fraction in AUTO_FACE_HEIGHTS:
        for level in (True, False):
            for dx, dy in sorted(
                ((x, y) for x in AUTO_CENTRE_SHIFTS for y in AUTO_CENTRE_SHIFTS), key=lambda d: abs(d[0]) + abs(d[1])
            ):
                affine = framing_transform(points, fraction, size, level, (dx, dy))
                padding = _padding(affine, shape, size)
                if padding <= NO_PADDING:
                    return affine
                if padding < best_padding - 1e-3:
                    best, best_padding = affine, padding
    return best


def _padding(affine: np.ndarray, shape: tuple[int, int], size: int) -> float:
    """The share of a size x size framing outside an image of `shape`, on a grid an eighth of the frame's size."""
    inside = cv2.warpAffine(np.ones(shape, np.uint8), affine / 8, (size // 8, size // 8), borderValue=0)
    return 1.0 - float(inside.mean())


def framing_transform(
    points: np.ndarray,
    face_fraction: float,
    size: int = FRAME_SIZE,
    level: bool = True,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """(2, 3) similarity from image pixels to the output frame: eyes level (or the picture's own tilt), face
    centred (shifted by `shift` of the frame), given face height."""
    right_eye = points[list(lm.RIGHT_EYE_CORNERS), :2].mean(0)
    left_eye = points[list(lm.LEFT_EYE_CORNERS), :2].mean(0)
    angle = np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]) if level else 0.0
    face_height = np.linalg.norm(points[lm.FOREHEAD_TOP, :2] - points[lm.CHIN, :2])
    centre = (points[lm.FOREHEAD_TOP, :2] + points[lm.CHIN, :2]) / 2
    scale = face_fraction * size / face_height
    c, s = np.cos(-angle) * scale, np.sin(-angle) * scale
    rot = np.array([[c, -s], [s, c]])
    target = np.array([0.5 + shift[0], FACE_CENTRE_Y_IN_FRAME + shift[1]]) * size
    return np.hstack([rot, (target - rot @ centre)[:, None]])


def warp_with_padding(image: np.ndarray, affine: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp into a size x size frame. Pixels outside the picture get the picture's colours spread out from its
    edge, the further out the more blurred: an out-of-focus continuation rather than the edge stretched into bands
    or a mirrored copy of the face."""
    out = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(
        np.full(image.shape[:2], 255, np.uint8), affine, (size, size), flags=cv2.INTER_NEAREST, borderValue=0
    )
    padded = inside < 128
    if padded.any():
        alpha = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), sigmaX=size / 200)[..., None]
        out = (out * (1 - alpha) + _spread(out, ~padded) * alpha).astype(np.uint8)
    return out, padded


def _spread(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill every pixel with the known pixels' colours, normalised-blurred: the finest of several blurs (sigma 1/64
    to 1/2 of the frame) that has enough known pixels near it. Computed at a quarter of the resolution."""
    size = image.shape[0]
    small = size // 4
    colours = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA).astype(np.float32)
    weight = cv2.resize(known.astype(np.float32), (small, small), interpolation=cv2.INTER_AREA)
    filled = np.zeros_like(colours)
    done = np.zeros((small, small), np.float32)
    for sigma in (small / 64, small / 32, small / 16, small / 8, small / 4, small / 2):
        w = cv2.GaussianBlur(weight, (0, 0), sigma)
        c = cv2.GaussianBlur(colours * weight[..., None], (0, 0), sigma) / np.maximum(w, 1e-6)[..., None]
        take = np.clip(w / 0.2, 0, 1) * (1 - done)  # a blur counts where a fifth of its neighbourhood is known
        filled += take[..., None] * c
        done += take
    filled /= np.maximum(done, 1e-6)[..., None]
    return cv2.resize(np.clip(filled, 0, 255), (size, size), interpolation=cv2.INTER_LINEAR)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(affine)


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a 2D similarity to (N, 3) points; z is scaled by the same factor as x, y."""
    out = points.astype(np.float32).copy()
    out[:, :2] = points[:, :2] @ affine[:, :2].T + affine[:, 2]
    out[:, 2] = points[:, 2] * np.sqrt(abs(np.linalg.det(affine[:, :2])))
    return out
