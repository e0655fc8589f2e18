"""Shapes, guidance and samplers of the motion diffusion transformer (tiny configuration, CPU, seconds)."""

import pytest
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


@pytest.mark.parametrize("cached_context", [False, True])
def test_training_learns_audio_dependence_and_samplers_agree(cached_context: bool):
    """Toy task: the motion equals a linear map of the audio. After training, sampled motion follows the
    audio, guidance strengthens it, and 10 DPM++ steps land close to 50 Euler steps."""
    torch.manual_seed(0)
    config = DiTConfig(
        motion_dim=4,
        audio_dim=3,
        window=8,
        context=2,
        width=64,
        depth=2,
        heads=2,
        emotion_dim=2,
        cached_context=cached_context,
    )
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


@pytest.mark.parametrize("cached_context", [False, True])
def test_traced_sampler_gives_the_eager_numbers(cached_context: bool):
    """The compiled window sampler (TorchScript) must sample exactly what the eager sampler does, guidance
    branches included, call after call (TorchScript re-optimises its graph over the first calls)."""
    torch.manual_seed(0)
    config = DiTConfig(
        motion_dim=4,
        audio_dim=3,
        window=2,
        context=3,
        width=32,
        depth=2,
        heads=2,
        emotion_dim=2,
        cached_context=cached_context,
    )
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


def test_cached_context_equals_one_masked_pass_over_all_tokens():
    """A cached-context model (context encoded once, each step runs only the window against the context's keys and
    values) computes what one pass over context + window does with PyTorch's own attention, when the context may
    not look at the window and is modulated by its own embedding."""
    torch.manual_seed(0)
    config = DiTConfig(
        motion_dim=4, audio_dim=3, window=2, context=5, width=32, depth=2, heads=4, emotion_dim=2, cached_context=True
    )
    model = MotionDiT(config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    cond = conditions(config, 3).replace(
        has_context=torch.ones(3, dtype=torch.bool),
        context_motion=torch.randn(3, config.context, 4),
        context_audio=torch.randn(3, config.context, 3),
        gaze=torch.randn(3, 2),
        has_gaze=torch.tensor([1, 0, 1]) > 0,
    )
    x, sigma = torch.randn(3, config.window, 4), torch.tensor([0.1, 1.0, 10.0])
    with torch.no_grad():
        cached = model(x, sigma, cond)

        c = config.context
        audio = model.audio_in(torch.cat([cond.context_audio, cond.audio], 1))
        tokens = torch.cat(
            [model.motion_in(cond.context_motion) + model.segment[0], model.motion_in(x) + model.segment[1]], 1
        )
        tokens = tokens + audio + model.position
        controls = model.gaze(cond.gaze, cond.has_gaze) + model.distance(cond.distance, cond.has_distance)
        controls = controls + model.emotion(cond.emotion, cond.has_emotion)
        emb = torch.stack([controls + model.context_level, controls + model.noise_level(sigma)], 1)  # (N, 2, D)
        segment = torch.tensor([0] * c + [1] * config.window)
        blocked = torch.zeros(len(segment), len(segment), dtype=torch.bool)
        blocked[:c, c:] = True  # context queries do not see window keys
        for block in model.blocks:
            mod = block.modulation(emb)[:, segment]  # (N, L, 6D): each token its segment's modulation
            shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
            h = block.norm1(tokens) * (1 + scale1) + shift1
            tokens = tokens + gate1 * block.attn(h, h, h, attn_mask=blocked, need_weights=False)[0]
            tokens = tokens + gate2 * block.mlp(block.norm2(tokens) * (1 + scale2) + shift2)
        reference = model.final(tokens[:, c:], emb[:, 1])
    assert torch.allclose(cached, reference, atol=1e-5), (cached - reference).abs().max()
    assert cached.abs().max() > 0.1
