"""One tracked clip -> its shards: the landmarks encoded to the face latent relative to the clip's identity,
resampled to the output rate on the audio's clock, smoothed, and written with their audio and features."""

import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openvasa.audio.features import n_frames_for
from openvasa.audio.frontends import AudioFrontend, get_frontend
from openvasa.data.clips import clip_identity
from openvasa.data.config import PrepConfig, basis_fingerprint, config_hash
from openvasa.data.tracking import ClipTrack, track_clip, usable_runs
from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm
from openvasa.face.latent import (
    EYE_OPEN,
    FaceBasis,
    FaceLatent,
    FaceLatentCodec,
    Identity,
    fit_pose,
    measure_eyes,
    rest_frame,
    to_canonical,
)
from openvasa.face.track import FaceTracker, gaussian_smooth
from openvasa.io.media import load_audio, write_atomic
from openvasa.units import SAMPLE_RATE, from_pcm16, to_pcm16

log = logging.getLogger(__name__)

BLINK_FRACTION = 0.5  # of the clip's median eye openness
NEUTRAL_SAMPLE = 3000  # frames searched for a clip's neutral frame, evenly spread
HIGH_BAND_HZ = 4.0  # above syllable rate: where tracking jitter lives, and the fastest lip motion


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def neutral_frame(points: np.ndarray, basis: FaceBasis) -> int:
    """The frame whose landmarks define a clip's identity. points: (N, 478, 3).

    Lips shut and eyes open: identity_of splits a face into neutral shape + expression, and a face at rest
    leaves least to split, so dynamics come out as absolute expression (the median frame of a talking
    clip has its lips half open). Of the rest frames, the one nearest their median canonical shape, since
    a tracking glitch can read as shut lips too.
    """
    pose = fit_pose(points, basis)
    canonical = to_canonical(points.astype(np.float64), pose)
    candidates = rest_frame(measure_eyes(canonical), lm.mouth_opening(canonical))
    distance = np.abs(canonical[candidates] - np.median(canonical[candidates], 0)).mean((1, 2))
    return int(candidates[np.argmin(distance)])


@dataclass
class Span:
    """Frames [a, b) of a clip, shown at `times` (b - a,) seconds on the audio clock, and the output frames
    [first, first + count) at fps that they cover."""

    a: int
    b: int
    times: np.ndarray
    first: int
    count: int
    fps: float

    @classmethod
    def of(cls, a: int, b: int, times: np.ndarray, fps: float, n_audio: int) -> "Span":
        """times: (N,) of every frame of the clip; n_audio: output frames that the audio covers."""
        first = max(0, math.ceil(times[a] * fps - 1e-6))
        last = min(n_audio - 1, math.floor(times[b - 1] * fps + 1e-6))
        return cls(a, b, times[a:b], first, last - first + 1, fps)

    def to_output(self, values: np.ndarray, sigma: float) -> np.ndarray:
        """(b - a, D) values of the span's frames -> (count, D) float32 at the output frames, by linear
        interpolation in time, then Gaussian smoothing of sigma output frames."""
        target = (self.first + np.arange(self.count)) / self.fps
        resampled = np.stack([np.interp(target, self.times, column) for column in values.T], 1)
        return gaussian_smooth(resampled, sigma).astype(np.float32)


def high_band_power(x: np.ndarray, fps: float) -> float:
    """Power of (T,) above HIGH_BAND_HZ."""
    power = np.abs(np.fft.rfft(x - x.mean())) ** 2
    return float(power[np.fft.rfftfreq(len(x), 1 / fps) >= HIGH_BAND_HZ].sum())


def count_blinks(eyes: np.ndarray, open_level: float) -> int:
    """Dips of the mean eye openness of (T, 6) eye states below BLINK_FRACTION of open_level."""
    closed = eyes[:, EYE_OPEN].mean(1) < BLINK_FRACTION * open_level
    return int(closed[0] + np.count_nonzero(closed[1:] & ~closed[:-1]))


