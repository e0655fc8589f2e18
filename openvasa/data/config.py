"""The settings of a prep run and what decides whether a clip is prepared again: the format version, the
settings and the face basis they were made with."""

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from openvasa.face.latent import (
    FaceBasis,
)
from openvasa.units import FPS

FORMAT_VERSION = 1  # bump when the shard contents change: every clip is then prepared again


@dataclass(frozen=True)
class PrepConfig:
    """Settings of a prep run. All of them enter the config hash that decides whether a clip is redone."""

    fps: float = FPS  # output frame rate
    min_segment_s: float = 2.0  # shorter segments are dropped
    scene_cut_threshold: float = 20.0  # mean abs change of a 32x32 grey thumbnail, grey levels (talking: < 13)
    landmark_jump_threshold: float = 0.3  # median rigid-point move in one frame, eye distances (talking: < 0.1)
    second_face_check_every: int = 25  # native frames between whole-frame face detections
    second_face_area: float = 0.3  # a second face box larger than this fraction of the tracked one cuts
    reframe_after_s: float = 0.5  # lost this long: search the whole frame again and choose a new framing
    pose_smoothing_frames: float = 1.0  # Gaussian sigma, output frames
    dynamics_smoothing_frames: float = 0.0  # the same for eyes, dynamics and mouth opening
    audio_frontends: tuple[str, ...] = ("energy",)


def basis_fingerprint(basis: FaceBasis) -> str:
    """Short hash of the arrays that define the latent: shards encoded with another basis do not mix."""
    digest = hashlib.sha256()
    for array in (basis.mean, basis.eye_basis, basis.eye_mean, basis.dynamics_basis):
        digest.update(np.ascontiguousarray(array, np.float32).tobytes())
    return digest.hexdigest()[:16]


def config_hash(config: PrepConfig, basis: FaceBasis) -> str:
    """What a clip's shards depend on besides its source: this code's format, the settings and the basis."""
    text = json.dumps({"format": FORMAT_VERSION, "config": asdict(config), "basis": basis_fingerprint(basis)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]
