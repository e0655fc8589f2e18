"""Tests for openvasa.io.media: decoding, atomic encoding and clear errors, on files generated in tmp_path."""

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from openvasa.errors import OpenVasaError
from openvasa.io.media import (
    AAC_FRAME_SIZE,
    MAX_IMAGE_SIDE,
    SAMPLE_RATE,
    iter_video_frames,
    load_audio,
    load_image,
    probe_duration,
    read_video,
    video_fps,
    write_video,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_CLIP = SHARED_DATA / "videos" / "vretalk_face2.mp4"
# load_audio promises the right length to within one 10 ms frame.
LENGTH_TOLERANCE = SAMPLE_RATE // 100


def sine(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def gray_frames(n: int, size: int = 512) -> list[np.ndarray]:
    return [np.full((size, size, 3), 4 * i, np.uint8) for i in range(n)]


def padded_seconds(n_samples: int) -> float:
    """Duration that an AAC decoder reports: the encoded length rounded up to whole 1024-sample frames."""
    return -(-n_samples // AAC_FRAME_SIZE) * AAC_FRAME_SIZE / SAMPLE_RATE


def test_write_video_round_trip(tmp_path: Path) -> None:
    audio = sine(2.0, SAMPLE_RATE)
    path = write_video(tmp_path / "out" / "clip.mp4", gray_frames(50), 25, audio, n_frames=50, progress=True)

    assert path == tmp_path / "out" / "clip.mp4"
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.mp4"]
    video_seconds, audio_seconds = probe_duration(path)
    assert video_seconds == 2.0
    assert audio_seconds == pytest.approx(padded_seconds(32000), abs=1e-9)
    assert abs(audio_seconds - video_seconds) < 0.07

    clip = read_video(path)
    assert clip.fps == 25.0
    assert len(clip.frames) == 50
    assert clip.frames[0].shape == (512, 512, 3) and clip.frames[0].dtype == np.uint8
    assert abs(float(clip.frames[30].mean()) - 120) < 3
    assert clip.audio is not None and clip.audio.dtype == np.float32
    assert len(clip.audio) == 32000
    # AAC priming is trimmed by the decoder, so the audio is not shifted.
    assert np.corrcoef(clip.audio[1000:-1000], audio[1000:-1000])[0, 1] > 0.99


@pytest.mark.parametrize("audio_seconds", [0.7, 3.3])
def test_write_video_fits_audio_to_video(tmp_path: Path, audio_seconds: float) -> None:
    path = write_video(tmp_path / "clip.mp4", gray_frames(50, 64), 25, sine(audio_seconds, SAMPLE_RATE))
    video_seconds, decoded_seconds = probe_duration(path)
    assert video_seconds == 2.0
    assert decoded_seconds == pytest.approx(padded_seconds(32000), abs=1e-9)


def test_write_video_without_audio_and_odd_size(tmp_path: Path) -> None:
    frames = [np.zeros((63, 65, 3), np.uint8) for _ in range(30)]
    path = write_video(tmp_path / "clip.mp4", frames, 30000 / 1001, None)
    assert probe_duration(path) == (pytest.approx(30 * 1001 / 30000), None)
    assert video_fps(path) == pytest.approx(30000 / 1001)
    # yuv420p needs even sizes, so one edge row and column are repeated.
    assert next(iter_video_frames(path)).shape == (64, 66, 3)
    assert len(list(iter_video_frames(path, max_frames=7))) == 7
    assert read_video(path).audio is None


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def failing_frames() -> Iterator[np.ndarray]:
        yield from gray_frames(10, 64)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_video(tmp_path / "clip.mp4", failing_frames(), 25, sine(2.0, SAMPLE_RATE))
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_previous_output(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", gray_frames(5, 64), 25, None)
    before = path.read_bytes()

    def failing_frames() -> Iterator[np.ndarray]:
        yield from gray_frames(3, 64)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_video(path, failing_frames(), 25, None)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_write_video_rejects_no_frames(tmp_path: Path) -> None:
    with pytest.raises(OpenVasaError, match="no frames"):
        write_video(tmp_path / "clip.mp4", [], 25, None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("suffix", "rate", "channels"),
    [("wav", 44100, 2), ("flac", 48000, 1), ("ogg", 48000, 1), ("mp3", 48000, 1), ("wav", 8000, 1)],
)
def test_load_audio_resamples(tmp_path: Path, suffix: str, rate: int, channels: int) -> None:
    if suffix.upper() not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {suffix}")
    left = sine(2.0, rate, 300.0, 0.4)
    data = np.stack([left, 0.5 * left], axis=1) if channels == 2 else left
    path = tmp_path / f"speech.{suffix}"
    sf.write(path, data, rate)

    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 2 * SAMPLE_RATE) <= LENGTH_TOLERANCE
    expected_peak = 0.4 * (0.75 if channels == 2 else 1.0)
    assert np.abs(audio).max() == pytest.approx(expected_peak, rel=0.1)


def test_load_audio_from_video_track(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", gray_frames(25, 64), 25, sine(1.0, SAMPLE_RATE))
    audio = load_audio(path, sample_rate=24000)
    assert len(audio) == round(padded_seconds(SAMPLE_RATE) * 24000)


def test_load_audio_errors(tmp_path: Path) -> None:
    cases: dict[str, tuple[Path, dict[str, float]]] = {}

    cases["not found"] = (tmp_path / "missing.wav", {})
    (tmp_path / "empty.wav").touch()
    cases["file is empty"] = (tmp_path / "empty.wav", {})
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(np.random.default_rng(0).bytes(5000))
    cases["corrupt"] = (corrupt, {})
    sf.write(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    cases["audio is silent"] = (tmp_path / "silent.wav", {})
    sf.write(tmp_path / "long.flac", sine(3.0, SAMPLE_RATE), SAMPLE_RATE)
    cases["longer than the 1 s limit"] = (tmp_path / "long.flac", {"max_seconds": 1.0})
    cases["sample rate 10"] = (tmp_path / "long.flac", {"sample_rate": 10})
    write_video(tmp_path / "mute.mp4", gray_frames(5, 64), 25, None)
    cases["no audio stream"] = (tmp_path / "mute.mp4", {})
    cases["not a file"] = (tmp_path, {})

    for message, (path, kwargs) in cases.items():
        with pytest.raises(OpenVasaError, match=message) as caught:
            load_audio(path, **kwargs)
        assert path.name in str(caught.value) or message == "sample rate 10"


def test_read_video_errors(tmp_path: Path) -> None:
    with pytest.raises(OpenVasaError, match="not found: .*missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(1).bytes(4000))
    with pytest.raises(OpenVasaError, match="corrupt.mp4: cannot decode"):
        read_video(corrupt)
    sf.write(tmp_path / "speech.wav", sine(1.0, SAMPLE_RATE), SAMPLE_RATE)
    with pytest.raises(OpenVasaError, match="speech.wav: the file has no video stream"):
        read_video(tmp_path / "speech.wav")


@pytest.mark.skipif(not REAL_CLIP.exists(), reason=f"shared test clip not found at {REAL_CLIP}")
def test_read_real_clip() -> None:
    clip = read_video(REAL_CLIP)
    assert clip.fps == 25.0
    assert len(clip.frames) > 25
    assert clip.audio is not None
    assert len(clip.audio) == round(len(clip.frames) / clip.fps * SAMPLE_RATE)
    video_seconds, audio_seconds = probe_duration(REAL_CLIP)
    assert video_seconds == len(clip.frames) / clip.fps
    assert audio_seconds == pytest.approx(video_seconds, abs=0.07)

    head = read_video(REAL_CLIP, max_frames=10)
    assert len(head.frames) == 10
    assert head.audio is not None and len(head.audio) == round(10 / 25 * SAMPLE_RATE)


def test_load_image(tmp_path: Path) -> None:
    bgra = np.zeros((4, 6, 4), np.uint8)
    bgra[..., 0] = 255  # blue
    bgra[:2, ..., 3] = 255  # top half opaque, bottom half transparent
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    rgb = load_image(tmp_path / "alpha.png")
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 255]
    assert rgb[3, 0].tolist() == [255, 255, 255]

    cv2.imwrite(str(tmp_path / "gray.png"), np.full((5, 7), 90, np.uint8))
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (5, 7, 3) and (gray == 90).all()

    cv2.imwrite(str(tmp_path / "wide.png"), np.zeros((1, MAX_IMAGE_SIDE + 1), np.uint8))
    with pytest.raises(OpenVasaError, match="wide.png: image is too large"):
        load_image(tmp_path / "wide.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(OpenVasaError, match="text.png: not a readable image"):
        load_image(tmp_path / "text.png")
    with pytest.raises(OpenVasaError, match="not found"):
        load_image(tmp_path / "missing.png")


def test_int16_audio_round_trips_exactly():
    """Shards and live sessions share one int16 <-> float conversion: every int16 value comes back unchanged, and
    full-scale float audio clips instead of wrapping around."""
    from openvasa.units import from_pcm16, to_pcm16

    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert (to_pcm16(from_pcm16(pcm)) == pcm).all()
    assert to_pcm16(np.array([1.0, -1.0, 2.0])).tolist() == [32767, -32768, 32767]
