"""Generate face-latent motion from audio with the trained motion diffusion transformer.

Audio of any length is generated window by window: each window sees the last `context` frames of the
previous one (motion and audio) so windows join without a jump. Controls map onto the model's conditions:
gaze and head distance directly, emotion as an expression offset; without controls the portrait's own
gaze and expression are the conditions, so a smiling portrait keeps smiling while it talks.
"""

from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch

from openvasa.audio.features import n_frames_for
from openvasa.audio.frontends import get_frontend, silence_features
from openvasa.errors import OpenVasaError
from openvasa.face.latent import (
    EYE_IRIS,
    EYE_OPEN,
    POSE_ANGLES,
    POSE_SHIFT,
    YAW,
    FaceBasis,
    FaceLatent,
    gaze_to_iris_offset,
)
from openvasa.face.track import gaussian_smooth
from openvasa.motion.baseline import REST_OPENING, MouthModel
from openvasa.motion.blinks import BlinkCalibration, Blinks
from openvasa.motion.checkpoint import MotionCheckpoint, model_features
from openvasa.motion.controls import MotionControls, emotion_eye_openness, emotion_offset
from openvasa.motion.diffusion import (
    SAMPLERS,
    NoiseSchedule,
    WindowSampler,
    sample_window,
    traced_window_sampler,
)
from openvasa.motion.dit import DiTConfig, MotionConditions, MotionDiT
from openvasa.motion.head import HeadCalibration, HeadRange, bound_turn
from openvasa.motion.mouth_regression import LiveSteering, MouthRegression
from openvasa.motion.settings import GenerationSettings
from openvasa.motion.signals import (
    EYES,
    GAZE,
    LOG_SCALE,
    OPENNESS,
    POSE,
    MotionStats,
    denormalise,
    dynamics_slice,
    mean_iris,
    normalise,
    pose_from_delta,
)
from openvasa.units import FPS, SAMPLE_RATE


