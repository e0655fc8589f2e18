"""The voice-agent adapters, each driven by its library's own local test tools (no service): TTS audio in,
pictures and the same audio out in step, idle frames in silence, interruptions."""

import asyncio

import numpy as np
import pytest

from openvasa.io.media import load_audio
from tests.conftest import shared_file

RATE = 24000


@pytest.fixture(scope="module")
def speech24() -> np.ndarray:
    audio = load_audio(shared_file("videos/mimictalk_German_20s.mp4"), sample_rate=RATE)[: RATE * 2]
    return (audio * 32767).astype(np.int16)


def test_pipecat_processor(astronaut_portrait, speech24: np.ndarray) -> None:
    pytest.importorskip("pipecat")
    from pipecat.frames.frames import InterruptionFrame, OutputAudioRawFrame, OutputImageRawFrame, TTSAudioRawFrame
    from pipecat.tests.utils import SleepFrame, run_test

    from openvasa.stream.pipecat import OpenVasaVideoProcessor

    chunk = RATE // 50  # 20 ms
    tts = [
        TTSAudioRawFrame(audio=speech24[i : i + chunk].tobytes(), sample_rate=RATE, num_channels=1)
        for i in range(0, len(speech24), chunk)
    ]
    processor = OpenVasaVideoProcessor(astronaut_portrait, sample_rate=RATE)
    # The processor builds its session at the StartFrame (the first session in a process also compiles the motion
    # sampler); TTS audio comes a moment later, as in a real pipeline.
    frames = [SleepFrame(sleep=2.0), *tts, SleepFrame(sleep=3.0), InterruptionFrame(), SleepFrame(sleep=1.0)]
    down, _ = asyncio.run(run_test(processor, frames_to_send=frames))
    images = [f for f in down if isinstance(f, OutputImageRawFrame)]
    audio = [f for f in down if isinstance(f, OutputAudioRawFrame) and not isinstance(f, TTSAudioRawFrame)]
    print(f"\n{len(images)} images, {len(audio)} audio frames in about 6 s")
    assert not any(isinstance(f, TTSAudioRawFrame) for f in down), "TTS audio is replaced by the synced audio"
    assert any(isinstance(f, InterruptionFrame) for f in down)
    assert len(images) >= 60 and len(audio) == len(images)
    assert images[0].size == (512, 512) and len(images[0].image) == 512 * 512 * 3
    assert all(len(a.audio) == 2 * RATE // 25 for a in audio)
    played = np.concatenate([np.frombuffer(a.audio, np.int16) for a in audio])
    assert played.std() > 100, "the speech comes out with the pictures"
    assert np.abs(played[-RATE // 2 :]).max() == 0, "after the speech and the interrupt: silence, still frames"


def test_livekit_video_generator(astronaut_portrait, speech24: np.ndarray) -> None:
    pytest.importorskip("livekit.agents")
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd

    from openvasa.stream.livekit import OpenVasaVideoGenerator

    async def run() -> list:
        generator = OpenVasaVideoGenerator(astronaut_portrait, sample_rate=RATE)
        received: list = []

        async def consume() -> None:
            async for item in generator:
                received.append(item)

        consumer = asyncio.create_task(consume())
        chunk = RATE // 50
        for i in range(0, len(speech24), chunk):
            samples = speech24[i : i + chunk]
            await generator.push_audio(rtc.AudioFrame(samples.tobytes(), RATE, 1, len(samples)))
            await asyncio.sleep(0.02)
        await generator.push_audio(AudioSegmentEnd())
        await asyncio.sleep(1.5)  # the end of the segment, then idle frames
        for i in range(0, RATE, chunk):  # a second segment, interrupted half way
            samples = speech24[i : i + chunk]
            await generator.push_audio(rtc.AudioFrame(samples.tobytes(), RATE, 1, len(samples)))
        await generator.push_audio(AudioSegmentEnd())
        await asyncio.sleep(0.2)
        generator.clear_buffer()
        # The session thread may still be working through the second segment when the interrupt is queued.
        for _ in range(100):
            await asyncio.sleep(0.1)
            if sum(isinstance(r, AudioSegmentEnd) for r in received) >= 2:
                break
        consumer.cancel()
        await generator.aclose()
        return received

    received = asyncio.run(run())
    video = [r for r in received if isinstance(r, rtc.VideoFrame)]
    audio = [r for r in received if isinstance(r, rtc.AudioFrame)]
    ends = [i for i, r in enumerate(received) if isinstance(r, AudioSegmentEnd)]
    print(f"\n{len(video)} video frames, {len(audio)} audio frames, segment ends at {ends}")
    assert video[0].width == video[0].height == 512 and len(video) >= 60
    assert len(audio) == len(video) and audio[0].samples_per_channel == RATE // 25
    assert len(ends) == 2, "each segment's end is signalled, the interrupted one at once"
    first_segment = np.concatenate(
        [np.frombuffer(a.data, np.int16) for a in received[: ends[0]] if isinstance(a, rtc.AudioFrame)]
    )
    assert len(first_segment) >= len(speech24) and first_segment.std() > 100
