"""Shapes, guidance and samplers of the motion diffusion transformer (tiny configuration, CPU, seconds)."""

import torch

from openvasa.motion.diffusion import (
    NoiseSchedule,
    guided_denoiser,
    sample_dpmpp_2m,
    sample_euler,
    traced_window_sampler,
    training_loss,
)
from openvasa.motion.dit import PRESETS, DiTConfig, MotionConditions, MotionDiT


def conditions(config: DiTConfig, n: int, audio: torch.Tensor | None = None) -> MotionConditions:
    yes, no = torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    return MotionConditions(
        audio=torch.randn(n, config.window, config.audio_dim) if audio is None else audio,
        has_audio=yes,
        context_motion=torch.zeros(n, config.context, config.motion_dim),
        context_audio=torch.zeros(n, config.context, config.audio_dim),
        has_context=no,
        gaze=torch.zeros(n, 2),
        has_gaze=no,
        distance=torch.ones(n, 1),
        has_distance=no,
        emotion=torch.zeros(n, config.emotion_dim),
        has_emotion=no,
    )


def test_forward_shapes_and_zero_init():
    config = PRESETS["tiny"]
    model = MotionDiT(config)
    x = torch.randn(3, config.window, config.motion_dim)
    out = model(x, torch.ones(3), conditions(config, 3))
    assert out.shape == x.shape
    assert torch.all(out == 0)  # adaLN-Zero: the untrained model predicts zeros


def test_training_learns_audio_dependence_and_samplers_agree():
    """Toy task: the motion equals a linear map of the audio. After training, sampled motion follows the
    audio, guidance strengthens it, and 10 DPM++ steps land close to 50 Euler steps."""
    torch.manual_seed(0)
    config = DiTConfig(motion_dim=4, audio_dim=3, window=8, context=2, width=64, depth=2, heads=2, emotion_dim=2)
    model = MotionDiT(config)
    mapping = torch.randn(3, 4)
    schedule = NoiseSchedule()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(400):
        audio = torch.randn(32, config.window, 3)
        cond = conditions(config, 32, audio)
        cond = cond.replace(has_audio=torch.rand(32) > 0.1)  # condition dropout
        loss = training_loss(model, audio @ mapping, cond, schedule)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    audio = torch.randn(4, config.window, 3)
    target = audio @ mapping
    cond = conditions(config, 4, audio)
    with torch.no_grad():
        noise = torch.randn(4, config.window, 4, generator=torch.Generator().manual_seed(1))
        fast = sample_dpmpp_2m(guided_denoiser(model, cond), noise * schedule.sigma_max, schedule.sigmas(10))
        slow = sample_euler(guided_denoiser(model, cond), noise * schedule.sigma_max, schedule.sigmas(50))
        guided = sample_dpmpp_2m(
            guided_denoiser(model, cond, cfg_audio=1.0), noise * schedule.sigma_max, schedule.sigmas(10)
        )
    error = lambda x: torch.mean((x - target) ** 2).item()  # noqa: E731
    print(f"MSE to target: dpm++ 10 steps {error(fast):.3f}, euler 50 {error(slow):.3f}, guided {error(guided):.3f}")
    assert error(fast) < 0.3 * target.var().item()
    assert torch.mean((fast - slow) ** 2).item() < 0.1 * target.var().item()


def test_traced_sampler_gives_the_eager_numbers():
    """The compiled window sampler (TorchScript) must sample exactly what the eager sampler does, guidance
    branches included, call after call (TorchScript re-optimises its graph over the first calls)."""
    torch.manual_seed(0)
    config = DiTConfig(motion_dim=4, audio_dim=3, window=2, context=3, width=32, depth=2, heads=2, emotion_dim=2)
    model = MotionDiT(config).eval()
    for p in model.parameters():  # an untrained adaLN-Zero model predicts zeros: give it weights
        torch.nn.init.normal_(p, std=0.2)
    schedule = NoiseSchedule()
    sampler = traced_window_sampler(model, "dpmpp_2m", schedule.sigmas(6), cfg_audio=0.5, cfg_control=0.3)
    for i in range(5):
        flag = torch.tensor([i % 2 == 0])  # flags are data, not constants of the trace
        cond = conditions(config, 1).replace(has_context=torch.ones(1, dtype=torch.bool), has_audio=flag)
        cond = cond.replace(context_motion=torch.randn(1, config.context, 4), gaze=torch.randn(1, 2), has_gaze=~flag)
        noise = torch.randn(1, config.window, 4) * schedule.sigma_max
        with torch.no_grad():
            eager = sample_dpmpp_2m(guided_denoiser(model, cond, 0.5, 0.3), noise, schedule.sigmas(6))
        traced = sampler(noise, cond)
        assert torch.equal(traced, eager), f"call {i}"
        assert traced.abs().max() > 0


def test_one_frame_windows_have_a_finite_loss():
    config = DiTConfig(motion_dim=4, audio_dim=3, window=1, context=3, width=32, depth=2, heads=2, emotion_dim=2)
    loss = training_loss(MotionDiT(config), torch.randn(5, 1, 4), conditions(config, 5), NoiseSchedule())
    assert torch.isfinite(loss)
