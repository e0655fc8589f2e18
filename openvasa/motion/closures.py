"""Lips brought together where the speech says they meet (openvasa.audio.phonetics), over any motion latent.

The opening is taken out along the fitted opening direction of the expression code (the baseline's, one eye
distance of inner-lip gap per unit), with a raised-cosine weight around each closure so the lips come together
and part over a few frames as in a real /p/ (the closure lasts 60-120 ms) instead of snapping shut.
"""

import numpy as np

from openvasa.face.latent import FaceBasis, FaceLatent, mouth_opening
from openvasa.motion.baseline import MouthModel

HALF_WIDTH = 2  # frames each side of a closure frame over which its weight falls from 1 to 0
# Inner-lip gap (eye distances) of lips that meet: real closures on the validation clips measure 0.001-0.005.
SHUT = 0.004


def close_lips(latent: FaceLatent, closures: np.ndarray, neutral: np.ndarray, basis: FaceBasis) -> FaceLatent:
    """The latent (T frames) with the lips shut at the closure frames (N,) and eased around them; neutral: (478, 3)
    the person's neutral shape. A mouth already shut there is left as it is."""
    if not len(closures) or not len(latent):
        return latent
    frames = np.arange(len(latent))
    distance = np.abs(frames[:, None] - closures[None, :]).min(1)  # (T,) frames to the nearest closure
    weight = np.where(distance <= HALF_WIDTH, 0.5 * (1 + np.cos(np.pi * distance / (HALF_WIDTH + 1))), 0.0)
    opening = mouth_opening(latent, neutral, basis)  # (T,)
    goal = opening - weight * np.maximum(opening - SHUT, 0.0)
    opening_dir = MouthModel.load().open_dir
    out = latent
    # The opening is not quite linear in the code (a wide mouth came to 0.015, not 0.004, in one step): a second
    # step from where the first landed.
    for _ in range(2):
        excess = np.maximum(mouth_opening(out, neutral, basis) - goal, 0.0)
        out = FaceLatent(out.pose, out.eyes, out.dynamics - excess[:, None] * opening_dir)
    return out
