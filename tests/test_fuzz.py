"""Hostile input, fuzzed (hypothesis): every loader gives a result or a clear OpenVasaError, never another exception;
the live protocol answers random and malformed messages with a close code and a reason, never a traceback, and the
server lives on. The quick runs are in the default suite; `-m slow` runs each with 1,000 cases."""

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openvasa.errors import OpenVasaError
from openvasa.io.media import decode_image, load_audio, read_video, write_video
from openvasa.motion.checkpoint import MotionCheckpoint, checkpoint_settings
from openvasa.stream.realtime import ManualClock
from openvasa.stream.server import create_app
from openvasa.stream.state import ServerLimits

QUICK, LONG = 80, 1000
RUNS = [pytest.param(QUICK, id="quick"), pytest.param(LONG, id="long", marks=pytest.mark.slow)]
CLOSE_CODES = {1000, 1007, 1008, 1009, 1013}


def run(examples: int, strategy: st.SearchStrategy, check: Callable) -> None:
    """check(example) for `examples` cases, the same cases on every machine and run."""
    options = settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    options(given(strategy)(check))()


def mutated(originals: list[bytes]) -> st.SearchStrategy[bytes]:
    """Valid files with bytes overwritten, cut short or grown: what a broken upload or a malicious one looks like;
    plus bytes at random."""

    def mutate(original: bytes, flips: list[tuple[int, int]], keep: float) -> bytes:
        data = bytearray(original[: max(1, int(len(original) * keep))])
        for position, value in flips:
            data[position % len(data)] = value
        return bytes(data)

    edits = st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=12)
    cut = st.one_of(st.just(1.0), st.floats(0.0, 1.0))
    return st.one_of(st.builds(mutate, st.sampled_from(originals), edits, cut), st.binary(max_size=4096))


