"""A live talking-face session: audio chunks in, video frames (with their audio) out.

    session = TalkingSession(prepare_portrait("face.jpg"))
    session.push_audio(pcm, 24000)           # any chunk size; 16, 24 or 48 kHz; int16 or float
    for frame in session.frames():           # the frames whose audio (and look-ahead) has arrived
        show(frame.image); play(frame.audio)

It runs the offline stages (openvasa.audio.streaming, openvasa.motion.generator.MotionStream, the portrait's
renderer) block by block: a block of frames at a time (4, or 1 with low_latency=True), once their audio and
STREAM_LOOKAHEAD frames more have arrived. `idle()` fills silence when no audio comes, so the face keeps
blinking and moving while it listens; `interrupt()` drops the audio not yet shown. The stream's motion model is trained on blocks
(its window is the block), so its offline replay (`generate` with that checkpoint and causal smoothing) gives
the same frames for the same seed.
"""

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import soxr

from openvasa.audio.streaming import SAMPLES_PER_FRAME, STREAM_LOOKAHEAD
from openvasa.errors import OpenVasaError
from openvasa.face.latent import FaceLatentCodec
from openvasa.motion.controls import MotionControls
from openvasa.motion.generator import MotionStream, load_generator
from openvasa.motion.settings import GenerationSettings
from openvasa.pipeline import Portrait
from openvasa.provenance.metadata import model_hash, model_version
from openvasa.provenance.watermark import Watermark
from openvasa.stream.vad import SpeechDetector
from openvasa.units import FPS, SAMPLE_RATE, from_pcm16

STREAM_CHECKPOINT = "motion_dit_stream.pt"  # 4-frame blocks: better lip sync, under half a core
LOW_LATENCY_CHECKPOINT = "motion_dit_stream1.pt"  # 1-frame blocks: about 70 ms sooner, 1 core
SUPPORTED_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
MAX_PENDING_S = 30.0  # audio pushed ahead of the frames is capped: a client cannot grow memory without bound


def stream_checkpoint(low_latency: bool = False) -> Path:
    name = LOW_LATENCY_CHECKPOINT if low_latency else STREAM_CHECKPOINT
    return Path(str(resources.files("openvasa") / "assets" / name))


# Pose smoothing (frames) of 1-frame blocks. Each of their frames is sampled on its own, and at the default 1.5 the
# head shook at 1.63 times real's frame-to-frame speed on the validation people; at 3 it moves at 1.04 times (5:
# 0.72), about 3 frames behind: the head may lag, the lips do not (their smoothing is unchanged).
ONE_FRAME_POSE_SMOOTHING = 3.0


def stream_settings(steps: int = 10, window: int = 4) -> GenerationSettings:
    """What a live session of a model with `window`-frame blocks samples with: causal smoothing (no future frames),
    and no audio guidance (with it the block model blinked 44 times a minute on the validation people, without 31;
    mouth r 0.41 vs 0.39)."""
    settings = GenerationSettings(steps=steps, cfg_audio=0.0, causal_smoothing=True, compiled=True)
    if window == 1:
        settings.pose_smoothing = ONE_FRAME_POSE_SMOOTHING
    return settings


@dataclass
class StreamFrame:
    index: int  # frames since the session started (25 fps)
    image: np.ndarray  # (512, 512, 3) uint8 RGB
    audio: np.ndarray  # the samples shown with this frame, at the session's output rate (float32)
    speech: bool  # whether this frame's audio came from the client (False: idle fill or after an interrupt)
    skipped: bool = False  # drawn too late to be live: the image is the previous frame's (LiveSession)


@dataclass
class SessionStats:
    frames: int = 0
    blocks: int = 0
    features_s: float = 0.0  # compute time of each stage
    motion_s: float = 0.0
    render_s: float = 0.0
    interrupts: int = 0


