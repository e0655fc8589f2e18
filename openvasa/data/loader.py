"""Stream fixed-length training windows of (motion, audio features, mouth opening) from prep shards.

Every epoch each shard goes to exactly one (rank, DataLoader worker) slot, and is cut into windows of
`window` frames at a random offset; each window comes with the `context` frames before it (the previous
window's end, as in generation), padded with the shard's first frame where the shard has none.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from openvasa.audio.frontends import frontend_parts
from openvasa.data.config import basis_fingerprint
from openvasa.errors import OpenVasaError
from openvasa.face.detect import FRAME_SIZE
from openvasa.face.latent import N_EYE, POSE_SCALE, POSE_SHIFT, FaceBasis, FaceLatent, mirror_latent
from openvasa.motion.signals import pose_delta


@dataclass
class WindowConfig:
    """What MotionWindows yields, and its augmentations (all off by default)."""

    window: int = 50  # frames to generate
    context: int = 10  # frames before them, given as context
    frontend: str = "energy"  # audio features: the shards' features_<frontend>
    split: str | None = "train"  # None: every shard
    seed: int = 0
    mirror_prob: float = 0.0  # chance that a window is flipped left-right
    scale_jitter: float = 0.0  # head scale times exp(u), u ~ U(-j, j): a camera zoom about the frame centre
    shift_jitter: float = 0.0  # head position shifted by up to this many eye distances in x and y
    cache_shards: bool = False  # keep decoded shards in memory (small datasets: no re-reading every epoch)
    # Dynamics relative to the clip's rest frame: the model then learns how people move from their own rest
    # face (as a portrait shows it), not every speaker's absolute mouth shape.
    relative_dynamics: bool = False


def split_shards(index: Path, split: str | None) -> Iterator[tuple[dict, dict[str, np.ndarray]]]:
    """(index entry, arrays) of each shard of a prep index.json whose split is `split` ("train" or "val";
    None: every shard)."""
    listing = json.loads(Path(index).read_text())
    for shard in listing["shards"]:
        if split is None or shard["split"] == split:
            with np.load(Path(index).parent / shard["file"]) as z:
                arrays = {name: z[name] for name in z.files}
            yield shard, arrays


def rest_index(pose: np.ndarray, reference_pose: np.ndarray) -> int:
    """The frame of a prep shard at its reference pose: its rest (neutral) frame. pose: (T, 7), (7,)."""
    return int(np.argmin(np.abs(pose - reference_pose).sum(1)))


class MotionWindows(IterableDataset):
    """Windows of the shards listed in a prep index.json, as dicts of tensors (L = context + window):

    motion: (L, 7 + 6 + K) float32, pose_delta from the shard's reference pose, eyes, dynamics;
    audio: (L, D) float32, the front-end's features; mouth_opening: (L,) float32;
    valid: (L,) float32, 0 on context frames padded before the shard's start;
    shard, start: int64 index in `self.shards` and the first generated frame (for bookkeeping).

    rank / world_size split the shards between distributed processes; DataLoader workers split each
    rank's share further. Shards are not split evenly in frames, so ranks may get different numbers of
    windows: a distributed trainer should bound its steps per epoch. Call set_epoch before each epoch.
    """

    def __init__(
        self, index: str | Path, config: WindowConfig | None = None, rank: int = 0, world_size: int = 1
    ) -> None:
        self.root = Path(index).parent
        self.config = config or WindowConfig()
        if not 0 <= rank < world_size:
            raise OpenVasaError(f"rank {rank} is outside 0..{world_size - 1}")
        self.rank, self.world_size = rank, world_size
        listing = json.loads(Path(index).read_text())
        self.shards = [s for s in listing["shards"] if self.config.split in (None, s["split"])]
        self.epoch = 0
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self.basis = None
        if self.config.mirror_prob > 0:
            self.basis = FaceBasis.load()
            if basis_fingerprint(self.basis) != listing["basis"]:
                raise OpenVasaError("the shards were encoded with another face basis than the shipped one; prep again")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def windows_per_epoch(self) -> int:
        """Windows over all ranks and workers in one epoch."""
        return sum(s["T"] // self.config.window for s in self.shards)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        slot, n_slots = self.rank * n_workers + worker, self.world_size * n_workers
        order = np.random.default_rng([self.config.seed, self.epoch]).permutation(len(self.shards))
        for k in order[slot::n_slots]:
            yield from self._windows(int(k))

    def _windows(self, k: int) -> Iterator[dict[str, torch.Tensor]]:
        c = self.config
        # Seeded by shard as well as epoch, so that a shard's windows do not depend on which worker reads it.
        rng = np.random.default_rng([c.seed, self.epoch, k])
        shard = self._cache.get(k) or self._load(k)
        if c.cache_shards:
            self._cache[k] = shard
        n = len(shard["pose"]) // c.window
        offset = int(rng.integers(0, len(shard["pose"]) - n * c.window + 1))
        for start in offset + c.window * np.arange(n):
            # Frames before the shard's start repeat its first frame and are marked invalid.
            frames = np.maximum(np.arange(start - c.context, start + c.window), 0)
            valid = np.arange(start - c.context, start + c.window) >= 0
            yield self._window(shard, frames, valid, rng) | {
                "shard": torch.tensor(k),
                "start": torch.tensor(int(start)),
            }

    def _load(self, k: int) -> dict[str, np.ndarray]:
        with np.load(self.root / self.shards[k]["file"]) as z:
            shard = {name: z[name] for name in ("pose", "eyes", "dynamics", "mouth_opening", "reference_pose")}
            parts = []
            for name in frontend_parts(self.config.frontend):
                if f"features_{name}" not in z:
                    raise OpenVasaError(
                        f"{self.shards[k]['file']} has no features_{name}; prep with --frontends {name}"
                    )
                parts.append(z[f"features_{name}"].astype(np.float32))
            shard["audio"] = np.concatenate(parts, axis=1)
        if self.config.relative_dynamics:
            shard["dynamics"] = (
                shard["dynamics"] - shard["dynamics"][rest_index(shard["pose"], shard["reference_pose"])]
            )
        return shard

    def _window(self, shard: dict, frames: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> dict:
        c = self.config
        reference = shard["reference_pose"].astype(np.float64)
        latent = FaceLatent(
            np.vstack([shard["pose"][frames], reference]).astype(np.float64),
            np.vstack([shard["eyes"][frames], np.zeros(N_EYE)]).astype(np.float64),
            np.vstack([shard["dynamics"][frames], np.zeros(shard["dynamics"].shape[1])]).astype(np.float64),
        )
        if rng.random() < c.mirror_prob:
            # The reference is mirrored with the window, so the pose deltas mirror too.
            latent = mirror_latent(latent, self.basis, FRAME_SIZE)
        pose, reference = latent.pose[:-1], latent.pose[-1]
        if c.scale_jitter > 0:
            zoom = np.exp(rng.uniform(-c.scale_jitter, c.scale_jitter))
            centre = np.array([FRAME_SIZE / 2, FRAME_SIZE / 2, 0.0])
            pose[:, POSE_SHIFT] = centre + zoom * (pose[:, POSE_SHIFT] - centre)
            pose[:, POSE_SCALE] *= zoom
        if c.shift_jitter > 0:
            in_plane = slice(POSE_SHIFT.start, POSE_SHIFT.start + 2)  # tx, ty
            pose[:, in_plane] += rng.uniform(-c.shift_jitter, c.shift_jitter, 2) * reference[POSE_SCALE]
        motion = np.concatenate([pose_delta(pose, reference), latent.eyes[:-1], latent.dynamics[:-1]], axis=1)
        return {
            "motion": torch.from_numpy(motion.astype(np.float32)),
            "audio": torch.from_numpy(shard["audio"][frames].astype(np.float32)),
            "mouth_opening": torch.from_numpy(shard["mouth_opening"][frames].astype(np.float32)),
            "valid": torch.from_numpy(valid.astype(np.float32)),
        }
