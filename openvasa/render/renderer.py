"""The portrait renderer: warp + eye layer + mouth layer, built once per portrait."""

import cv2
import numpy as np

from openvasa.face import landmarks as lm
from openvasa.face.detect import FaceCrop
from openvasa.face.geometry import fit_similarity
from openvasa.render.eyes import EyeLayer
from openvasa.render.mouth import MouthLayer
from openvasa.render.warp import MeshWarper

MIN_ZOOM_CHANGE = 0.005  # below this the camera zoom is skipped (saves a resample)


class PortraitRenderer:
    """Renders the source portrait with any target landmarks. crop: the framed portrait and its landmarks."""

    def __init__(self, crop: FaceCrop) -> None:
        self.crop = crop
        self.eyes = EyeLayer(crop.image, crop.landmarks)
        self.mouth = MouthLayer(crop.image, crop.landmarks)
        self.warper = MeshWarper(crop.landmarks, crop.image.shape[0])
        self._rigid_source = crop.landmarks[list(lm.RIGID)].astype(np.float64)

    def render(self, target_landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) target landmarks in frame pixels -> (S, S, 3) uint8 RGB frame.

        A change of head size is rendered as the camera moving (the whole frame zooms about the head), so
        a farther head comes with smaller shoulders rather than a shrunken head on the same body."""
        zoom, centre = self._zoom(target_landmarks)
        unzoomed = target_landmarks.astype(np.float64).copy()
        if zoom is not None:
            unzoomed[:, :2] = (unzoomed[:, :2] - centre) / zoom + centre
            unzoomed[:, 2] /= zoom
        frame = self.warper.warp(self.eyes.plate, unzoomed)
        self.eyes.composite(frame, unzoomed)
        self.mouth.composite(frame, unzoomed)
        if zoom is None:
            return frame
        # Zoom the portrait's wider context with the rendered frame pasted in its middle: zooming out
        # then shows more of the picture instead of stretched edges.
        margin = (self.crop.context.shape[0] - frame.shape[0]) // 2
        canvas = self.crop.context.copy()
        canvas[margin:-margin, margin:-margin] = frame
        offset = (1 - zoom) * centre - zoom * margin
        camera = np.array([[zoom, 0, offset[0]], [0, zoom, offset[1]]])
        return cv2.warpAffine(
            canvas, camera, frame.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )

    def _zoom(self, target: np.ndarray) -> tuple[float | None, np.ndarray]:
        """Head scale relative to the portrait's, and the target rigid centroid (2,) to zoom about."""
        rigid = target[list(lm.RIGID)].astype(np.float64)
        scale = fit_similarity(self._rigid_source, rigid)[0]
        centre = rigid[:, :2].mean(0)
        return (scale if abs(scale - 1) > MIN_ZOOM_CHANGE else None), centre
