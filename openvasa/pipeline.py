"""Offline pipelines as short compositions of the stages: portrait -> motion latents -> frames -> mp4."""

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from openvasa.audio import phonetics
from openvasa.errors import OpenVasaError
from openvasa.face.detect import FaceAnalyzer, FaceCrop
from openvasa.face.landmarks import mouth_opening
from openvasa.face.latent import (
    EYE_IRIS,
    EYE_OPEN,
    POSE_ANGLES,
    POSE_SCALE,
    POSE_SHIFT,
    FaceLatent,
    FaceLatentCodec,
    Identity,
    rest_frame,
)
from openvasa.face.track import TrackedClip, gaussian_smooth, track_frames
from openvasa.io.media import load_audio, load_image, read_video, write_video
from openvasa.motion.baseline import generate_baseline_motion
from openvasa.motion.checkpoint import checkpoint_features, checkpoint_path
from openvasa.motion.closures import close_lips
from openvasa.motion.controls import MOTION_MODELS, MotionControls
from openvasa.motion.settings import GenerationSettings
from openvasa.provenance.metadata import model_hash, model_version, provenance_tags
from openvasa.provenance.watermark import Watermark
from openvasa.render.raster import load_compiled
from openvasa.render.renderer import PortraitRenderer
from openvasa.units import FPS

if TYPE_CHECKING:
    from openvasa.motion.generator import MotionGenerator

log = logging.getLogger(__name__)

REENACT_MODES = ("full", "pose", "expression")
# Frames are drawn on RENDER_THREADS threads, up to RENDER_AHEAD ahead of the consumer: OpenCV, NumPy and the compiled
# rasteriser release the GIL, so drawing overlaps itself and the video encoder.
RENDER_THREADS = 2
RENDER_AHEAD = 8
POSE_SMOOTHING_FRAMES = 0.8  # Gaussian sigma: removes tracking jitter, keeps real head motion


@dataclass
class Portrait:
    """A portrait analysed once: framing, identity (neutral shape + own latent) and its renderer."""

    crop: FaceCrop
    identity: Identity
    renderer: PortraitRenderer


def prepare_portrait(
    image: np.ndarray | str | Path,
    face_index: int | None = None,
    codec: FaceLatentCodec | None = None,
    framing: str = "auto",
) -> Portrait:
    """Find, frame and analyse the face of a portrait (array RGB uint8 or image path). framing: "auto" (as wide as
    the picture allows, every pixel from it) or "wide" (head and shoulders, what the picture lacks filled in)."""
    pixels = load_image(image) if isinstance(image, str | Path) else image
    with FaceAnalyzer(static=True) as analyzer:
        crop = analyzer.crop_portrait(pixels, face_index, framing)
    codec = codec or FaceLatentCodec()
    return Portrait(crop, codec.identity_of(crop.landmarks), PortraitRenderer(crop))


def render_latents(
    portrait: Portrait, latent: FaceLatent, codec: FaceLatentCodec, threads: int = RENDER_THREADS
) -> Iterator[np.ndarray]:
    """Yield one RGB frame per latent frame, in order, drawn on `threads` threads a few frames ahead. An error
    while drawing is raised here; a consumer that stops early leaves at most RENDER_AHEAD frames drawn for
    nothing."""

    def draw(i: int) -> np.ndarray:
        return portrait.renderer.render(codec.decode(latent[i : i + 1], portrait.identity)[0])

    if threads <= 1:
        yield from (draw(i) for i in range(len(latent)))
        return
    pending: deque[Future] = deque()
    # The drawing threads are the parallelism: OpenCV's own threads on top of them (and the encoder's) only
    # compete for the cores (500 frames drawn and encoded: 3.0-3.3 s with one OpenCV thread, 3.5-3.7 s with two).
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    with ThreadPoolExecutor(threads, thread_name_prefix="openvasa-render") as pool:
        try:
            for i in range(len(latent)):
                pending.append(pool.submit(draw, i))
                if len(pending) > RENDER_AHEAD:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            cv2.setNumThreads(opencv_threads)


