"""How motion is sampled (steps, guidance, smoothing): apart from the model, so that callers can set it without
importing torch."""

from dataclasses import dataclass


@dataclass
class GenerationSettings:
    steps: int = 10
    sampler: str = "dpmpp_2m"
    cfg_audio: float = 0.35  # tuned on the validation people: natural blink rate, best lip error
    cfg_control: float = 0.0
    # Gaussian sigmas in frames. Samples carry frame-to-frame noise of about a tenth of the data's std, which
    # tripled the head's frame-to-frame motion (real: 0.32 deg/frame) and shook the lips; the training data's
    # pose was smoothed with sigma 1 too. Eyes are left as sampled: smoothing them erases blinks.
    pose_smoothing: float = 1.5
    dynamics_smoothing: float = 1.0
    causal_smoothing: bool = False  # smooth as a live stream must (no future frames): same output as a session
    # A TorchScript-traced sampler: the same numbers, 2.4x faster per window and free of the GIL once traced,
    # but tracing takes seconds up front (more with many steps), so only live sessions use it.
    compiled: bool = False


# The settings a user may set from the command line: (type, help); the defaults are the dataclass's.
SETTING_HELP = {
    "steps": (int, f"diffusion sampling steps (default {GenerationSettings.steps}; 50 is slower)"),
    "cfg_audio": (float, f"classifier-free guidance on the audio (default {GenerationSettings.cfg_audio}; 0 = off)"),
}
