"""A LiveKit Agents avatar video generator (`pip install 'openvasa[livekit]'`).

It follows LiveKit's avatar contract (`livekit.agents.voice.avatar.VideoGenerator`):
- `push_audio` takes the agent's TTS audio frames, then `AudioSegmentEnd`;
- `clear_buffer` interrupts;
- iterating yields video frames and their audio in step, then `AudioSegmentEnd` once a segment has been shown.

In silence it keeps yielding frames of the face listening. Run it in an avatar worker with
`AvatarRunner(room, audio_recv=DataStreamAudioReceiver(room), video_gen=OpenVasaVideoGenerator(portrait),
options=AvatarOptions(512, 512, 25, 24000, 1))`, dispatched by LiveKit Agents like any avatar worker.
"""

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from openvasa.motion.controls import MotionControls
from openvasa.pipeline import Portrait
from openvasa.stream.realtime import Clock, LiveSession
from openvasa.stream.session import StreamFrame, TalkingSession, int16_mono
from openvasa.units import to_pcm16


class OpenVasaVideoGenerator(VideoGenerator):
    def __init__(
        self,
        portrait: Portrait,
        controls: MotionControls | None = None,
        sample_rate: int = 24000,
        seed: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._portrait, self._controls, self._rate, self._seed = portrait, controls, sample_rate, seed
        self._clock = clock  # the live session's (tests pass a ManualClock)
        self._live: LiveSession | None = None
        self._out: asyncio.Queue[StreamFrame | AudioSegmentEnd] | None = None

    def _ensure_started(self) -> LiveSession:
        if self._live is None:
            loop = asyncio.get_running_loop()
            self._out = asyncio.Queue()
            session = TalkingSession(self._portrait, self._controls, self._seed, output_rate=self._rate)

            def put(frame: StreamFrame) -> None:  # on the session thread
                loop.call_soon_threadsafe(self._out.put_nowait, frame)

            self._live = LiveSession(session, put, clock=self._clock).start()
        return self._live

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        live = self._ensure_started()
        if isinstance(frame, AudioSegmentEnd):
            loop = asyncio.get_running_loop()
            live.mark(lambda: loop.call_soon_threadsafe(self._out.put_nowait, AudioSegmentEnd()))
            return
        live.push_audio(int16_mono(frame.data, frame.num_channels), frame.sample_rate)

    def clear_buffer(self) -> None:
        live = self._ensure_started()
        live.interrupt()  # the session signals pending segment ends at once
        drained = [self._out.get_nowait() for _ in range(self._out.qsize())]
        for item in drained:  # frames not yet shown are dropped; segment ends are kept, the runner waits for them
            if isinstance(item, AudioSegmentEnd):
                self._out.put_nowait(item)

    async def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        self._ensure_started()
        while True:
            item = await self._out.get()
            if isinstance(item, AudioSegmentEnd):
                yield item
                continue
            height, width = item.image.shape[:2]
            rgba = np.concatenate([item.image, np.full((height, width, 1), 255, np.uint8)], axis=2)
            yield rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, rgba.tobytes())
            pcm = to_pcm16(item.audio)
            yield rtc.AudioFrame(pcm.tobytes(), self._rate, 1, len(pcm))

    async def aclose(self) -> None:
        if self._live is not None:
            await asyncio.to_thread(self._live.close)
            self._live = None
