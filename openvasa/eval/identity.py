"""Face-embedding identity similarity with dlib's 128-d ResNet (from the `dlib-bin` and
`face-recognition-models` packages; an optional dependency used by tests and evaluation)."""

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np


@cache
def _models() -> tuple:
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face_recognition_models is not installed")
    models = Path(spec.submodule_search_locations[0]) / "models"
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat")),
    )


def face_embedding(image: np.ndarray) -> np.ndarray | None:
    """(128,) embedding of the largest face in an RGB uint8 image, or None when no face is found."""
    detector, shape_predictor, recogniser = _models()
    boxes = detector(image, 1)
    if not boxes:
        return None
    box = max(boxes, key=lambda r: r.area())
    return np.array(recogniser.compute_face_descriptor(image, shape_predictor(image, box)))


def identity_distance(reference: np.ndarray, frames: list[np.ndarray]) -> float:
    """Mean embedding distance between the reference image's face and each frame's face (inf if lost)."""
    ref = face_embedding(reference)
    if ref is None:
        return float("inf")
    dists = [np.linalg.norm(e - ref) if (e := face_embedding(f)) is not None else np.inf for f in frames]
    return float(np.mean(dists))
