"""openvasa: talking-face videos from one portrait and speech audio, on a CPU.

The public names are imported on first use, so that `openvasa --help` and light submodules (errors, controls)
do not pay for torch, OpenCV and MediaPipe.
"""

import importlib
from typing import TYPE_CHECKING

from openvasa.errors import OpenVasaError

if TYPE_CHECKING:
    from openvasa.motion.controls import EMOTIONS, MotionControls
    from openvasa.pipeline import generate, prepare_portrait, reenact

_HOMES = {
    "EMOTIONS": "openvasa.motion.controls",
    "MotionControls": "openvasa.motion.controls",
    "generate": "openvasa.pipeline",
    "prepare_portrait": "openvasa.pipeline",
    "reenact": "openvasa.pipeline",
}

__all__ = ["EMOTIONS", "MotionControls", "OpenVasaError", "generate", "prepare_portrait", "reenact"]


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'openvasa' has no attribute {name!r}")
