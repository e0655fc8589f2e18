"""A SyncNet-style lip-sync judge trained on the training people: a two-tower contrastive model of 0.2 s of
lip landmarks vs the audio around them. Scanning audio offsets gives a confidence and a best offset per clip
(the Sc / SD of VASA-1's tables).

Lips come from re-detected landmarks turned into the face latent (canonical, pose-free); audio through a
packaged front-end (Whisper states + loudness: with 14 training people, log-mel judges overfit and did not
generalise to the validation people).

    python -m openvasa.eval.sync --index out/prep/index.json   # retrain the shipped judge
"""

import argparse
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from openvasa.audio.frontends import frontend_parts
from openvasa.data.loader import split_shards
from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceBasis, FaceLatent

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass
class JudgeConfig:
    window: int = 5  # frames per window (25 fps): 0.2 s, as SyncNet
    motion_dim: int = len(lm.LIPS) * 3
    audio: str = "whisper-tiny+energy"  # front-end name (openvasa.audio.frontends)
    audio_dim: int = 388
    hidden: int = 64
    embed: int = 32
    dropout: float = 0.4
    steps: int = 1500
    clips_per_batch: int = 8
    windows_per_clip: int = 16  # windows of one clip are each other's hard negatives (other times, same voice)
    lr: float = 1e-3
    noise: float = 0.2  # motion noise, in data std: re-detected landmarks are noisier than tracked ones
    seed: int = 0


def lip_features(latent: FaceLatent, basis: FaceBasis) -> np.ndarray:
    """(T, 120) canonical lip offsets (eye distances), centred on the clip's mean: mouth shape, not identity."""
    lips = basis.expression(latent.eyes, latent.dynamics)[:, lm.LIPS].reshape(len(latent), -1)
    return (lips - lips.mean(0)).astype(np.float32)


