"""The streaming core: chunking never changes the output, frames carry their audio, a session replays as
offline generation, interruptions and silence keep the face alive, bad input gets a clear error."""

import threading

import numpy as np
import pytest

from openvasa.audio.frontends import get_frontend
from openvasa.audio.streaming import SAMPLES_PER_FRAME, STREAM_LOOKAHEAD
from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm
from openvasa.io.media import load_audio
from openvasa.motion.generator import MotionGenerator
from openvasa.pipeline import generate
from openvasa.provenance.watermark import detect
from openvasa.stream.realtime import LiveSession, ManualClock
from openvasa.stream.session import TalkingSession, stream_checkpoint, stream_settings
from tests.conftest import shared_file

SPEECH = "videos/mimictalk_German_20s.mp4"


@pytest.fixture(scope="module")
def speech16() -> np.ndarray:
    return load_audio(shared_file(SPEECH))[: 3 * 16000]


def _chunks(audio: np.ndarray, size: int):
    for i in range(0, len(audio), size):
        yield audio[i : i + size]


def test_stream_features_do_not_depend_on_chunk_size(speech16: np.ndarray) -> None:
    frontend = get_frontend("whisper-tiny-stream+energy-stream")
    offline = frontend.features(speech16, 25.0)
    assert offline.shape == (75, 388)
    for size in (7, 320, 4999):
        stream = frontend.stream()
        rows = [stream.push(chunk) for chunk in _chunks(speech16, size)] + [stream.finish()]
        np.testing.assert_array_equal(np.concatenate(rows), offline)


def test_session_frames_carry_their_audio(astronaut_portrait, speech16: np.ndarray) -> None:
    import soxr

    audio24 = soxr.resample(speech16, 16000, 24000).astype(np.float32)
    pcm = (audio24 * 32767).astype(np.int16)
    session = TalkingSession(astronaut_portrait, output_rate=24000)
    frames = []
    for chunk in _chunks(pcm, 480):  # 20 ms chunks of int16 at 24 kHz
        session.push_audio(chunk, 24000)
        frames += list(session.frames())
    assert len(frames) < 75, "frames must wait for their audio and look-ahead"
    session.finish()
    frames += list(session.frames())
    assert [f.index for f in frames] == list(range(75))
    assert all(f.image.shape == (512, 512, 3) and len(f.audio) == 960 for f in frames)
    played = np.concatenate([f.audio for f in frames])
    np.testing.assert_array_equal(played[: len(pcm)], pcm / np.float32(32768))
    assert all(f.speech for f in frames[:70])


def test_session_replays_as_offline_generation(astronaut_portrait, speech16: np.ndarray) -> None:
    """The same frames live and offline (each video's random watermark left out to compare them); with it, the live
    frames say they were generated."""
    frames = {}
    for watermark in (False, True):
        session = TalkingSession(astronaut_portrait, seed=3, watermark=watermark)
        for chunk in _chunks(speech16, 1234):
            session.push_audio(chunk, 16000)
        session.finish()
        frames[watermark] = [f.image for f in session.frames()]
    offline = generate(
        astronaut_portrait,
        speech16,
        seed=3,
        settings=stream_settings(),
        checkpoint=stream_checkpoint(),
        watermark=False,
        lip_closures=False,  # live sessions cannot read the words ahead
    )
    live = frames[False]
    assert len(live) == len(offline) == 75
    for i in (0, 10, 40, 74):
        np.testing.assert_array_equal(live[i], offline[i])
    assert not detect(live).found
    marked = detect(frames[True])
    assert marked.found and marked.payload == session.watermark.payload


def test_interrupt_returns_to_rest_and_idle_stays_alive(astronaut_portrait, speech16, redetector) -> None:
    session = TalkingSession(astronaut_portrait)
    session.push_audio(speech16, 16000)
    spoken = list(session.frames())
    assert len(spoken) > 30 and session.pending_seconds > 0
    session.interrupt()
    assert session.pending_seconds == 0 and not list(session.frames())
    session.idle(3.0)
    idle = list(session.frames())
    assert len(idle) >= 65 and not any(f.speech for f in idle)
    assert idle[0].index == spoken[-1].index + 1

    def opening(image: np.ndarray) -> float:
        return float(lm.mouth_opening(redetector.landmarks(image)[None])[0])

    talking = [opening(f.image) for f in spoken[10:40:2]]
    settled = [opening(f.image) for f in idle[2:60:4]]
    print(f"\nmouth opening: talking {np.round(talking, 3)}, after interrupt {np.round(settled, 3)}")
    # The lips come to rest (closed: the portrait's smile is opened and closed by speech) and stay there.
    assert np.mean(settled) < np.mean(talking) and max(settled) < max(talking)
    assert np.std(settled) < 0.4 * np.std(talking), "listening lips move far less than talking ones"
    moving = [np.abs(idle[i].image.astype(int) - idle[i + 10].image).mean() for i in range(0, 50, 10)]
    assert min(moving) > 0.05, "an idle face still moves (head, blinks)"


