"""Train the motion diffusion transformer on prep shards.

    openvasa train-motion --index out/prep/index.json --out out/motion [--steps 20000]
    accelerate launch --num_processes 2 -m openvasa.tools.train_motion --index ... --out ...   # several processes

CPU by default; `accelerate` handles several processes or GPUs. The run is resumable (out/last.pt), logs
to TensorBoard (out/logs) and writes the shippable checkpoint (weights in fp16 + configs + statistics) to
out/motion_dit.pt.
"""

import argparse
import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from openvasa.data.loader import MotionWindows, WindowConfig
from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceBasis
from openvasa.motion.checkpoint import MotionCheckpoint
from openvasa.motion.diffusion import NoiseSchedule, guided_denoiser, sample_dpmpp_2m, training_loss
from openvasa.motion.dit import PRESETS, DiTConfig, MotionConditions, MotionDiT
from openvasa.motion.signals import N_FIXED, MotionStats, controls_from_motion, dynamics_slice, normalise

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    index: str = "out/prep/index.json"
    frontend: str = "whisper-tiny"
    preset: str = "small"
    window: int = 50
    context: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    steps: int = 20000
    warmup_steps: int = 500
    val_every: int = 1000
    save_every: int = 1000
    num_workers: int = 0  # windows are cut from shards cached in memory: workers only add overhead
    seed: int = 0
    dropout: float = 0.1
    drop_audio: float = 0.1  # condition dropout, for classifier-free guidance
    drop_context: float = 0.15  # the first window of a generation has no context
    drop_control: float = 0.5  # gaze, distance and emotion are each optional at generation time
    mirror_prob: float = 0.5
    scale_jitter: float = 0.05
    velocity_weight: float = 1.0
    lip_weight: float = 1.0
    relative_dynamics: bool = True  # see WindowConfig
    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)


def window_config(config: TrainConfig, split: str, augment: bool) -> WindowConfig:
    return WindowConfig(
        window=config.window,
        context=config.context,
        frontend=config.frontend,
        split=split,
        seed=config.seed,
        mirror_prob=config.mirror_prob if augment else 0.0,
        scale_jitter=config.scale_jitter if augment else 0.0,
        cache_shards=True,
        relative_dynamics=config.relative_dynamics,
    )


def collect_stats(config: TrainConfig) -> tuple[MotionStats, np.ndarray]:
    """Normalisation statistics of the training windows, and a linear readout (K + 1,) from dynamics to
    mouth opening used by validation metrics."""
    windows = list(MotionWindows(config.index, window_config(config, "train", augment=False)))
    if not windows:
        raise ValueError(f"no training windows in {config.index}")
    c = config.context
    motion = np.concatenate([w["motion"][c:].numpy() for w in windows])
    audio = np.concatenate([w["audio"][c:].numpy() for w in windows])
    mouth = np.concatenate([w["mouth_opening"][c:].numpy() for w in windows])
    dynamics = motion[:, dynamics_slice(motion.shape[1])]
    design = np.hstack([dynamics, np.ones((len(dynamics), 1))])
    readout = np.linalg.lstsq(design, mouth, rcond=None)[0]
    return MotionStats.fit(motion, audio, config.window), readout


def lip_map(stats: MotionStats, motion_dim: int) -> torch.Tensor:
    """(M, 3 * 40) linear map from normalised motion to the lip landmarks' canonical offsets, scaled so that
    the lips of the training data have unit RMS (only dynamics move the lips; pose and eyes map to 0)."""
    basis = FaceBasis.load()
    lips = basis.dynamics_basis.reshape(lm.N_LANDMARKS, 3, -1)[lm.LIPS].reshape(-1, basis.n_dynamics)  # (120, K)
    k = dynamics_slice(motion_dim)
    mapping = np.zeros((motion_dim, lips.shape[0]))
    mapping[k] = (lips * stats.motion_std[k]).T
    # RMS of the lips' motion when each code varies independently with its data variance (unit, normalised).
    scale = np.sqrt(np.sum(mapping**2) / lips.shape[0])
    return torch.as_tensor(mapping / scale, dtype=torch.float32)