class Tower(nn.Module):
    """(N, W, D) window -> (N, E) unit embedding: per-frame projection, temporal convolutions, mean pooling."""

    def __init__(self, in_dim: int, hidden: int, embed: int, dropout: float) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU())
        self.convs = nn.Sequential(
            nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU()
        )
        self.out = nn.Linear(hidden, embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(x).transpose(1, 2)  # (N, H, W)
        h = self.convs(h).mean(2)  # (N, H)
        return F.normalize(self.out(h), dim=-1)


class Judge(nn.Module):
    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        self.config = config
        self.motion = Tower(config.motion_dim, config.hidden, config.embed, config.dropout)
        self.audio = Tower(config.audio_dim, config.hidden, config.embed, config.dropout)
        self.log_temperature = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
        self.register_buffer("motion_std", torch.ones(config.motion_dim))

    def embed_motion(self, x: torch.Tensor) -> torch.Tensor:
        """(N, W, motion_dim) -> (N, E)."""
        return self.motion(x / self.motion_std)

    def loss(self, motion: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE over a batch of aligned windows (N, W, .)."""
        logits = self.log_temperature.exp() * self.embed_motion(motion) @ self.audio(audio).T
        target = torch.arange(len(motion))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _windows(x: np.ndarray, window: int, starts: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x[starts[:, None] + np.arange(window)])


def similarity_by_offset(
    judge: Judge, motion: np.ndarray, audio: np.ndarray, max_offset: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cosine similarity of motion windows with the audio windows `offset` frames later, for offsets in
    -max_offset..max_offset. motion: (T, Dm), audio: (T, Da). Returns (offsets, similarities)."""
    w = judge.config.window
    n = min(len(motion), len(audio))
    starts = np.arange(max_offset, n - w - max_offset + 1, stride)
    offsets = np.arange(-max_offset, max_offset + 1)
    if len(starts) == 0:
        raise ValueError(f"clip of {n} frames is too short for windows of {w} and offsets of {max_offset}")
    with torch.no_grad():
        m = judge.embed_motion(_windows(motion, w, starts))
        all_starts = np.arange(0, n - w + 1)
        a = judge.audio(_windows(audio, w, all_starts))
        sims = np.array([(m * a[starts + d]).sum(-1).mean().item() for d in offsets])
    return offsets, sims


def sync_scores(judge: Judge, lips: np.ndarray, audio: np.ndarray, max_offset: int = 15) -> dict[str, float]:
    """SyncNet-style scores of one clip. confidence: similarity at zero offset minus the median over offsets
    (how much better the audio fits as it is than misaligned); offset: the best offset in frames (positive:
    the audio fits best when taken later, i.e. the lips lead); best_confidence: at that offset."""
    offsets, sims = similarity_by_offset(judge, lips, audio, max_offset)
    median = float(np.median(sims))
    best = int(np.argmax(sims))
    return {
        "sync_confidence": float(sims[offsets == 0][0] - median),
        "sync_offset": int(offsets[best]),
        "sync_best_confidence": float(sims[best] - median),
    }


# --- training -------------------------------------------------------------------------------------------------


def load_clips(index: Path, split: str, config: JudgeConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(motion features, audio features) of every shard of a split, long enough for one window."""
    basis = FaceBasis.load()
    clips = []
    for _, z in split_shards(index, split):
        latent = FaceLatent(z["pose"], z["eyes"], z["dynamics"])
        audio = np.hstack([z[f"features_{part}"] for part in frontend_parts(config.audio)]).astype(np.float32)
        motion = lip_features(latent, basis)
        n = min(len(motion), len(audio))
        if n >= config.window + 1:
            clips.append((motion[:n], audio[:n]))
    return clips


def judge_report(judge: Judge, clips: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """One line on the judge's verdict on real clips: confidence and mean absolute best offset (ideally 0)."""
    judge.eval()
    scores = [sync_scores(judge, m, a) for m, a in clips]
    judge.train()
    confidence = np.mean([s["sync_confidence"] for s in scores])
    return f"confidence {confidence:.3f}, |offset| {np.mean([abs(s['sync_offset']) for s in scores]):.2f}"


def train_judge(config: JudgeConfig, index: Path) -> Judge:
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    clips = load_clips(index, "train", config)
    val_clips = load_clips(index, "val", config)
    if not clips:
        raise ValueError(f"no training clips in {index}")
    judge = Judge(config)
    judge.motion_std.copy_(torch.as_tensor(np.concatenate([m for m, _ in clips]).std(0) + 1e-6))
    optimiser = torch.optim.AdamW(judge.parameters(), lr=config.lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
    weights = np.array([len(m) for m, _ in clips], np.float64)
    for step in range(config.steps):
        motions, audios = [], []
        for c in rng.choice(len(clips), config.clips_per_batch, p=weights / weights.sum()):
            motion, audio = clips[c]
            starts = rng.integers(0, len(motion) - config.window, config.windows_per_clip)
            gain = rng.uniform(0.8, 1.25)  # people differ in how wide they move
            motions.append(gain * _windows(motion, config.window, starts))
            audios.append(_windows(audio, config.window, starts))
        motion_batch = torch.cat(motions)
        motion_batch = motion_batch + config.noise * judge.motion_std * torch.randn_like(motion_batch)
        loss = judge.loss(motion_batch, torch.cat(audios))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        if (step + 1) % 250 == 0:
            report = judge_report(judge, val_clips) if val_clips else ""
            log.info("step %d loss %.3f; validation people: %s", step + 1, loss.item(), report)
    return judge.eval()


JUDGE_PATH = ASSETS / "sync_judge.pt"


def save_judge(judge: Judge, path: Path) -> None:
    torch.save({"config": asdict(judge.config), "state_dict": judge.state_dict()}, path)


def load_judge(path: Path = JUDGE_PATH) -> Judge:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    judge = Judge(JudgeConfig(**payload["config"]))
    judge.load_state_dict(payload["state_dict"])
    return judge.eval()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("out/prep/index.json"))
    parser.add_argument("--out", type=Path, help="default: the shipped asset")
    args = parser.parse_args()
    torch.set_num_threads(2)
    judge = train_judge(JudgeConfig(), args.index)
    save_judge(judge, args.out or JUDGE_PATH)
    for split in ("train", "val"):
        log.info("%s people: %s", split, judge_report(judge, load_clips(args.index, split, judge.config)))


if __name__ == "__main__":
    main()
