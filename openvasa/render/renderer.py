"""The portrait renderer: warp + eye layer + mouth layer, built once per portrait."""

import numpy as np

from openvasa.face.detect import FaceCrop
from openvasa.render.eyes import EyeLayer
from openvasa.render.mouth import MouthLayer
from openvasa.render.warp import MeshWarper


class PortraitRenderer:
    """Renders the source portrait with any target landmarks. crop: the framed portrait and its landmarks."""

    def __init__(self, crop: FaceCrop) -> None:
        self.crop = crop
        self.eyes = EyeLayer(crop.image, crop.landmarks)
        self.mouth = MouthLayer(crop.image, crop.landmarks)
        self.warper = MeshWarper(crop.landmarks, crop.image.shape[0])

    def render(self, target_landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) target landmarks in frame pixels -> (S, S, 3) uint8 RGB frame."""
        frame = self.warper.warp(self.eyes.plate, target_landmarks)
        self.eyes.composite(frame, target_landmarks)
        self.mouth.composite(frame, target_landmarks)
        return frame
