"""Shared fixtures. Real data is read from ../shared/data; tests that need it skip with a reason if absent."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data file {path} is absent (these tests use the development data in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def astronaut_portrait(astronaut: np.ndarray):
    from openvasa.pipeline import prepare_portrait

    return prepare_portrait(astronaut)


@pytest.fixture(scope="session")
def codec():
    from openvasa.face.latent import FaceLatentCodec

    return FaceLatentCodec()


@pytest.fixture(scope="session")
def redetector():
    """A static FaceMesh to re-detect landmarks in rendered frames."""
    from openvasa.face.detect import FaceAnalyzer

    with FaceAnalyzer(static=True) as analyzer:
        yield analyzer


@pytest.fixture(scope="session")
def spoken(tmp_path_factory) -> Path:
    """A spoken sentence (espeak-ng, 22.05 kHz, 3.5 s) or, without espeak-ng, a real speech clip from shared data."""
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    if shutil.which("espeak-ng"):
        sentence = "Hello there, how are you today? I am glad to see you again."
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), sentence], check=True)
        return path
    return shared_file("audio/aaai22_obama2.wav")