def batch_conditions(
    batch: dict, stats: MotionStats, config: TrainConfig, generator: torch.Generator, train: bool
) -> tuple[torch.Tensor, MotionConditions]:
    """Normalised clean motion (N, T, M) to denoise, and its conditions with training-time dropout."""
    c = config.context
    motion, audio = batch["motion"], batch["audio"]
    n = len(motion)
    controls = controls_from_motion(motion[:, c:], stats)
    motion_n = normalise(motion, stats.motion_mean, stats.motion_std)
    audio_n = normalise(audio, stats.audio_mean, stats.audio_std)

    def keep(p: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) >= (p if train else 0.0)

    cond = MotionConditions(
        audio=audio_n[:, c:],
        has_audio=keep(config.drop_audio),
        context_motion=motion_n[:, :c],
        context_audio=audio_n[:, :c],
        has_context=keep(config.drop_context) & (batch["valid"][:, :c] > 0).all(1),
        gaze=controls.gaze,
        has_gaze=keep(config.drop_control),
        distance=controls.distance,
        has_distance=keep(config.drop_control),
        emotion=controls.emotion,
        has_emotion=keep(config.drop_control),
    )
    return motion_n[:, c:], cond


def make_model(config: TrainConfig, motion_dim: int, audio_dim: int) -> MotionDiT:
    preset = PRESETS[config.preset]
    dit = DiTConfig(
        **{
            **asdict(preset),
            "motion_dim": motion_dim,
            "audio_dim": audio_dim,
            "window": config.window,
            "context": config.context,
            "emotion_dim": motion_dim - N_FIXED,
            "dropout": config.dropout,
        }
    )
    return MotionDiT(dit)


@torch.no_grad()
def validate(model: MotionDiT, stats: MotionStats, readout: np.ndarray, config: TrainConfig) -> dict[str, float]:
    """Loss and quality on the validation identities: mouth-opening correlation of 10-step samples with the
    real mouth, and head-motion intensity relative to the real one."""
    model.eval()
    generator = torch.Generator().manual_seed(1234)
    windows = list(MotionWindows(config.index, window_config(config, "val", augment=False)))
    if not windows:
        model.train()
        return {}
    batch = {k: torch.stack([w[k] for w in windows]) for k in ("motion", "audio", "valid", "mouth_opening")}
    clean, cond = batch_conditions(batch, stats, config, generator, train=False)
    lips = lip_map(stats, clean.shape[-1])
    loss = training_loss(
        model, clean, cond, config.schedule, config.velocity_weight, lips, config.lip_weight, generator
    ).item()
    # Generate with the audio only (controls absent, context real), as in audio-driven use.
    off = torch.zeros(len(clean), dtype=torch.bool)
    cond = cond.replace(has_gaze=off, has_distance=off, has_emotion=off)
    noise = torch.randn(clean.shape, generator=generator) * config.schedule.sigma_max
    sample = sample_dpmpp_2m(guided_denoiser(model, cond), noise, config.schedule.sigmas(10))
    motion = sample.numpy() * stats.motion_std + stats.motion_mean  # (N, T, M)
    real = batch["motion"][:, config.context :].numpy()
    k = dynamics_slice(motion.shape[-1])
    mouth = motion[..., k] @ readout[:-1] + readout[-1]
    real_mouth = batch["mouth_opening"][:, config.context :].numpy()
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(mouth, real_mouth, strict=True) if a.std() > 0 and b.std() > 0]
    model.train()
    return {
        "val/loss": loss,
        "val/mouth_corr": float(np.mean(corr)) if corr else float("nan"),
        "val/pose_std_ratio": float(motion[..., :3].std(1).mean() / (real[..., :3].std(1).mean() + 1e-9)),
    }