def accepts_or_refuses(load: Callable, data: bytes, check: Callable) -> None:
    """load(data) gives something check() accepts, or raises OpenVasaError; anything else fails the test."""
    try:
        result = load(data)
    except OpenVasaError as e:
        assert str(e), "an error says what is wrong"
        return
    check(result)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, list[bytes]]:
    import skimage.data

    folder = tmp_path_factory.mktemp("fuzz")
    image = cv2.resize(skimage.data.astronaut(), (48, 48))
    t = np.arange(8000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    video = write_video(folder / "v.mp4", [image[:, :, ::-1].copy()] * 3, 25.0, tone)
    import soundfile as sf

    sf.write(folder / "a.wav", tone, 16000)
    sf.write(folder / "a.flac", tone, 16000)
    return {
        "image": [cv2.imencode(ext, image)[1].tobytes() for ext in (".png", ".jpg", ".webp", ".bmp", ".tiff")],
        "audio": [(folder / "a.wav").read_bytes(), (folder / "a.flac").read_bytes(), video.read_bytes()],
        "video": [video.read_bytes()],
        "checkpoint": [(Path(__file__).resolve().parents[1] / "openvasa" / "assets" / "sync_judge.pt").read_bytes()],
    }


def as_file(folder: Path, name: str, load: Callable) -> Callable[[bytes], object]:
    def load_file(data: bytes) -> object:
        path = folder / name
        path.write_bytes(data)
        return load(path)

    return load_file


@pytest.mark.parametrize("examples", RUNS)
def test_image_decoder(examples: int, samples) -> None:
    def check(data: bytes) -> None:
        accepts_or_refuses(decode_image, data, lambda rgb: rgb.dtype == np.uint8 and rgb.ndim == 3 or pytest.fail())

    run(examples, mutated(samples["image"]), check)


@pytest.mark.parametrize("examples", RUNS)
def test_audio_loader(examples: int, samples, tmp_path: Path) -> None:
    def ok(audio: np.ndarray) -> None:
        assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()

    load = as_file(tmp_path, "audio.bin", load_audio)
    run(examples, mutated(samples["audio"]), lambda data: accepts_or_refuses(load, data, ok))
    assert [p.name for p in tmp_path.iterdir()] == ["audio.bin"]  # nothing written beside it


@pytest.mark.parametrize("examples", RUNS)
def test_video_reader(examples: int, samples, tmp_path: Path) -> None:
    def ok(clip) -> None:
        assert clip.frames and all(f.ndim == 3 for f in clip.frames) and 0 < clip.fps <= 1000

    load = as_file(tmp_path, "video.mp4", lambda path: read_video(path, max_frames=10))
    run(examples, mutated(samples["video"]), lambda data: accepts_or_refuses(load, data, ok))


@pytest.mark.parametrize("examples", RUNS)
def test_checkpoint_loader(examples: int, samples, tmp_path: Path) -> None:
    def load(path: Path) -> None:
        checkpoint_settings(path)
        MotionCheckpoint.load(path)

    loader = as_file(tmp_path, "model.pt", load)
    run(examples, mutated(samples["checkpoint"]), lambda data: accepts_or_refuses(loader, data, lambda _: None))


# The live protocol: a start message (valid or not), then messages of every kind.
texts = st.one_of(
    st.text(max_size=200),
    st.builds(json.dumps, st.dictionaries(st.sampled_from(["type", "sample_rate", "x"]), st.one_of(
        st.sampled_from(["start", "stop", "interrupt", "", "frame"]), st.integers(-5, 10**6), st.none(),
        st.lists(st.integers(), max_size=3)), max_size=3)),
    st.builds(json.dumps, st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.none())),
)  # fmt: skip
audio_chunks = st.one_of(
    st.binary(max_size=3000),  # odd lengths are malformed PCM
    st.integers(0, 1600).map(lambda n: np.random.default_rng(n).integers(-3000, 3000, n).astype("<i2").tobytes()),
)
messages = st.lists(st.one_of(texts.map(lambda t: ("text", t)), audio_chunks.map(lambda b: ("bytes", b))), max_size=8)
valid_start = st.sampled_from([16000, 48000, 8000]).map(
    lambda r: ("text", json.dumps({"type": "start", "sample_rate": r}))
)
invalid_start = st.one_of(texts.map(lambda t: ("text", t)), audio_chunks.map(lambda b: ("bytes", b)))
starts = st.integers(0, 9).flatmap(lambda k: valid_start if k < 7 else invalid_start)  # mostly sessions that start
queries = st.sampled_from(["", "", "", "?emotion=happy", "?latency=low", "?gaze=500,x", "?distance=-1", "?seed=abc"])


@pytest.fixture(scope="module")
def live_server():
    limits = ServerLimits(max_message_bytes=2500, max_audio_ahead_s=0.5, idle_timeout_s=5.0)
    with TestClient(create_app(max_sessions=1, clock=ManualClock(), limits=limits)) as client:
        yield client


@pytest.mark.parametrize(
    "examples", [pytest.param(60, id="quick"), pytest.param(LONG, id="long", marks=pytest.mark.slow)]
)
def test_live_protocol(examples: int, live_server: TestClient) -> None:
    def session(query: str, first: tuple[str, object], rest: list[tuple[str, object]]) -> None:
        with live_server.websocket_connect(f"/ws/astronaut{query}") as ws:
            closed = None
            for kind, payload in [first, *rest, ("text", json.dumps({"type": "stop"}))]:
                try:
                    ws.send_text(payload) if kind == "text" else ws.send_bytes(payload)
                except Exception:  # noqa: BLE001 (the server has closed; its close message says why)
                    break
            while closed is None:
                message = ws.receive()
                if message["type"] == "websocket.close":
                    closed = message
                elif message.get("text") is not None:
                    assert "Traceback" not in message["text"]
            assert closed["code"] in CLOSE_CODES, closed
            assert "Traceback" not in (closed.get("reason") or "")
        assert live_server.get("/api/health").json()["sessions"] == 0

    run(examples, st.tuples(queries, starts, messages), lambda case: session(*case))
