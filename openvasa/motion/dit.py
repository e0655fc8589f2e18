"""Motion diffusion transformer (after VASA-1 and DiT): denoises a window of face-latent motion given the
audio of that window, the previous window (motion + audio) as context, and optional control signals.

One flat file in the DiT style: embedders, a transformer block with adaLN-Zero modulation, the final layer,
and size presets. The model knows nothing of noise schedules (see `openvasa.motion.diffusion`).

Shapes: N batch, T window frames, C context frames, M motion dims, A audio dims, D model width.
"""

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class DiTConfig:
    motion_dim: int = 53  # pose (7) + eyes (6) + dynamics (40)
    audio_dim: int = 384
    window: int = 50  # frames generated per window (2 s at 25 fps)
    context: int = 10  # frames of the previous window given as context
    width: int = 256
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    emotion_dim: int = 40  # an offset in dynamics space
    dropout: float = 0.0
    # Context tokens attend only to each other and are modulated without the noise level, so they are encoded
    # once per window and every denoising step runs only the window's tokens against their cached keys and
    # values (a live 2-frame window with 12 frames of context, 10 steps: 8.8 ms instead of 11.1 ms on one core; a
    # 4-frame window costs about as much as a 2-frame one: with so few tokens, the count of operations costs more
    # than their arithmetic).
    cached_context: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x: (N, L, D); shift, scale: (N, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class NoiseLevelEmbedder(nn.Module):
    """log(sigma) -> (N, D) through sinusoidal features and an MLP."""

    def __init__(self, width: int, frequencies: int = 128) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=sigma.device) / half)
        angles = (torch.log(sigma) / 4)[:, None] * freqs[None] * 100
        return self.mlp(torch.cat([torch.cos(angles), torch.sin(angles)], -1))