def generate(
    image: np.ndarray | str | Path | Portrait,
    audio: np.ndarray | str | Path,
    output: str | Path | None = None,
    controls: MotionControls | None = None,
    *,
    motion: str = "dit",
    checkpoint: str | Path | None = None,
    settings: GenerationSettings | None = None,
    seed: int = 0,
    face_index: int | None = None,
    framing: str = "auto",
    fps: float = FPS,
    progress: bool = False,
    on_progress: Callable[[float], None] | None = None,
    watermark: bool = True,
    lip_closures: bool = True,
) -> Path | list[np.ndarray]:
    """Talking video from one portrait (image, path or an analysed Portrait) and speech audio (16 kHz mono
    array or audio file).

    motion: "dit", the trained motion diffusion transformer (`openvasa.motion.generator`), or "baseline",
    the hand-built audio-driven motion (`openvasa.motion.baseline`). Writes an mp4 and returns its path when
    `output` is given, else returns the frames. on_progress(fraction of frames rendered) is called as it goes.
    checkpoint: another motion checkpoint than the shipped one (e.g. the streaming model's). framing: see
    prepare_portrait. Every frame carries an invisible watermark and the mp4 a provenance tag (docs/provenance.md);
    watermark=False leaves both out, for research on the frames themselves only. lip_closures: shut the lips on
    the /p b m/ of English speech, found in its transcript (openvasa.audio.phonetics); other speech is left as the
    motion model made it.
    """
    if not 1 <= fps <= 60:
        raise OpenVasaError(f"fps must be between 1 and 60, got {fps}")
    if motion not in MOTION_MODELS:
        raise OpenVasaError(f"unknown motion model {motion!r}; choose from {', '.join(MOTION_MODELS)}")
    pcm = load_audio(audio) if isinstance(audio, str | Path) else np.asarray(audio, np.float32)
    codec = FaceLatentCodec()
    path = checkpoint_path(checkpoint) if motion == "dit" else None
    with ThreadPoolExecutor(1, thread_name_prefix="openvasa-audio") as pool:
        # Whisper, which leaves Python's lock, encodes the speech while torch is imported (a second of Python
        # work) and the portrait analysed. Not torch beside the portrait: both imports are Python work, and side
        # by side each took three times as long.
        features = pool.submit(checkpoint_features, path, pcm) if path is not None else None
        pool.submit(load_compiled)  # then the rasteriser's compiled loop, off the main thread too
        closures = pool.submit(phonetics.lip_closures, pcm, fps) if lip_closures else None
        generator = _load_generator(path) if path is not None else None
        portrait = image if isinstance(image, Portrait) else prepare_portrait(image, face_index, codec, framing)
        controls = controls or MotionControls()
        rest_opening = portrait.identity.rest_opening(codec.basis)
        if generator is not None:
            latent = generator.generate(
                pcm,
                fps,
                portrait.identity.reference,
                codec.basis,
                controls,
                seed,
                settings,
                rest_opening,
                features.result(),
            )
        else:
            latent = generate_baseline_motion(
                pcm, fps, portrait.identity.reference, codec.basis, controls, seed, rest_opening=rest_opening
            )
    if closures is not None:
        latent = close_lips(latent, closures.result(), portrait.identity.neutral, codec.basis)
    frames = render_latents(portrait, latent, codec)
    if on_progress is not None:
        frames = _reporting(frames, len(latent), on_progress)
    model = model_hash(path) if path is not None else motion
    frames, tags = _provenance(frames, codec.decode(latent, portrait.identity), model, watermark)
    if output is None:
        return list(frames)
    return write_video(output, frames, fps, pcm, n_frames=len(latent), progress=progress, metadata=tags)


def _provenance(
    frames: Iterator[np.ndarray], faces: np.ndarray, model: str, watermark: bool
) -> tuple[Iterator[np.ndarray], dict[str, str] | None]:
    """The frames, each marked as generated, and the mp4's provenance tag; or both left as they are. faces: (T, 478,
    3) the landmarks each frame is drawn with: the mark stays faint wherever the face goes."""
    if not watermark:
        return frames, None
    mark = Watermark.new(model_version(model), faces)
    return (mark.apply(frame) for frame in frames), provenance_tags(model, mark.payload)


def _load_generator(path: Path) -> "MotionGenerator":
    """The motion model; torch is imported here, so that jobs without it never pay for it."""
    from openvasa.motion.generator import load_generator

    return load_generator(str(path))


def _reporting(frames: Iterator[np.ndarray], total: int, on_progress: Callable[[float], None]) -> Iterator[np.ndarray]:
    for i, frame in enumerate(frames):
        yield frame
        on_progress((i + 1) / total)