class MotionGenerator:
    """A loaded motion checkpoint. generate() turns audio into a FaceLatent sequence for one portrait."""

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        saved = MotionCheckpoint.load(checkpoint)
        self.config = DiTConfig(**saved.dit)
        self.model = MotionDiT(self.config)
        self.model.load_state_dict({k: v.float() for k, v in saved.state_dict.items()})
        self.model.eval()
        self.stats = MotionStats.from_dict(saved.stats)
        self.schedule = NoiseSchedule(**saved.train["schedule"])
        self.frontend = get_frontend(saved.train["frontend"])
        # Relative models generate dynamics as offsets from the portrait's own (rest) expression.
        self.relative_dynamics = bool(saved.train.get("relative_dynamics", False))
        # Loudness (the energy front-end's first column) gates speech: in silence the face listens.
        parts = saved.train["frontend"].split("+")
        self.loudness_column = -4 if parts[-1].startswith("energy") else None
        # Which of the model's eye dips are blinks (openvasa.tools.calibrate); None: all left as sampled.
        self.blink_calibration = (
            BlinkCalibration.from_dict(saved.blink_calibration) if saved.blink_calibration is not None else None
        )
        # How far the head wanders (openvasa.tools.calibrate); None: as sampled.
        self.head_calibration = (
            HeadCalibration.from_dict(saved.head_calibration) if saved.head_calibration is not None else None
        )
        # The mouth is steered towards a linear read-out of the audio (openvasa.tools.calibrate); None: as sampled.
        self.mouth_regression = (
            MouthRegression.from_dict(saved.mouth_regression) if saved.mouth_regression is not None else None
        )

    def rest_motion(self, reference: FaceLatent) -> np.ndarray:
        """(M,) the motion vector of the portrait as it is: no pose change, its eyes, its expression."""
        m = self.config.motion_dim
        rest = np.zeros(m)
        rest[OPENNESS] = self.stats.openness_mean  # to_latent rescales the data's openness to the portrait's
        rest[GAZE] = reference.eyes[0, EYE_IRIS]
        if not self.relative_dynamics:
            rest[dynamics_slice(m)] = reference.dynamics[0]
        return rest.astype(np.float32)

    @lru_cache(maxsize=8)  # noqa: B019 (one generator per checkpoint lives for the process)
    def window_sampler(
        self, sampler: str, steps: int, cfg_audio: float, cfg_control: float, compiled: bool
    ) -> WindowSampler:
        """The sampler of one window, shared by every stream of this model with these settings."""
        sigmas = self.schedule.sigmas(steps)
        if compiled:
            return traced_window_sampler(self.model, sampler, sigmas, cfg_audio, cfg_control)
        return partial(sample_window, self.model, sampler, sigmas, cfg_audio, cfg_control)

    def audio_features(self, audio: np.ndarray) -> np.ndarray:
        """(T, A) features of 16 kHz audio at the model's frame rate, and the features of silence that the first
        window's context needs (cached), so that both can be computed ahead, e.g. while a portrait is analysed."""
        return model_features(self.frontend.name, self.config.context, audio)

    def silence_features(self, frames: int) -> np.ndarray:
        """(frames, A) audio features of silence."""
        return silence_features(self.frontend.name, frames, FPS)

    def conditions(self, reference: FaceLatent, basis: FaceBasis, controls: MotionControls) -> dict:
        """Normalised control tensors (1, .) and their presence flags."""
        s, k = self.stats, dynamics_slice(self.config.motion_dim)
        if controls.gaze is not None:
            iris = basis.eye_mean[EYE_IRIS] + np.tile(gaze_to_iris_offset(*controls.gaze), 2)
        else:
            iris = reference.eyes[0, EYE_IRIS]
        gaze = (mean_iris(iris) - s.gaze_mean) / s.gaze_std
        # The emotion itself is not a condition: the model learnt window-mean expressions of five minutes of calm
        # talking, a preset lies 4-8 of their std away, and the model ignored it (happy and sad came out 0.0005 eye
        # distances apart at the mouth corners, for 0.08 asked). The condition is the portrait's talking face; the
        # emotion is added to the generated expression (MotionStream.to_latent), so the lips move as they would.
        if self.relative_dynamics:
            # Offsets from the rest face: the data's typical talking face; none asked, none given.
            emotion = np.zeros(len(s.emotion_std))
            has_emotion = torch.tensor([controls.emotion is not None])
        else:
            emotion = (reference.dynamics[0] - s.motion_mean[k]) / s.emotion_std
            has_emotion = torch.ones(1, dtype=torch.bool)
        distance = np.array([-np.log(controls.distance) / s.distance_std])
        as_tensor = lambda a: torch.tensor(np.asarray(a, np.float32))[None]  # noqa: E731
        yes = torch.ones(1, dtype=torch.bool)
        return {
            "gaze": as_tensor(gaze),
            "has_gaze": yes,
            "distance": as_tensor(distance),
            "has_distance": yes,
            "emotion": as_tensor(emotion),
            "has_emotion": has_emotion,
        }

    def generate(
        self,
        audio: np.ndarray,
        fps: float,
        reference: FaceLatent,
        basis: FaceBasis,
        controls: MotionControls | None = None,
        seed: int = 0,
        settings: GenerationSettings | None = None,
        rest_opening: float = 0.0,
        features: np.ndarray | None = None,
    ) -> FaceLatent:
        """audio: (S,) 16 kHz mono; reference: the portrait's 1-frame latent; rest_opening: the portrait's own
        inner-lip opening (eye distances), closed at rest; features: audio_features(audio) when already computed
        -> FaceLatent at `fps`."""
        stream = MotionStream(self, reference, basis, controls, seed, settings, rest_opening)
        n_out = n_frames_for(len(audio), fps, SAMPLE_RATE)
        features = self.audio_features(audio) if features is None else features
        latent = stream.smooth(stream.to_latent(stream.sample_all(features), features), whole=True)
        if self.mouth_regression is not None:
            latent = self.mouth_regression.steer(latent, features, stream.speaking)
        return _resample(latent, FPS, fps, n_out)