class ConditionEmbedder(nn.Module):
    """Optional vector condition -> (N, D). A row whose mask is 0 gets a learned "absent" embedding, which
    is also what condition dropout in training and the unconditional branch of guidance use."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(dim, width), nn.SiLU(), nn.Linear(width, width))
        self.absent = nn.Parameter(torch.zeros(width))

    def forward(self, value: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """value: (N, dim); present: (N,) bool."""
        return torch.where(present[:, None], self.proj(value), self.absent[None])


class Block(nn.Module):
    """Pre-norm transformer block whose norms are modulated by the conditioning vector (adaLN-Zero)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: (N, L, D); cond: (N, D)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond).chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift1, scale1)
        x = x + gate1[:, None] * self.attn(h, h, h, need_weights=False)[0]
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))

    def attend(
        self, x: torch.Tensor, modulation: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The block with the attention's weights applied by hand, so that queries can meet cached keys and values.
        x: (N, L, D); modulation: (N, 6D), what self.modulation makes of the conditioning vector; past: keys and
        values (N, H, P, D / H) of earlier tokens, attended to as well. Returns the new x and this call's own keys
        and values. Written out in few operations: with a handful of tokens, their count is the cost."""
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        n, length, width = h.shape
        heads = self.attn.num_heads
        q, k, v = (
            torch.nn.functional.linear(h, self.attn.in_proj_weight, self.attn.in_proj_bias)
            .view(n, length, 3, heads, width // heads)
            .permute(2, 0, 3, 1, 4)
        )  # each (N, H, L, D / H)
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        weights = (q @ keys.transpose(2, 3) * (width // heads) ** -0.5).softmax(-1)  # (N, H, L, P + L)
        if self.training and self.attn.dropout:
            weights = torch.nn.functional.dropout(weights, self.attn.dropout)
        x = x + gate1 * self.attn.out_proj((weights @ values).transpose(1, 2).reshape(n, length, width))
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2), (k, v)


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(cond).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


@dataclass
class MotionConditions:
    """Everything the model is conditioned on besides the noise level. Missing signals are masked out.

    audio: (N, T, A); context_motion: (N, C, M) and context_audio: (N, C, A) of the previous window;
    has_context: (N,) bool; gaze: (N, 2) and has_gaze; distance: (N, 1) and has_distance;
    emotion: (N, E) and has_emotion; has_audio: (N,) bool (False for the audio-free guidance branch).
    """

    audio: torch.Tensor
    has_audio: torch.Tensor
    context_motion: torch.Tensor
    context_audio: torch.Tensor
    has_context: torch.Tensor
    gaze: torch.Tensor
    has_gaze: torch.Tensor
    distance: torch.Tensor
    has_distance: torch.Tensor
    emotion: torch.Tensor
    has_emotion: torch.Tensor

    def replace(self, **changes: torch.Tensor) -> "MotionConditions":
        return MotionConditions(**{**self.__dict__, **changes})

    @staticmethod
    def concat(items: list["MotionConditions"]) -> "MotionConditions":
        """Stack several condition sets along the batch (one forward pass for all guidance branches)."""
        return MotionConditions(**{k: torch.cat([getattr(c, k) for c in items]) for k in items[0].__dict__})


class MotionDiT(nn.Module):
    """Predicts the clean motion window from a noisy one. forward(x (N, T, M), sigma (N,), conditions)."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        d = config.width
        self.motion_in = nn.Linear(config.motion_dim, d)
        self.audio_in = nn.Linear(config.audio_dim, d)
        self.absent_audio = nn.Parameter(torch.zeros(d))
        self.absent_context = nn.Parameter(torch.zeros(d))
        self.position = nn.Parameter(torch.zeros(1, config.context + config.window, d))
        self.segment = nn.Parameter(torch.zeros(2, d))  # 0: context frame, 1: frame to generate
        if config.cached_context:
            self.context_level = nn.Parameter(torch.zeros(d))  # stands for the noise level of the clean context
        self.noise_level = NoiseLevelEmbedder(d)
        self.gaze = ConditionEmbedder(2, d)
        self.distance = ConditionEmbedder(1, d)
        self.emotion = ConditionEmbedder(config.emotion_dim, d)
        self.blocks = nn.ModuleList(
            [Block(d, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)]
        )
        self.final = FinalLayer(d, config.motion_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.segment, std=0.02)
        # adaLN-Zero: every block starts as the identity, the output as zero.
        for block in self.blocks:
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        nn.init.zeros_(self.final.modulation[-1].weight)
        nn.init.zeros_(self.final.modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: MotionConditions) -> torch.Tensor:
        """x: (N, T, M) noisy (preconditioned) motion; sigma: (N,) -> (N, T, M)."""
        return self.denoise_prepared(x, sigma, self.prepare(cond))

    def prepare(self, cond: MotionConditions) -> "PreparedConditions":
        """What the denoising steps of one window share: audio and context tokens, the controls' embeddings and,
        with cached_context, the context's keys and values in every block."""
        audio = torch.cat([cond.context_audio, cond.audio], 1)  # (N, C + T, A)
        audio_tokens = torch.where(cond.has_audio[:, None, None], self.audio_in(audio), self.absent_audio)
        context = torch.where(
            cond.has_context[:, None, None], self.motion_in(cond.context_motion), self.absent_context
        )  # (N, C, D)
        controls = [
            self.gaze(cond.gaze, cond.has_gaze),
            self.distance(cond.distance, cond.has_distance),
            self.emotion(cond.emotion, cond.has_emotion),
        ]  # each (N, D)
        prepared = PreparedConditions(audio_tokens, context + self.segment[0], controls)
        if self.config.cached_context:
            c = self.config.context
            tokens = prepared.context + audio_tokens[:, :c] + self.position[:, :c]
            emb = self.context_level + sum(controls)
            for block in self.blocks:
                tokens, keys_values = block.attend(tokens, block.modulation(emb))
                prepared.past.append(keys_values)
            prepared.window = self.segment[1] + audio_tokens[:, c:] + self.position[:, c:]  # what every step adds
        return prepared

    def denoise_prepared(self, x: torch.Tensor, sigma: torch.Tensor, prepared: "PreparedConditions") -> torch.Tensor:
        """x: (N, T, M); sigma: (N,) -> (N, T, M), with the conditions from prepare()."""
        c = self.config.context
        emb = self.noise_level(sigma)  # (N, D)
        for control in prepared.controls:
            emb = emb + control
        if self.config.cached_context:
            window = self.motion_in(x) + prepared.window  # (N, T, D)
            for block, past in zip(self.blocks, prepared.past, strict=True):
                window = block.attend(window, block.modulation(emb), past)[0]
            return self.final(window, emb)
        window = self.motion_in(x) + self.segment[1]  # (N, T, D)
        tokens = torch.cat([prepared.context, window], 1) + prepared.audio + self.position
        for block in self.blocks:
            tokens = block(tokens, emb)
        return self.final(tokens[:, c:], emb)


@dataclass
class PreparedConditions:
    audio: torch.Tensor  # (N, C + T, D) audio tokens
    context: torch.Tensor  # (N, C, D) context motion tokens with their segment embedding
    controls: list[torch.Tensor]  # (N, D) embeddings of gaze, distance and emotion
    # cached_context only:
    past: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # per block, the context's keys, values
    window: torch.Tensor | None = None  # (N, T, D) the window's tokens less their motion


PRESETS = {
    "tiny": DiTConfig(width=32, depth=2, heads=2, window=8, context=2),
    "compact": DiTConfig(width=128, depth=4, heads=4),
    "compact-cached": DiTConfig(width=128, depth=4, heads=4, cached_context=True),  # live sessions' models
    "small": DiTConfig(width=128, depth=6, heads=4),
    "base": DiTConfig(width=256, depth=8, heads=4),
}