class TalkingSession:
    """One portrait, one live stream. Not thread-safe: drive it from one thread (the server runs one task
    per session)."""

    def __init__(
        self,
        portrait: Portrait,
        controls: MotionControls | None = None,
        seed: int = 0,
        steps: int = 10,
        checkpoint: Path | None = None,
        output_rate: int = SAMPLE_RATE,
        low_latency: bool = False,
        watermark: bool = True,
    ) -> None:
        if output_rate not in SUPPORTED_RATES:
            raise OpenVasaError(f"unsupported output sample rate {output_rate}; use one of {SUPPORTED_RATES}")
        self.portrait = portrait
        self.codec = FaceLatentCodec()
        path = checkpoint or stream_checkpoint(low_latency)
        self.generator = load_generator(str(path))
        # Every frame marked as generated (docs/provenance.md); watermark=False is for research on the frames only.
        self.watermark = Watermark.new(model_version(model_hash(path)), portrait.crop.landmarks) if watermark else None
        if not hasattr(self.generator.frontend, "stream"):  # only streaming front-ends have one
            raise OpenVasaError("a live session needs a streaming motion model (its front-end streams)")
        self.controls, self.seed, self.steps = controls or MotionControls(), seed, steps
        self.output_rate = output_rate
        self.stats = SessionStats()
        self._start()
        if self.generator.config.window != self.block:
            raise OpenVasaError("a live session needs a streaming motion model: its window must be its audio block")
        self._warm_up()

    @property
    def block(self) -> int:
        """Frames per block: 4, or 1 for low-latency sessions."""
        return self.audio.block_frames

    def _warm_up(self) -> None:
        """Compile the motion sampler (shared by the sessions of this model) before the first block, where it
        would stall the stream for most of a second. A throwaway stream: this session's random draws stay as
        offline generation makes them."""
        silence, stream = self.generator.silence_features(self.block), self._motion_stream()
        for _ in range(3):  # TorchScript optimises its graph over the first calls
            stream.sample(silence)

    def _motion_stream(self) -> MotionStream:
        identity = self.portrait.identity
        return MotionStream(
            self.generator,
            identity.reference,
            self.codec.basis,
            self.controls,
            self.seed,
            stream_settings(self.steps, self.generator.config.window),
            identity.rest_opening(self.codec.basis),
        )

    def _start(self) -> None:
        self.audio = self.generator.frontend.stream()
        self.motion = self._motion_stream()
        self.playback = np.zeros(0, np.float32)  # output-rate audio not yet attached to a frame
        self.speech_runs: deque[list] = deque()  # [16 kHz samples, came from the client] of audio not yet shown
        self.ready: deque[tuple[StreamFrame, np.ndarray]] = deque()  # frames to render: (frame, its landmarks)
        self.frame_index = 0
        self.vad = SpeechDetector()
        self.events: deque[tuple[str, float]] = deque(maxlen=100)  # VAD events of the client's speech

    # --- input -----------------------------------------------------------------------------------------------

    def push_audio(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Append speech. pcm: mono (N,) int16 or float in [-1, 1]; sample_rate one of SUPPORTED_RATES."""
        self._append(_to_float(pcm), sample_rate, speech=True)

    def idle(self, seconds: float) -> None:
        """Append silence (no speech arrived): the face listens, blinks and moves a little."""
        self._append(np.zeros(int(round(seconds * self.output_rate)), np.float32), self.output_rate, speech=False)

    def _append(self, pcm: np.ndarray, sample_rate: int, speech: bool) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise OpenVasaError(f"unsupported sample rate {sample_rate} Hz; use one of {SUPPORTED_RATES}")
        if pcm.ndim != 1:
            raise OpenVasaError(f"audio must be mono (1-D), got shape {pcm.shape}")
        if not np.all(np.isfinite(pcm)):
            raise OpenVasaError("audio contains NaN or infinite samples")
        if self.pending_seconds + len(pcm) / sample_rate > MAX_PENDING_S:
            raise OpenVasaError(f"more than {MAX_PENDING_S:.0f} s of audio is waiting for frames; push in real time")
        out = pcm if sample_rate == self.output_rate else soxr.resample(pcm, sample_rate, self.output_rate)
        model = pcm if sample_rate == SAMPLE_RATE else soxr.resample(pcm, sample_rate, SAMPLE_RATE)
        self.playback = np.concatenate([self.playback, out.astype(np.float32)])
        self.speech_runs.append([len(model), speech])
        if speech:
            for event in self.vad.push(model):
                self.events.append(event)
                if event[0] == "speech_end":  # the utterance is over: start listening now, not after a second
                    self.motion.running["listening"] = max(self.motion.running.get("listening", 0.0), 0.5)
        started = time.perf_counter()
        features = self.audio.push(model.astype(np.float32))
        self.stats.features_s += time.perf_counter() - started
        self._generate(features)

    def interrupt(self) -> None:
        """Drop every frame and sample not yet taken: the next frames are the face at rest, listening.
        The motion keeps its context, so the face settles from where it is rather than jumping."""
        self.ready.clear()
        self.playback = np.zeros(0, np.float32)
        self.speech_runs.clear()
        self.stats.interrupts += 1
        self.audio = self.generator.frontend.stream()  # its audio is dropped too; it restarts at the next frame
        self.motion.running["listening"] = 1.0  # listen at once, not after a second of silence

    # --- output ----------------------------------------------------------------------------------------------

    @property
    def pending_seconds(self) -> float:
        """Audio pushed but not yet turned into frames."""
        return len(self.playback) / self.output_rate

    def frames(self) -> Iterator[StreamFrame]:
        """Frames ready now, oldest first (each exactly once). Each is rendered as it is taken, so the first
        frame of a block goes out before the next one is drawn."""
        for frame, points in self.take():
            self.render(frame, points)
            yield frame

    def take(self) -> list[tuple[StreamFrame, np.ndarray]]:
        """The frames ready now, not yet drawn, with their landmarks: for drawing them on another thread
        (render, in order), while this one computes the next block."""
        items = list(self.ready)
        self.ready.clear()
        return items

    def render(self, frame: StreamFrame, points: np.ndarray) -> None:
        """Draw a frame from take(). Frames must be drawn in order (the renderer smooths across frames)."""
        started = time.perf_counter()
        frame.image = self.portrait.renderer.render(points)
        if self.watermark is not None:
            frame.image = self.watermark.apply(frame.image, points)  # faint wherever the face has gone so far
        self.stats.render_s += time.perf_counter() - started

    def finish(self) -> None:
        """End of the audio: make frames for what remains (its look-ahead padded with silence)."""
        self._generate(self.audio.finish())

    def _generate(self, features: np.ndarray) -> None:
        for start in range(0, len(features), self.block):
            block = features[start : start + self.block]
            if len(block) < self.block:  # the end of the audio (finish): pad, then keep the real frames
                block = np.concatenate([block, np.zeros((self.block - len(block), block.shape[1]), block.dtype)])
            keep = min(self.block, len(features) - start)
            started = time.perf_counter()
            motion = self.motion
            latent = motion.steer_mouth(motion.smooth(motion.to_latent(motion.sample(block), block)), block)[:keep]
            points = self.codec.decode(latent, self.portrait.identity)
            self.ready.extend((self._frame(), points[i]) for i in range(keep))
            self.stats.blocks += 1
            self.stats.motion_s += time.perf_counter() - started

    def _frame(self) -> StreamFrame:
        """The next frame with its audio; its image is drawn when it is taken (frames())."""
        n_out = int(round((self.frame_index + 1) * self.output_rate / FPS)) - int(
            round(self.frame_index * self.output_rate / FPS)
        )
        audio = self.playback[:n_out]
        if len(audio) < n_out:
            audio = np.concatenate([audio, np.zeros(n_out - len(audio), np.float32)])
        self.playback = self.playback[n_out:]
        frame = StreamFrame(self.frame_index, _NOT_DRAWN, audio, speech=self._take_speech(SAMPLES_PER_FRAME))
        self.frame_index += 1
        self.stats.frames += 1
        return frame

    def _take_speech(self, samples: int) -> bool:
        """Consume one frame's worth of 16 kHz samples from the runs: whether most came from the client."""
        spoken = taken = 0
        while taken < samples and self.speech_runs:
            run = self.speech_runs[0]
            n = min(run[0], samples - taken)
            taken, spoken = taken + n, spoken + n * run[1]
            run[0] -= n
            if run[0] == 0:
                self.speech_runs.popleft()
        return taken > 0 and spoken > taken / 2

    @property
    def latency_frames(self) -> int:
        """Frames of audio a block waits for beyond its first frame: the block and the look-ahead."""
        return self.block - 1 + STREAM_LOOKAHEAD


_NOT_DRAWN = np.zeros((0, 0, 3), np.uint8)


def int16_mono(data: bytes, channels: int) -> np.ndarray:
    """Interleaved int16 PCM bytes -> mono int16 (channels averaged), as voice-agent frameworks deliver TTS."""
    return np.frombuffer(data, "<i2").reshape(-1, channels).mean(1).astype(np.int16)


def _to_float(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.dtype == np.int16:
        return from_pcm16(pcm)
    if not np.issubdtype(pcm.dtype, np.floating):
        raise OpenVasaError(f"audio must be int16 or float, got {pcm.dtype}")
    return pcm.astype(np.float32)
