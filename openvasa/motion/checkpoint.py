"""Where motion checkpoints are, and what one says of itself without torch.

Importing torch takes about a second of Python work. Reading a checkpoint's settings first (its audio front-end,
its context) lets a caller start the audio features, which leave Python's lock, while torch is imported.
"""

import io
import pickle
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from openvasa.audio.frontends import get_frontend, silence_features
from openvasa.errors import OpenVasaError
from openvasa.units import FPS

CHECKPOINT_FILE = "motion_dit.pt"


def checkpoint_path(checkpoint: str | Path | None = None) -> Path:
    """The given checkpoint, or the shipped one; an error when it does not exist."""
    path = Path(checkpoint) if checkpoint else Path(str(resources.files("openvasa") / "assets" / CHECKPOINT_FILE))
    if not path.exists():
        raise OpenVasaError(f"motion checkpoint {path} not found (train one with `openvasa train-motion`)")
    return path


def checkpoint_settings(path: Path) -> dict:
    """A checkpoint's payload (as torch.save wrote it) with every tensor replaced by None."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next(name for name in archive.namelist() if name.endswith("/data.pkl"))
            return _WithoutTensors(io.BytesIO(archive.read(pickled))).load()
    except (OSError, StopIteration, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise OpenVasaError(f"{path} is not a motion checkpoint: {e}") from e


def model_features(frontend: str, context: int, audio: np.ndarray) -> np.ndarray:
    """(T, A) features of 16 kHz audio for a model of this front-end, at its frame rate; also the (cached)
    features of silence that its first window's `context` frames need."""
    silence_features(frontend, context, FPS)
    return get_frontend(frontend).features(audio, FPS)


def checkpoint_features(path: Path, audio: np.ndarray) -> np.ndarray:
    """MotionGenerator(path).audio_features(audio), without torch."""
    saved = checkpoint_settings(path)
    return model_features(saved["train"]["frontend"], saved["dit"]["context"], audio)


class _WithoutTensors(pickle.Unpickler):
    """Unpickles torch.save's data.pkl, building nothing of torch's: tensors and their storages become None."""

    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "torch":
            return _nothing
        return super().find_class(module, name)

    def persistent_load(self, pid):  # the storages, kept beside data.pkl in the archive
        return None


def _nothing(*args, **kwargs) -> None:
    return None
