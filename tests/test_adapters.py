"""The voice-agent adapters, each driven by its library's own local test tools (no service): TTS audio in,
pictures and the same audio out in step, idle frames in silence, interruptions."""

import asyncio

import numpy as np
import pytest

from openvasa.io.media import load_audio
from openvasa.provenance.watermark import detect
from openvasa.stream.realtime import ManualClock
from tests.conftest import shared_file

RATE = 24000


@pytest.fixture(scope="module")
def speech24() -> np.ndarray:
    audio = load_audio(shared_file("videos/mimictalk_German_20s.mp4"), sample_rate=RATE)[: RATE * 2]
    return (audio * 32767).astype(np.int16)


def test_pipecat_processor(astronaut_portrait, speech24: np.ndarray) -> None:
    pytest.importorskip("pipecat")
    from pipecat.frames.frames import (
        EndFrame,
        InterruptionFrame,
        OutputAudioRawFrame,
        OutputImageRawFrame,
        StartFrame,
        TTSAudioRawFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from openvasa.stream.pipecat import OpenVasaVideoProcessor

    class Sink(FrameProcessor):
        """The end of the pipeline: keeps what reaches it."""

        def __init__(self) -> None:
            super().__init__()
            self.frames: list = []

        async def process_frame(self, frame, direction) -> None:
            await super().process_frame(frame, direction)
            if not isinstance(frame, StartFrame):
                self.frames.append(frame)
            await self.push_frame(frame, direction)

    chunk = RATE // 50  # 20 ms
    clock = ManualClock()  # the session's time moves only when the test says so
    processor = OpenVasaVideoProcessor(astronaut_portrait, sample_rate=RATE, clock=clock)
    sink = Sink()
    worker = PipelineWorker(Pipeline([processor, sink]), cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker, frame) -> None:
        started.set()

    def images() -> int:
        return sum(isinstance(f, OutputImageRawFrame) for f in sink.frames)

    async def drive() -> None:
        await asyncio.wait_for(started.wait(), timeout=120)
        await _until(lambda: processor.live is not None, "the session")  # built after the StartFrame
        for i in range(0, len(speech24), chunk):  # 2 s of TTS, delivered faster than real time as TTS often is
            await worker.queue_frame(
                TTSAudioRawFrame(audio=speech24[i : i + chunk].tobytes(), sample_rate=RATE, num_channels=1)
            )
        await _until(lambda: images() >= 44, "the speech's frames")  # 50 less the look-ahead, with no clock
        clock.advance(3.0)  # 1 s more than the speech: its last frames, then listening
        await _until(lambda: images() >= 72, "the listening frames")
        await worker.queue_frame(InterruptionFrame())
        clock.advance(1.0)
        await _until(lambda: images() >= 95, "the frames after the interrupt")
        await worker.queue_frame(EndFrame())

    async def run() -> None:
        runner = WorkerRunner()
        await runner.add_workers(worker)
        await asyncio.gather(runner.run(), drive())

    asyncio.run(run())
    down = sink.frames
    pictures = [f for f in down if isinstance(f, OutputImageRawFrame)]
    audio = [f for f in down if isinstance(f, OutputAudioRawFrame) and not isinstance(f, TTSAudioRawFrame)]
    print(f"\n{len(pictures)} images, {len(audio)} audio frames")
    assert not any(isinstance(f, TTSAudioRawFrame) for f in down), "TTS audio is replaced by the synced audio"
    assert any(isinstance(f, InterruptionFrame) for f in down)
    assert len(pictures) >= 95 and len(audio) == len(pictures)
    assert pictures[0].size == (512, 512) and len(pictures[0].image) == 512 * 512 * 3
    assert detect(np.frombuffer(p.image, np.uint8).reshape(512, 512, 3) for p in pictures[:50]).found
    assert all(len(a.audio) == 2 * RATE // 25 for a in audio)
    played = np.concatenate([np.frombuffer(a.audio, np.int16) for a in audio])
    np.testing.assert_array_equal(played[: len(speech24)], speech24)  # the speech comes out with the pictures
    assert np.abs(played[-RATE // 2 :]).max() == 0, "after the speech and the interrupt: silence, still frames"


async def _until(condition, what: str, timeout_s: float = 120.0) -> None:
    """Wait for the session thread (on an event loop): generous, since slow machines only take longer."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_livekit_video_generator(astronaut_portrait, speech24: np.ndarray) -> None:
    pytest.importorskip("livekit.agents")
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd

    from openvasa.stream.livekit import OpenVasaVideoGenerator

    clock = ManualClock()  # the session's time moves only when the test says so

    async def run() -> list:
        generator = OpenVasaVideoGenerator(astronaut_portrait, sample_rate=RATE, clock=clock)
        received: list = []

        def ends() -> int:
            return sum(isinstance(r, AudioSegmentEnd) for r in received)

        async def consume() -> None:
            async for item in generator:
                received.append(item)

        consumer = asyncio.create_task(consume())
        chunk = RATE // 50
        for i in range(0, len(speech24), chunk):  # a TTS segment in real time (on the session's clock)
            samples = speech24[i : i + chunk]
            await generator.push_audio(rtc.AudioFrame(samples.tobytes(), RATE, 1, len(samples)))
            clock.advance(0.02)
        await generator.push_audio(AudioSegmentEnd())
        clock.advance(1.0)  # a second with no audio: the segment's last frames, then listening
        await _until(lambda: ends() == 1, "the first segment's end")
        for i in range(0, RATE, chunk):  # a second segment, pushed at once and interrupted before it is shown
            samples = speech24[i : i + chunk]
            await generator.push_audio(rtc.AudioFrame(samples.tobytes(), RATE, 1, len(samples)))
        await generator.push_audio(AudioSegmentEnd())
        generator.clear_buffer()
        await _until(lambda: ends() == 2, "the interrupted segment's end")
        consumer.cancel()
        await generator.aclose()
        return received

    received = asyncio.run(run())
    video = [r for r in received if isinstance(r, rtc.VideoFrame)]
    audio = [r for r in received if isinstance(r, rtc.AudioFrame)]
    ends = [i for i, r in enumerate(received) if isinstance(r, AudioSegmentEnd)]
    print(f"\n{len(video)} video frames, {len(audio)} audio frames, segment ends at {ends}")
    # The first segment's 2 s are 50 frames; how many listening frames follow before the interrupt depends on
    # the machine's speed, so they are not counted.
    assert video[0].width == video[0].height == 512 and len(video) >= len(speech24) * 25 // RATE
    assert detect(np.frombuffer(v.data, np.uint8).reshape(512, 512, 4)[:, :, :3] for v in video[:50]).found
    assert len(audio) == len(video) and audio[0].samples_per_channel == RATE // 25
    assert len(ends) == 2, "each segment's end is signalled, the interrupted one at once"
    first_segment = np.concatenate(
        [np.frombuffer(a.data, np.int16) for a in received[: ends[0]] if isinstance(a, rtc.AudioFrame)]
    )
    assert len(first_segment) >= len(speech24)
    np.testing.assert_array_equal(first_segment[: len(speech24)], speech24)
