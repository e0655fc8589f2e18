"""A Pipecat frame processor that gives a voice agent a face (`pip install 'openvasa[pipecat]'`).

    from openvasa.pipeline import prepare_portrait
    from openvasa.stream.pipecat import OpenVasaVideoProcessor
    pipeline = Pipeline([transport.input(), stt, llm, tts, OpenVasaVideoProcessor(prepare_portrait("me.jpg")),
                         transport.output()])

TTS audio frames go in; image frames and the same audio, in step with them, come out at 25 fps (the audio is
held back by the block, the look-ahead and the compute, about 0.2 s, so lips and sound match). In silence the
processor keeps sending frames of the face listening. An InterruptionFrame drops the speech not yet shown.
"""

import asyncio
import time

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from openvasa.motion.controls import MotionControls
from openvasa.pipeline import Portrait
from openvasa.stream.realtime import Clock, LiveSession
from openvasa.stream.session import StreamFrame, TalkingSession, int16_mono
from openvasa.units import to_pcm16


class OpenVasaVideoProcessor(FrameProcessor):
    def __init__(
        self,
        portrait: Portrait,
        controls: MotionControls | None = None,
        sample_rate: int = 24000,
        seed: int = 0,
        clock: Clock = time.monotonic,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._portrait, self._controls, self._rate, self._seed = portrait, controls, sample_rate, seed
        self._clock = clock  # the live session's (tests pass a ManualClock)
        self._live: LiveSession | None = None
        self._frames: asyncio.Queue[StreamFrame] = asyncio.Queue()
        self._sender: asyncio.Task | None = None

    @property
    def live(self) -> LiveSession | None:
        """The running session: None before the StartFrame and after the end."""
        return self._live

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._start()
        elif isinstance(frame, TTSAudioRawFrame):
            # Consumed: the audio goes out again with the frames that show it.
            self._live.push_audio(int16_mono(frame.audio, frame.num_channels), frame.sample_rate)
        elif isinstance(frame, InterruptionFrame):
            self._live.interrupt()
            while not self._frames.empty():
                self._frames.get_nowait()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame | CancelFrame):
            await self._stop()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        session = await asyncio.to_thread(
            TalkingSession, self._portrait, self._controls, self._seed, output_rate=self._rate
        )

        def put(frame: StreamFrame) -> None:  # on the session thread
            loop.call_soon_threadsafe(self._frames.put_nowait, frame)

        self._live = LiveSession(session, put, clock=self._clock).start()
        self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while True:
            frame = await self._frames.get()
            height, width = frame.image.shape[:2]
            await self.push_frame(OutputImageRawFrame(image=frame.image.tobytes(), size=(width, height), format="RGB"))
            pcm = to_pcm16(frame.audio).tobytes()
            await self.push_frame(OutputAudioRawFrame(audio=pcm, sample_rate=self._rate, num_channels=1))

    async def _stop(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        if self._live is not None:
            await asyncio.to_thread(self._live.close)
            self._live = None