def test_bad_input_is_refused(astronaut_portrait) -> None:
    session = TalkingSession(astronaut_portrait)
    with pytest.raises(OpenVasaError, match="sample rate"):
        session.push_audio(np.zeros(100, np.int16), 11025)
    with pytest.raises(OpenVasaError, match="mono"):
        session.push_audio(np.zeros((100, 2), np.float32), 16000)
    with pytest.raises(OpenVasaError, match="NaN"):
        session.push_audio(np.full(100, np.nan, np.float32), 16000)
    with pytest.raises(OpenVasaError, match="int16 or float"):
        session.push_audio(np.zeros(100, np.int32), 16000)
    with pytest.raises(OpenVasaError, match="waiting for frames"):
        session.push_audio(np.zeros(31 * 16000, np.float32), 16000)


def _drive_live(live: LiveSession, clock: ManualClock, chunks: list[np.ndarray], seconds: float) -> None:
    """A client in real time, on a manual clock: each 20 ms chunk is pushed once the clock reaches its send
    time; each turn of the session's loop takes 20 ms of clock (plus whatever drawing costs, in on_frame)."""
    sent = 0
    while clock() < seconds:
        while sent < len(chunks) and sent * 0.02 <= clock():
            live.push_audio(chunks[sent], 16000)
            sent += 1
        live.step()
        clock.advance(0.02)


def test_live_session_keeps_time_without_audio(astronaut_portrait, speech16: np.ndarray) -> None:
    frames = []
    clock = ManualClock()
    live = LiveSession(TalkingSession(astronaut_portrait), frames.append, clock=clock)
    _drive_live(live, clock, list(_chunks(speech16[:16000], 320)), seconds=2.0)  # 1 s of speech, 1 s of nothing
    stats = live.stats.summary()
    print(f"\n{stats}")
    assert live.error is None
    assert [f.index for f in frames] == list(range(len(frames)))
    assert 40 <= len(frames) <= 50, "25 fps of clock time, less the look-ahead"
    assert sum(f.speech for f in frames) == 25 and not any(f.speech for f in frames[25:])
    assert stats["latency_p50_ms"] > 0


def test_a_slow_machine_skips_pictures_never_audio(astronaut_portrait, speech16: np.ndarray) -> None:
    """Drawing at a quarter of real time (160 ms of clock a picture): chunks queue up while pictures are drawn,
    and still the audio that comes back is the audio pushed, sample for sample, with no silence put into it;
    pictures too late to be live are skipped (counted), so latency stays bounded instead of growing."""
    session = TalkingSession(astronaut_portrait)
    clock = ManualClock()
    draw = session.render

    def slow_render(frame, points) -> None:
        draw(frame, points)
        clock.advance(0.16)

    session.render = slow_render
    frames = []
    live = LiveSession(session, frames.append, clock=clock)
    pcm = (speech16[:48000] * 32767).astype(np.int16)
    _drive_live(live, clock, list(_chunks(pcm, 320)), seconds=5.0)
    played = np.concatenate([f.audio for f in frames])
    assert len(played) > len(pcm)
    np.testing.assert_array_equal(played[: len(pcm)], pcm / np.float32(32768))
    assert all(f.speech for f in frames[:70])
    stats = live.stats.summary()
    skipped = [f.skipped for f in frames]
    print(f"\n{stats}")
    assert stats["skipped_pictures"] == sum(skipped) > len(frames) / 2, "most pictures are skipped"
    assert not skipped[0] and not all(skipped[-25:]), "pictures keep coming, fewer of them"
    assert all(f.image is frames[i - 1].image for i, f in enumerate(frames) if f.skipped), "the last picture again"
    assert stats["latency_p95_ms"] <= 400, "latency stays bounded"


