"""Motion checkpoints: what one holds (MotionCheckpoint), where they are, and what one says of itself without torch.

Importing torch takes about a second of Python work. Reading a checkpoint's settings first (its audio front-end,
its context) lets a caller start the audio features, which leave Python's lock, while torch is imported.
"""

import io
import pickle
import zipfile
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path

import numpy as np

from openvasa.audio.frontends import get_frontend, silence_features
from openvasa.errors import OpenVasaError
from openvasa.io.media import write_atomic
from openvasa.units import FPS

CHECKPOINT_FILE = "motion_dit.pt"
CHECKPOINT_VERSION = 1  # the layout below; a checkpoint without a version predates versions and is of version 1


@dataclass
class MotionCheckpoint:
    """A trained motion model as it is saved. Loading builds nothing but tensors and plain data (torch's
    `weights_only`), so a checkpoint cannot run code; one of another version is refused with a clear error."""

    dit: dict  # openvasa.motion.dit.DiTConfig's fields
    train: dict  # openvasa.tools.train_motion.TrainConfig's fields: the audio front-end, noise schedule, ...
    stats: dict  # openvasa.motion.signals.MotionStats.to_dict()
    state_dict: dict  # the weights (fp16 when shipped)
    mouth_readout: list[float]  # dynamics -> mouth opening, for the training's lip loss and validation
    step: int
    # openvasa.motion.blinks.BlinkCalibration.to_dict(), fitted by openvasa.tools.calibrate. A checkpoint of the
    # first calibration (`eye_calibration`, depth quantiles) loads without it, uncalibrated: recalibrate it.
    blink_calibration: dict | None = None
    # openvasa.motion.head.HeadCalibration.to_dict(), fitted by openvasa.tools.calibrate; None: the head's range as
    # sampled.
    head_calibration: dict | None = None
    # openvasa.motion.mouth_regression.MouthRegression.to_dict(), fitted by openvasa.tools.calibrate (a causal one for
    # the live models); None: the mouth as sampled.
    mouth_regression: dict | None = None
    version: int = CHECKPOINT_VERSION

    def save(self, path: str | Path) -> None:
        """Write atomically: a reader never sees half a checkpoint."""
        import torch

        buffer = io.BytesIO()
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, buffer)
        write_atomic(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path | None = None) -> "MotionCheckpoint":
        """The checkpoint at `path` (the shipped one by default)."""
        import torch

        path = checkpoint_path(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (torch raises many kinds for a file that is not a checkpoint)
            raise OpenVasaError(f"{path} is not a motion checkpoint: {e}") from e
        if not isinstance(payload, dict):
            raise OpenVasaError(f"{path} is not a motion checkpoint: it holds a {type(payload).__name__}")
        version = payload.get("version", 1)
        if version != CHECKPOINT_VERSION:
            raise OpenVasaError(
                f"{path} is a version {version} motion checkpoint; this openvasa reads version {CHECKPOINT_VERSION}"
            )
        if missing := {f.name for f in fields(cls) if f.default is MISSING} - payload.keys():
            raise OpenVasaError(f"{path} is not a motion checkpoint: {', '.join(sorted(missing))} missing")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in known})


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
    except Exception as e:  # noqa: BLE001 (a damaged zip or pickle raises many kinds: found by tests/test_fuzz.py)
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
