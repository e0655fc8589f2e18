"""openvasa: talking-face videos from one portrait and speech audio, on a CPU."""

from openvasa.errors import OpenVasaError
from openvasa.motion.controls import EMOTIONS, MotionControls
from openvasa.pipeline import generate, prepare_portrait, reenact

__all__ = ["EMOTIONS", "MotionControls", "OpenVasaError", "generate", "prepare_portrait", "reenact"]
