"""The portrait renderer: warp + eye layer + lid layer + mouth layer, built once per portrait."""

import numpy as np

from openvasa.face import landmarks as lm
from openvasa.face.detect import FaceCrop
from openvasa.face.geometry import fit_similarity
from openvasa.render.eyes import EyeLayer
from openvasa.render.lids import LidLayer
from openvasa.render.mouth import MouthLayer
from openvasa.render.mouth_atlas import MouthAtlas
from openvasa.render.warp import MeshWarper


class PortraitRenderer:
    """Renders the source portrait with any target landmarks. crop: the framed portrait and its landmarks;
    mouth_atlas: the mouth interior's (default: the shipped one)."""

    def __init__(self, crop: FaceCrop, mouth_atlas: MouthAtlas | None = None) -> None:
        self.crop = crop
        self.eyes = EyeLayer(crop.image, crop.landmarks)
        self.lids = LidLayer(crop.image, crop.landmarks, float(np.linalg.norm(crop.to_crop[:, 0])))
        self.mouth = MouthLayer(crop.image, crop.landmarks, mouth_atlas)
        margin = (crop.context.shape[0] - crop.image.shape[0]) // 2
        self.warper = MeshWarper(crop.landmarks, crop.image.shape[0], margin)
        # What the warp samples: the portrait's wider context with the eye plate (irises removed) in its middle.
        self._source = crop.context.copy()
        self._source[margin : margin + crop.image.shape[0], margin : margin + crop.image.shape[1]] = self.eyes.plate
        self._rigid_source = crop.landmarks[list(lm.RIGID)].astype(np.float64)

    def render(self, target_landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) target landmarks in frame pixels -> (S, S, 3) uint8 RGB frame.

        A change of head size is rendered as the camera moving (the whole frame zooms about the head), so
        a farther head comes with smaller shoulders rather than a shrunken head on the same body; zooming out
        shows more of the portrait's context instead of stretched edges. The zoom is part of the one warp."""
        target = self.lids.lowered(target_landmarks.astype(np.float64))
        zoom, centre = self._zoom(target)
        unzoomed = target.copy()
        unzoomed[:, :2] = (unzoomed[:, :2] - centre) / zoom + centre
        unzoomed[:, 2] /= zoom
        frame = self.warper.warp(self._source, unzoomed, zoom, centre)
        self.eyes.composite(frame, target)
        self.lids.composite(frame, target)
        self.mouth.composite(frame, target)
        return frame

    def _zoom(self, target: np.ndarray) -> tuple[float, np.ndarray]:
        """Head scale relative to the portrait's, and the target rigid centroid (2,) to zoom about."""
        rigid = target[list(lm.RIGID)].astype(np.float64)
        return float(fit_similarity(self._rigid_source, rigid)[0]), rigid[:, :2].mean(0)