def shippable(
    model: MotionDiT, config: TrainConfig, stats: MotionStats, readout: np.ndarray, step: int
) -> MotionCheckpoint:
    """What generation needs, weights in fp16 (small enough to ship in the repo)."""
    return MotionCheckpoint(
        dit=model.config.to_dict(),
        train={**asdict(config), "schedule": asdict(config.schedule)},
        stats=stats.to_dict(),
        state_dict={k: v.detach().to(torch.float16) for k, v in model.state_dict().items()},
        mouth_readout=readout.tolist(),
        step=step,
    )


def train_motion(config: TrainConfig, out_dir: Path) -> Path:
    """Train (or resume) and return the path of the shippable checkpoint."""
    from accelerate import Accelerator

    out_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(log_with="tensorboard", project_dir=str(out_dir / "logs"))
    torch.manual_seed(config.seed + accelerator.process_index)
    stats, readout = collect_stats(config)
    sample = next(iter(MotionWindows(config.index, window_config(config, "train", augment=False))))
    model = make_model(config, sample["motion"].shape[1], sample["audio"].shape[1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = lambda s: min(1.0, (s + 1) / config.warmup_steps)  # noqa: E731
    cosine = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: warmup(s) * (0.1 + 0.9 * cosine(s)))
    step = 0
    resume = out_dir / "last.pt"
    if resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        log.info("resumed from step %d", step)
    model, optimiser = accelerator.prepare(model, optimiser)
    # The config goes to config.json beside the logs (plain JSON: readable without TensorBoard).
    accelerator.init_trackers("motion")
    if accelerator.is_main_process:
        (out_dir / "config.json").write_text(
            json.dumps({**asdict(config), "schedule": asdict(config.schedule)}, indent=1)
        )
    dataset = MotionWindows(
        config.index, window_config(config, "train", augment=True), accelerator.process_index, accelerator.num_processes
    )
    loader = DataLoader(dataset, batch_size=config.batch_size, num_workers=config.num_workers, drop_last=True)
    generator = torch.Generator().manual_seed(config.seed * 1000 + accelerator.process_index)

    def batches():
        for epoch in itertools.count(step):  # a new window layout every epoch; infinite, steps bound it
            dataset.set_epoch(epoch)
            yield from loader

    shipped = out_dir / "motion_dit.pt"
    lips = lip_map(stats, sample["motion"].shape[1])
    for batch in batches():
        if step >= config.steps:
            break
        clean, cond = batch_conditions(batch, stats, config, generator, train=True)
        loss = training_loss(
            model, clean, cond, config.schedule, config.velocity_weight, lips, config.lip_weight, generator
        )
        optimiser.zero_grad()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        scheduler.step()
        step += 1
        if step % 50 == 0:
            accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]}, step=step)
        last = step == config.steps
        if accelerator.is_main_process and (step % config.val_every == 0 or last):
            metrics = validate(accelerator.unwrap_model(model), stats, readout, config)
            accelerator.log(metrics, step=step)
            log.info(
                "step %d loss %.4f %s", step, loss.item(), json.dumps({k: round(v, 4) for k, v in metrics.items()})
            )
        if accelerator.is_main_process and (step % config.save_every == 0 or last):
            plain = accelerator.unwrap_model(model)
            shippable(plain, config, stats, readout, step).save(shipped)
            torch.save(
                {
                    "model": plain.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": step,
                },
                resume,
            )
    accelerator.end_training()
    return shipped


def parse_config(argv: list[str] | None = None) -> tuple[TrainConfig, Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/motion"), help="run directory (resumes if present)")
    defaults = TrainConfig()
    for name, value in asdict(defaults).items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=f"default {value}")
        elif isinstance(value, int | float | str):
            parser.add_argument(flag, type=type(value), default=value, help=f"default {value}")
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    return TrainConfig(**{k: v for k, v in args.items()}), out


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config, out = parse_config(argv)
    print(train_motion(config, out))


if __name__ == "__main__":
    main()
