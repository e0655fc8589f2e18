"""Generate face-latent motion from audio with the trained motion diffusion transformer.

Audio of any length is generated window by window: each window sees the last `context` frames of the
previous one (motion and audio) so windows join without a jump. Controls map onto the model's conditions:
gaze and head distance directly, emotion as an expression offset; without controls the portrait's own
gaze and expression are the conditions, so a smiling portrait keeps smiling while it talks.
"""

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from openvasa.audio.features import n_frames_for
from openvasa.audio.frontends import get_frontend
from openvasa.errors import OpenVasaError
from openvasa.face.latent import FaceBasis, FaceLatent, gaze_to_iris_offset
from openvasa.face.track import gaussian_smooth
from openvasa.io.media import SAMPLE_RATE
from openvasa.motion.controls import MotionControls, emotion_offset
from openvasa.motion.diffusion import SAMPLERS, NoiseSchedule, guided_denoiser
from openvasa.motion.dit import DiTConfig, MotionConditions, MotionDiT
from openvasa.motion.signals import (
    GAZE,
    LOG_SCALE,
    OPENNESS,
    MotionStats,
    denormalise,
    dynamics_slice,
    normalise,
    pose_from_delta,
)

CHECKPOINT_FILE = "motion_dit.pt"
MOTION_MODELS = ("dit", "baseline")  # the learned model, and the hand-built one (openvasa.motion.baseline)
MODEL_FPS = 25.0


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