def prep_clip(
    path: Path, sha256: str, out_dir: Path, config: PrepConfig, tracker: FaceTracker, codec: FaceLatentCodec
) -> dict:
    """Prepare one clip: write its shards and its record (out_dir/clips/<stem>.json); return the record.

    A clip that cannot be used (no audio, no face, nothing long enough) gets a record saying why, so that
    it is not tried again; only unexpected errors propagate.
    """
    started = time.monotonic()
    identity_name, split = clip_identity(path, sha256)
    record = {
        "file": path.name,
        "sha256": sha256,
        "config_hash": config_hash(config, codec.basis),
        "identity": identity_name,
        "split": split,
        "status": "ok",
        "reason": None,
        "cuts": [],
        "dropped": [],
        "shards": [],
    }
    for old in (out_dir / "shards").glob(f"{path.stem}__[0-9][0-9][0-9].npz"):
        old.unlink()
    try:
        audio = load_audio(path)
        track = track_clip(path, config, tracker)
    except OpenVasaError as e:
        record.update(status="failed", reason=str(e))
        return _finish(record, out_dir, started)
    spans = _cut(track, config, n_frames_for(len(audio), config.fps), record)
    if not spans:
        record.update(status="no_segments", reason="no usable segment" if track.found.any() else "no face found")
        return _finish(record, out_dir, started)

    frames = np.concatenate([np.arange(s.a, s.b) for s in spans])
    frames = frames[:: max(1, len(frames) // NEUTRAL_SAMPLE)]
    identity = codec.identity_of(track.landmarks[frames[neutral_frame(track.landmarks[frames], codec.basis)]])
    motions = [_segment_motion(track.landmarks[s.a : s.b], s, identity, codec, config) for s in spans]
    frontends = [get_frontend(name) for name in config.audio_frontends]
    meta = {
        "clip": path.name,
        "identity": identity_name,
        "split": split,
        "source_fps": record["source_fps"],
        "fps": config.fps,
        "sha256": sha256,
        "basis": basis_fingerprint(codec.basis),
        "config_hash": record["config_hash"],
    }
    for k, (span, (motion, mouth, _)) in enumerate(zip(spans, motions, strict=True)):
        entry = {
            "file": f"shards/{path.stem}__{k:03d}.npz",
            "clip": path.name,
            "T": span.count,
            "seconds": span.count / span.fps,
            "start_s": span.first / span.fps,
            "identity": identity_name,
            "split": split,
        }
        pcm = _audio_of(audio, span)
        _save_npz(
            out_dir / entry["file"],
            pose=motion.pose,
            eyes=motion.eyes,
            dynamics=motion.dynamics,
            mouth_opening=mouth,
            reference_pose=motion.pose[rest_frame(motion.eyes, mouth)[0]],
            neutral=identity.neutral.astype(np.float32),
            audio=pcm,
            meta=np.array(json.dumps(meta | {"segment": k, "start_s": entry["start_s"]})),
            **{f"features_{f.name}": _features(f, pcm, span) for f in frontends},
        )
        record["shards"].append(entry)
    record.update(_motion_stats(motions, config.fps))
    return _finish(record, out_dir, started)


def _cut(track: ClipTrack, config: PrepConfig, n_audio: int, record: dict) -> list[Span]:
    """Spans of the usable runs long enough to keep; notes cuts and dropped runs in the record."""
    times = track.times
    frame_s = float(np.median(np.diff(times))) if len(times) > 1 else 1 / config.fps
    record.update(source_fps=round(1 / frame_s, 3), seconds=round(times[-1] + frame_s, 3))
    spans = []
    for a, b, reason in usable_runs(track):
        if reason != "end":
            record["cuts"].append({"time_s": round(times[b], 3), "reason": reason})
        span = Span.of(a, b, times, config.fps, n_audio)
        if span.count >= config.min_segment_s * config.fps - 1e-6:
            spans.append(span)
        else:
            seconds = times[b - 1] - times[a] + frame_s
            record["dropped"].append({"start_s": round(times[a], 3), "seconds": round(seconds, 3)})
    return spans


def _motion_stats(motions: list[tuple[FaceLatent, np.ndarray, np.ndarray]], fps: float) -> dict:
    """Usable seconds, blink rate and the smoothing check of a clip's segments (from _segment_motion)."""
    smooth = np.concatenate([m for _, m, _ in motions])
    raw = np.concatenate([r for _, _, r in motions])
    open_level = float(np.median(np.concatenate([m.eyes[:, EYE_OPEN].mean(1) for m, _, _ in motions])))
    minutes = len(raw) / fps / 60
    return {
        "usable_s": len(raw) / fps,
        "blinks_per_min": sum(count_blinks(m.eyes, open_level) for m, _, _ in motions) / minutes,
        "mouth_r": float(np.corrcoef(raw, smooth)[0, 1]),
        "high_band_ratio": sum(high_band_power(m, fps) for _, m, _ in motions)
        / max(sum(high_band_power(r, fps) for _, _, r in motions), 1e-20),
    }


def _segment_motion(
    points: np.ndarray, span: Span, identity: Identity, codec: FaceLatentCodec, config: PrepConfig
) -> tuple[FaceLatent, np.ndarray, np.ndarray]:
    """Latent and pose-free mouth opening of one segment on the output clock: (smoothed latent, smoothed
    mouth opening (T,), unsmoothed mouth opening (T,)) for the check that smoothing keeps lip motion."""
    latent = codec.encode(points, identity)
    mouth = lm.mouth_opening(to_canonical(points.astype(np.float64), latent.pose))[:, None]
    light = config.dynamics_smoothing_frames
    motion = FaceLatent(
        span.to_output(latent.pose, config.pose_smoothing_frames),
        span.to_output(latent.eyes, light),
        span.to_output(latent.dynamics, light),
    )
    return motion, span.to_output(mouth, light)[:, 0], span.to_output(mouth, 0.0)[:, 0]


def _audio_of(audio: np.ndarray, span: Span) -> np.ndarray:
    """int16 samples of the span's output frames, count / fps seconds (zero-padded past the end)."""
    begin = round(span.first * SAMPLE_RATE / span.fps)
    pcm = np.zeros(round(span.count * SAMPLE_RATE / span.fps), np.int16)
    piece = audio[begin : begin + len(pcm)]
    pcm[: len(piece)] = to_pcm16(np.clip(piece, -1, 1))
    return pcm


def _features(frontend: AudioFrontend, pcm: np.ndarray, span: Span) -> np.ndarray:
    """(count, D) float32 features of a shard's audio; from the stored int16 samples, so that computing a
    front-end again from a shard gives the same numbers."""
    values = np.asarray(frontend.features(from_pcm16(pcm), span.fps), np.float32)
    if values.shape[0] != span.count:
        raise ValueError(f"audio front-end {frontend.name!r} gave {len(values)} frames for {span.count}")
    return values


def _finish(record: dict, out_dir: Path, started: float) -> dict:
    record["prep_s"] = round(time.monotonic() - started, 2)
    write_atomic(out_dir / "clips" / f"{Path(record['file']).stem}.json", json.dumps(record, indent=1).encode())
    return record