def _check_reenact_mode(mode: str) -> None:
    if mode not in REENACT_MODES:
        raise OpenVasaError(f"unknown reenactment mode {mode!r}; choose from {', '.join(REENACT_MODES)}")


def transfer_motion(
    driver: FaceLatent,
    driver_mouth: np.ndarray,
    source: FaceLatent,
    mode: str = "full",
    same_start: bool = False,
    turn: float = 0.0,
) -> FaceLatent:
    """Move the source latent as the driver moves, relative to the driver's own start.

    driver_mouth: (T,) the driver's mouth opening. Pose is taken relative to the driver's first frame; `turn` is
    the angle (rad) from the driver's framing to the source's, by which the head's shifts turn (a framing that
    levels a tilted head turns the picture's axes). Expression is taken relative to the driver's rest frame (eyes
    open, mouth most shut), since clips often start mid-word; with `same_start` (the source is the driver's
    first frame: self-reenactment) relative to that first frame, so the source's own expression is not counted
    twice.
    """
    _check_reenact_mode(mode)
    n = len(driver)
    out = FaceLatent(np.repeat(source.pose, n, 0), np.repeat(source.eyes, n, 0), np.repeat(source.dynamics, n, 0))
    if mode in ("full", "pose"):
        pose = gaussian_smooth(driver.pose, POSE_SMOOTHING_FRAMES)
        scale = source.pose[0, POSE_SCALE] / pose[0, POSE_SCALE]
        out.pose[:, POSE_ANGLES] += pose[:, POSE_ANGLES] - pose[0, POSE_ANGLES]
        shift = (pose[:, POSE_SHIFT] - pose[0, POSE_SHIFT]) * scale
        c, s = np.cos(turn), np.sin(turn)
        out.pose[:, POSE_SHIFT] += shift @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])  # rows turned by `turn`
        out.pose[:, POSE_SCALE] = pose[:, POSE_SCALE] * scale
    if mode in ("full", "expression"):
        rest = rest_frame(driver.eyes, driver_mouth)
        ref = 0 if same_start else rest[np.argmin(driver_mouth[rest])]
        out.dynamics += driver.dynamics - driver.dynamics[ref]
        openness = driver.eyes[:, EYE_OPEN] / np.maximum(driver.eyes[ref, EYE_OPEN], 1e-3)
        out.eyes[:, EYE_OPEN] = source.eyes[0, EYE_OPEN] * np.clip(openness, 0, 1.6)
        out.eyes[:, EYE_IRIS] += driver.eyes[:, EYE_IRIS] - driver.eyes[ref, EYE_IRIS]
    return out


def drive(
    portrait: Portrait, tracked: TrackedClip, codec: FaceLatentCodec, mode: str = "full", same_start: bool = False
) -> FaceLatent:
    """The portrait's latent moved as the tracked video moves (transfer_motion, across the two framings)."""
    turn = _framing_angle(portrait.crop.to_crop) - _framing_angle(tracked.to_crop)
    driver = codec.encode(tracked.landmarks)
    source = portrait.identity.reference
    return transfer_motion(driver, mouth_opening(tracked.landmarks), source, mode, same_start, turn)


def _framing_angle(affine: np.ndarray) -> float:
    """Rotation (rad) of a (2, 3) similarity."""
    return float(np.arctan2(affine[1, 0], affine[0, 0]))


def reenact(
    image: np.ndarray | str | Path,
    video: str | Path,
    output: str | Path | None = None,
    mode: str = "full",
    *,
    face_index: int | None = None,
    framing: str = "auto",
    progress: bool = False,
    watermark: bool = True,
) -> Path | list[np.ndarray]:
    """Drive a portrait with a real video's motion (relative to its start); the video's audio is kept. The frames
    are watermarked as generate's are."""
    _check_reenact_mode(mode)
    clip = read_video(video)
    codec = FaceLatentCodec()
    portrait = prepare_portrait(image, face_index, codec, framing)
    latent = drive(portrait, track_frames(clip.frames, keep_frames=False), codec, mode)
    faces = codec.decode(latent, portrait.identity)
    frames, tags = _provenance(render_latents(portrait, latent, codec), faces, "reenact", watermark)
    if output is None:
        return list(frames)
    return write_video(output, frames, clip.fps, clip.audio, n_frames=len(latent), progress=progress, metadata=tags)