class MotionGenerator:
    """A loaded motion checkpoint. generate() turns audio into a FaceLatent sequence for one portrait."""

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        path = Path(checkpoint) if checkpoint else Path(str(resources.files("openvasa") / "assets" / CHECKPOINT_FILE))
        if not path.exists():
            raise OpenVasaError(f"motion checkpoint {path} not found (train one with `openvasa train-motion`)")
        payload = torch.load(path, map_location="cpu", weights_only=False)
        self.config = DiTConfig(**payload["dit"])
        self.model = MotionDiT(self.config)
        self.model.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
        self.model.eval()
        self.stats = MotionStats.from_dict(payload["stats"])
        self.schedule = NoiseSchedule(**payload["train"]["schedule"])
        self.frontend = get_frontend(payload["train"]["frontend"])
        # Relative models generate dynamics as offsets from the portrait's own (rest) expression.
        self.relative_dynamics = bool(payload["train"].get("relative_dynamics", False))

    @torch.no_grad()
    def generate(self, audio: np.ndarray, fps: float, reference: FaceLatent, basis: FaceBasis,
                 controls: MotionControls | None = None, seed: int = 0,
                 settings: GenerationSettings | None = None) -> FaceLatent:  # fmt: skip
        """audio: (S,) 16 kHz mono; reference: the portrait's 1-frame latent -> FaceLatent at `fps`."""
        controls, settings = controls or MotionControls(), settings or GenerationSettings()
        if settings.sampler not in SAMPLERS:
            raise OpenVasaError(f"unknown sampler {settings.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if settings.steps < 1:
            raise OpenVasaError("steps must be at least 1")
        n_out = n_frames_for(len(audio), fps, SAMPLE_RATE)
        features = self.frontend.features(audio, MODEL_FPS)  # (T, A) at the model's frame rate
        audio_n = normalise(torch.from_numpy(features).float(), self.stats.audio_mean, self.stats.audio_std)
        motion = self._sample_windows(audio_n, reference, basis, controls, seed, settings)  # (T, M)
        latent = self._to_latent(motion.numpy().astype(np.float64), reference, controls, basis.eye_mean[2:])
        latent = FaceLatent(
            gaussian_smooth(latent.pose, settings.pose_smoothing),
            latent.eyes,
            gaussian_smooth(latent.dynamics, settings.dynamics_smoothing),
        )
        return _resample(latent, MODEL_FPS, fps, n_out)

    def _conditions(self, reference: FaceLatent, basis: FaceBasis, controls: MotionControls) -> dict:
        """Normalised control tensors (1, .) and their presence flags."""
        s, k = self.stats, dynamics_slice(self.config.motion_dim)
        if controls.gaze is not None:
            iris = basis.eye_mean[2:] + np.tile(gaze_to_iris_offset(*controls.gaze), 2)
        else:
            iris = reference.eyes[0, 2:]
        gaze = ((iris[0:2] + iris[2:4]) / 2 - s.gaze_mean) / s.gaze_std
        offset = emotion_offset(controls.emotion, basis, controls.emotion_strength)
        if self.relative_dynamics:
            # Offsets from the rest face: the data's typical talking face plus the emotion; none asked, none given.
            emotion = offset / s.emotion_std
            has_emotion = torch.tensor([controls.emotion is not None])
        else:
            emotion = (reference.dynamics[0] + offset - s.motion_mean[k]) / s.emotion_std
            has_emotion = torch.ones(1, dtype=torch.bool)
        distance = np.array([-np.log(controls.distance) / s.distance_std])
        as_tensor = lambda a: torch.tensor(np.asarray(a, np.float32))[None]  # noqa: E731
        yes = torch.ones(1, dtype=torch.bool)
        return {"gaze": as_tensor(gaze), "has_gaze": yes, "distance": as_tensor(distance),
                "has_distance": yes, "emotion": as_tensor(emotion), "has_emotion": has_emotion}  # fmt: skip

    def _sample_windows(self, audio: torch.Tensor, reference: FaceLatent, basis: FaceBasis,
                        controls: MotionControls, seed: int, settings: GenerationSettings) -> torch.Tensor:  # fmt: skip
        """Normalised motion (T, M) -> denormalised (T, M), one window after the other."""
        w, c, m = self.config.window, self.config.context, self.config.motion_dim
        total = len(audio)
        padded = torch.cat([audio, torch.zeros(w, audio.shape[1])])  # the last window may run past the end
        generator = torch.Generator().manual_seed(seed)
        control = self._conditions(reference, basis, controls)
        sampler, sigmas = SAMPLERS[settings.sampler], self.schedule.sigmas(settings.steps)
        out = torch.zeros(0, m)
        for start in range(0, total, w):
            has_context = start > 0
            context_motion = out[-c:] if has_context else torch.zeros(c, m)
            context_audio = padded[start - c : start] if has_context else torch.zeros(c, audio.shape[1])
            cond = MotionConditions(
                audio=padded[None, start : start + w],
                has_audio=torch.ones(1, dtype=torch.bool),
                context_motion=context_motion[None],
                context_audio=context_audio[None],
                has_context=torch.tensor([has_context]),
                **control,
            )
            noise = torch.randn(1, w, m, generator=generator) * self.schedule.sigma_max
            window = sampler(guided_denoiser(self.model, cond, settings.cfg_audio, settings.cfg_control), noise, sigmas)
            out = torch.cat([out, window[0]])
        return denormalise(out[:total], self.stats.motion_mean, self.stats.motion_std)

    def _to_latent(self, motion: np.ndarray, reference: FaceLatent, controls: MotionControls,
                   basis_eye_mean_gaze: np.ndarray) -> FaceLatent:  # fmt: skip
        delta = motion[:, :7].copy()
        delta[:, :6] *= controls.motion_scale  # 0: a still head; lips and eyes keep moving
        # The mean head size is set exactly by the distance control; the model adds natural variation.
        lean = delta[:, LOG_SCALE] - delta[:, LOG_SCALE].mean()
        delta[:, LOG_SCALE] = -np.log(controls.distance) + controls.motion_scale * lean
        eyes = motion[:, 7:13].copy()
        # Openness is relative to the person's eye shape: rescale the data's typical openness to the portrait's.
        eyes[:, OPENNESS.start - 7 : OPENNESS.stop - 7] *= reference.eyes[0, :2] / self.stats.openness_mean
        gaze = eyes[:, GAZE.start - 7 :]
        if controls.gaze is not None:
            # Five minutes of data hold little gaze variety, so the conditioned model only leans towards a
            # requested gaze: set its mean exactly and keep the model's saccades around it.
            target = basis_eye_mean_gaze + np.tile(gaze_to_iris_offset(*controls.gaze), 2)
            gaze += target - gaze.mean(0)
        eyes[:, GAZE.start - 7 :] = np.clip(gaze, -0.5, 0.5)
        dynamics = motion[:, dynamics_slice(motion.shape[1])]
        if self.relative_dynamics:
            dynamics = dynamics + reference.dynamics[0]
        return FaceLatent(pose_from_delta(delta, reference.pose[0]), eyes, dynamics)


def _resample(latent: FaceLatent, fps_in: float, fps_out: float, n_out: int) -> FaceLatent:
    """Linear interpolation in time to n_out frames at fps_out."""
    t_in = np.arange(len(latent)) / fps_in
    t_out = np.arange(n_out) / fps_out
    interp = lambda a: np.stack([np.interp(t_out, t_in, a[:, j]) for j in range(a.shape[1])], 1)  # noqa: E731
    return FaceLatent(interp(latent.pose), interp(latent.eyes), interp(latent.dynamics))


@lru_cache(maxsize=2)
def load_generator(checkpoint: str | None = None) -> MotionGenerator:
    """One loaded generator per checkpoint and process."""
    return MotionGenerator(checkpoint)