def test_live_session_thread_follows_its_clock(astronaut_portrait, speech16: np.ndarray) -> None:
    """The session's own thread, on a manual clock: speech pushed at once makes its frames, then advancing the
    clock by 1 s makes (about) 25 frames of listening; waits are on events, not on the wall clock."""
    clock = ManualClock()
    frames: list = []
    counted = threading.Condition()

    def on_frame(frame) -> None:
        with counted:
            frames.append(frame)
            counted.notify_all()

    def wait_for(n: int) -> None:
        with counted:
            assert counted.wait_for(lambda: len(frames) >= n, timeout=120), f"{len(frames)} frames, wanted {n}"

    live = LiveSession(TalkingSession(astronaut_portrait), on_frame, clock=clock).start()
    try:
        live.push_audio(speech16[:16000], 16000)
        block = live.session.block
        wait_for((25 - STREAM_LOOKAHEAD) // block * block)  # 1 s of speech, less the look-ahead and a part block
        clock.advance(2.0)  # no more audio: the session fills 2 s of silence, the speech's last frames included
        wait_for(45)
    finally:
        live.close()
    assert live.error is None
    assert [f.index for f in frames] == list(range(len(frames)))
    assert sum(f.speech for f in frames) == 25


@pytest.mark.parametrize(
    "low_latency, block, frontend",
    [(False, 4, "whisper-tiny-stream+energy-stream"), (True, 1, "whisper-tiny-stream1+energy-stream1")],
)
def test_stream_checkpoints_generate_their_blocks(low_latency: bool, block: int, frontend: str) -> None:
    generator = MotionGenerator(stream_checkpoint(low_latency))
    assert generator.config.window == block and generator.frontend.name == frontend
    assert generator.frontend.stream().block_frames == block


@pytest.mark.parametrize("low_latency", [False, True])
def test_a_frame_waits_only_for_its_block_and_the_look_ahead(astronaut_portrait, speech16, low_latency) -> None:
    """The latency budget: a frame needs at most its block and STREAM_LOOKAHEAD frames of audio (240 ms, or
    120 ms in low-latency sessions)."""
    session = TalkingSession(astronaut_portrait, low_latency=low_latency)
    assert session.block == (1 if low_latency else 4)
    assert (session.block + STREAM_LOOKAHEAD) / 25 <= (0.12 if low_latency else 0.24)
    needed = (session.block + STREAM_LOOKAHEAD) * SAMPLES_PER_FRAME
    session.push_audio(speech16[: needed - 1], 16000)
    assert list(session.frames()) == []
    session.push_audio(speech16[needed - 1 : needed], 16000)
    frames = list(session.frames())
    assert [f.index for f in frames] == list(range(session.block))
    assert all(f.image.shape == (512, 512, 3) for f in frames)
    session.push_audio(speech16[needed : 2 * 16000], 16000)
    assert len(list(session.frames())) == 2 * 25 - STREAM_LOOKAHEAD - session.block


def test_end_of_speech_is_detected_and_the_face_keeps_moving(astronaut_portrait, speech16: np.ndarray) -> None:
    session = TalkingSession(astronaut_portrait)
    silence = np.zeros(2 * 16000, np.float32)
    frames = []
    for chunk in _chunks(np.concatenate([speech16, silence]), 320):  # the client keeps sending: 2 s of silence
        session.push_audio(chunk, 16000)
        frames += list(session.frames())
    events = list(session.events)
    print(f"\nVAD events {events}")
    assert [kind for kind, _ in events] == ["speech_start", "speech_end"]
    assert events[0][1] < 0.6 and 2.6 < events[1][1] < 3.2  # the clip's speech runs to about 3 s
    tail = frames[-25:]  # the last second: silence, listening, not frozen
    assert np.mean([np.abs(a.image.astype(int) - b.image).mean() for a, b in zip(tail, tail[1:], strict=False)]) > 0.02


def test_a_long_session_keeps_time_memory_and_motion(astronaut_portrait, redetector) -> None:
    """40 s of talk with pauses, pushed in 20 ms chunks: every sample comes back with its frame (no drift),
    buffers stay bounded, and the lips move at the end as at the start (re-detected in the frames)."""
    speech = load_audio(shared_file(SPEECH))[: 7 * 16000]
    pause = np.zeros(16000, np.float32)
    audio = np.concatenate([speech, pause] * 5)  # 40 s
    session = TalkingSession(astronaut_portrait)
    frames, peak_buffer = [], 0
    for chunk in _chunks(audio, 320):
        session.push_audio(chunk, 16000)
        frames += list(session.frames())
        peak_buffer = max(peak_buffer, len(session.audio.buffer), len(session.playback))
    session.finish()
    frames += list(session.frames())
    assert [f.index for f in frames] == list(range(40 * 25))
    np.testing.assert_array_equal(np.concatenate([f.audio for f in frames]), audio)
    assert peak_buffer < 2.5 * 16000, "only Whisper's 2 s of context and the look-ahead are kept"

    def openings(first: int) -> np.ndarray:
        return np.array([lm.mouth_opening(redetector.landmarks(frames[i].image)) for i in range(first, first + 150, 2)])

    start, end = openings(25), openings(32 * 25 + 25)  # 6 s of speech in the first and the last round
    print(f"\nmouth opening std: start {start.std():.4f}, end {end.std():.4f}")
    assert end.std() > 0.5 * start.std() and end.std() > 0.01


def test_speech_detectors_side_by_side_keep_their_own_state(speech16: np.ndarray) -> None:
    """Two sessions' detectors share one ONNX model but not its recurrent state: interleaved, each reports what it
    reports alone (they shared the state, so one session's speech ended another's)."""
    from openvasa.stream.vad import SpeechDetector

    silence = np.zeros_like(speech16[: 16000 * 2])
    alone = SpeechDetector().push(speech16[: 16000 * 4])
    speaking, quiet = SpeechDetector(), SpeechDetector()
    events = []
    for i in range(0, 16000 * 4, 1600):
        events += speaking.push(speech16[i : i + 1600])
        quiet.push(np.concatenate([silence, silence])[i : i + 1600])
    assert alone and events == alone