class MotionStream:
    """Generation for one portrait, window after window: the state a window needs from the previous ones
    (context motion and audio, the random generator, running means, smoothing). Offline `generate` and the
    live session (openvasa.stream) both run on it."""

    RUNNING_MEAN_FRAMES = 100.0  # time constant of the running means that the gaze and distance controls fix
    LISTEN_FRAMES = 25.0  # silence relaxes the expression with this time constant (frames)...
    LISTEN_RELAX = 0.8  # ...by this much: some expression stays, so a listening face is not frozen
    OPEN_START_FRAMES = (4, 6)  # the eyes hold the portrait's opening this many frames, then hand over in as many
    POSE_START_FRAMES = 12  # the head eases from the portrait's pose to the model's over this many frames

    def __init__(
        self,
        generator: MotionGenerator,
        reference: FaceLatent,
        basis: FaceBasis,
        controls: MotionControls | None = None,
        seed: int = 0,
        settings: GenerationSettings | None = None,
        rest_opening: float = 0.0,
    ) -> None:
        self.model, self.reference, self.basis = generator, reference, basis
        self.controls, self.settings = controls or MotionControls(), settings or GenerationSettings()
        if self.settings.sampler not in SAMPLERS:
            raise OpenVasaError(f"unknown sampler {self.settings.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.settings.steps < 1:
            raise OpenVasaError("steps must be at least 1")
        c = generator.config.context
        # The first window continues from the portrait at rest, silent: its context is that rest state.
        self.context_motion = normalise(
            torch.from_numpy(generator.rest_motion(reference)).float(),
            generator.stats.motion_mean,
            generator.stats.motion_std,
        ).expand(c, -1)
        self.context_audio = normalise(
            torch.from_numpy(generator.silence_features(c)), generator.stats.audio_mean, generator.stats.audio_std
        )
        self.random = torch.Generator().manual_seed(seed)
        self.control = generator.conditions(reference, basis, self.controls)
        self.rest_dynamics = closed_mouth(reference.dynamics[0], rest_opening)
        c = self.controls
        self.emotion = emotion_offset(c.emotion, basis, c.emotion_strength)
        self.eye_openness = emotion_eye_openness(c.emotion, c.emotion_strength)
        self.open_level = reference.eyes[0, EYE_OPEN] * self.eye_openness  # (2,) the eyes' openness when open
        self.blinks = Blinks(FPS, seed, generator.blink_calibration)
        self.head = HeadRange(generator.head_calibration)
        regression = generator.mouth_regression
        # Live sessions steer the mouth only with a regression that needs no later audio than the block's.
        self.mouth = LiveSteering(regression) if regression is not None and regression.causal else None
        self.running: dict[str, np.ndarray] = {}
        self.smoothed: tuple[np.ndarray, np.ndarray] | None = None  # last (pose, dynamics), for causal smoothing
        # (T,) of the frames to_latent made last: the share of the expression kept as silence relaxes it, which the
        # mouth's steering keeps too (it reads speech; after speech its running means lagged, and a listening
        # mouth shut tight, then parted again as they caught up).
        self.speaking = np.ones(0)
        self.frames_out = 0  # frames turned into latents so far

    @torch.no_grad()
    def sample(self, features: np.ndarray) -> np.ndarray:
        """Audio features (w, A) of the next window -> denormalised motion (w, M)."""
        g, settings = self.model, self.settings
        w, c = g.config.window, g.config.context
        if len(features) != w:
            raise ValueError(f"a window has {w} frames of audio features, got {len(features)}")
        audio = normalise(torch.from_numpy(np.asarray(features, np.float32)), g.stats.audio_mean, g.stats.audio_std)
        cond = MotionConditions(
            audio=audio[None],
            has_audio=torch.ones(1, dtype=torch.bool),
            context_motion=self.context_motion[None],
            context_audio=self.context_audio[None],
            has_context=torch.ones(1, dtype=torch.bool),
            **self.control,
        )
        noise = torch.randn(1, w, g.config.motion_dim, generator=self.random) * g.schedule.sigma_max
        sample = g.window_sampler(
            settings.sampler, settings.steps, settings.cfg_audio, settings.cfg_control, settings.compiled
        )
        window = sample(noise, cond)[0]
        self.context_motion = torch.cat([self.context_motion, window])[-c:]
        self.context_audio = torch.cat([self.context_audio, audio])[-c:]
        return denormalise(window, g.stats.motion_mean, g.stats.motion_std).numpy().astype(np.float64)

    def sample_all(self, features: np.ndarray) -> np.ndarray:
        """Audio features (T, A) of any length -> denormalised motion (T, M), window after window (the last one
        padded with zero features)."""
        total, w = len(features), self.model.config.window
        padded = np.concatenate([features, np.zeros((-total % w, features.shape[1]), features.dtype)])
        return np.concatenate([self.sample(padded[s : s + w]) for s in range(0, total, w)])[:total]

    def _running_mean(self, key: str, x: np.ndarray) -> np.ndarray:
        """Per-frame exponential running mean of x (T, D) along time, carried across calls."""
        alpha = 1.0 / self.RUNNING_MEAN_FRAMES
        mean = self.running.get(key, x[0])
        out = np.empty_like(x)
        for t in range(len(x)):
            mean = mean + alpha * (x[t] - mean)
            out[t] = mean
        self.running[key] = mean
        return out

    def listening(self, features: np.ndarray) -> np.ndarray:
        """(T,) weight in [0, 1] of silence: 0 while loudness is above the speech gate, rising towards 1 over
        about LISTEN_FRAMES of silence (and dropping at once when speech starts: the mouth must not lag it)."""
        column = self.model.loudness_column
        if column is None:
            return np.zeros(len(features))
        weight, out = self.running.get("listening", 0.0), np.empty(len(features))
        for t, loud in enumerate(features[:, column]):
            weight = 0.0 if loud > 0 else weight + (1 - weight) / self.LISTEN_FRAMES
            out[t] = weight
        self.running["listening"] = weight
        return out

    def open_eyes(self, motion: np.ndarray) -> np.ndarray:
        """(T, 2) eye openness of the next frames of denormalised motion (T, M), before the blinks are shaped
        (self.blinks): the model's, on the portrait's eyes, with the emotion's widening or narrowing."""
        rest_open = self.reference.eyes[0, EYE_OPEN]
        # Openness is relative to the person's eye shape: rescale the data's typical openness to the portrait's.
        openness = motion[:, EYES][:, EYE_OPEN] * rest_open / self.model.stats.openness_mean
        # The model starts from its context of a resting face with a dip of the eyes (0.2-0.5 of open in the first
        # frames for every seed): every video opened with half-shut eyes. They start as the portrait's instead.
        frame = self.frames_out + np.arange(len(openness))
        hold, handover = self.OPEN_START_FRAMES
        floor = np.clip((hold + handover - frame) / handover, 0, 1)[:, None] * rest_open
        return np.maximum(openness, floor) * self.eye_openness

    def to_latent(self, motion: np.ndarray, features: np.ndarray) -> FaceLatent:
        """Denormalised motion (T, M) and its audio features (T, A) -> FaceLatent, with the controls applied.

        In silence the expression relaxes towards the portrait's own: people close their mouths when they
        stop talking, but five minutes of talking videos hold few pauses and the model keeps the mouth as
        open as average speech (an opening of 0.22 instead of the rest 0.12 on the astronaut)."""
        controls, reference = self.controls, self.reference
        delta = self.head.apply(motion[:, POSE])
        for part in (POSE_ANGLES, POSE_SHIFT):
            delta[:, part] *= controls.motion_scale  # 0: a still head; lips and eyes keep moving
        delta[:, YAW] = bound_turn(delta[:, YAW], reference.pose[0, YAW])
        # The model's first frame is already turned from its resting context (1.6 deg of yaw on the validation voices,
        # up to 4.5, where a frame moves 0.4): a stream's head jumped from the portrait's pose as speech began.
        ease = np.clip((self.frames_out + np.arange(len(delta))) / self.POSE_START_FRAMES, 0, 1)
        for part in (POSE_ANGLES, POSE_SHIFT):
            delta[:, part] *= (ease * ease * (3 - 2 * ease))[:, None]
        # The mean head size is set by the distance control; the model adds natural variation around it.
        lean = delta[:, LOG_SCALE] - self._running_mean("scale", delta[:, LOG_SCALE : LOG_SCALE + 1])[:, 0]
        delta[:, LOG_SCALE] = -np.log(controls.distance) + controls.motion_scale * lean
        eyes = motion[:, EYES].copy()
        eyes[:, EYE_OPEN] = self.blinks.apply(self.open_eyes(motion), self.open_level)
        self.frames_out += len(eyes)
        gaze = eyes[:, EYE_IRIS]
        if controls.gaze is not None:
            # Five minutes of data hold little gaze variety, so the conditioned model only leans towards a
            # requested gaze: set its mean and keep the model's saccades around it.
            target = self.basis.eye_mean[EYE_IRIS] + np.tile(gaze_to_iris_offset(*controls.gaze), 2)
            gaze += target - self._running_mean("gaze", gaze)
        eyes[:, EYE_IRIS] = np.clip(gaze, -0.5, 0.5)
        dynamics = motion[:, dynamics_slice(motion.shape[1])]
        self.speaking = np.ones(len(dynamics))
        if self.model.relative_dynamics:
            self.speaking = 1 - self.LISTEN_RELAX * self.listening(features)[: len(dynamics)]
            dynamics = dynamics * self.speaking[:, None] + self.rest_dynamics
        # The emotion holds through speech and silence alike: the expression the lips move in.
        dynamics = dynamics + self.emotion
        return FaceLatent(pose_from_delta(delta, reference.pose[0]), eyes, dynamics)

    def steer_mouth(self, latent: FaceLatent, features: np.ndarray) -> FaceLatent:
        """The next frames of a live stream with the mouth steered (openvasa.motion.mouth_regression), when the
        model has a causal regression; features: their audio features; the frames to_latent made last."""
        return latent if self.mouth is None else self.mouth.apply(latent, features, self.speaking)

    def smooth(self, latent: FaceLatent, whole: bool = False) -> FaceLatent:
        """Remove the samples' frame-to-frame noise from pose and dynamics. Offline (whole=True, the complete
        sequence) with a Gaussian; in a stream, causally with a one-pole filter of similar strength, carried
        across calls. settings.causal_smoothing makes offline use the stream's filter too."""
        s = self.settings
        if whole and not s.causal_smoothing:
            return FaceLatent(
                gaussian_smooth(latent.pose, s.pose_smoothing),
                latent.eyes,
                gaussian_smooth(latent.dynamics, s.dynamics_smoothing),
            )
        pose, dynamics = latent.pose.copy(), latent.dynamics.copy()
        # One pole at a = 1 / (1 + sigma) lags about sigma frames and damps frame noise as the Gaussian does.
        a_pose, a_dyn = 1 / (1 + s.pose_smoothing), 1 / (1 + s.dynamics_smoothing)
        for t in range(len(latent)):
            if self.smoothed is not None:
                last_pose, last_dynamics = self.smoothed
                pose[t] = last_pose + a_pose * (pose[t] - last_pose)
                dynamics[t] = last_dynamics + a_dyn * (dynamics[t] - last_dynamics)
            self.smoothed = (pose[t], dynamics[t])
        return FaceLatent(pose, latent.eyes, dynamics)


def closed_mouth(dynamics: np.ndarray, opening: float) -> np.ndarray:
    """The expression (K,) of a portrait whose inner lips are `opening` apart (eye distances), with the lips
    brought together: the relative model's offsets start from the rest face, and a portrait photographed
    mid-word or laughing would otherwise never close its lips (on validation clips generated from their
    first frame the mouth never closed and opened twice as wide as the real one). Uses the baseline's fitted
    opening direction (code change per eye distance of opening)."""
    return dynamics - max(opening - REST_OPENING, 0.0) * MouthModel.load().open_dir


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
