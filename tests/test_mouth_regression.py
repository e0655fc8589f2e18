"""The mouth regression: fitted taps recover a lagged linear mouth, steering moves the mouth by its blend, and the
shipped model's steered mouth follows real people's it never saw more closely than as sampled."""

import numpy as np
import pytest

from openvasa.face import landmarks as lm
from openvasa.face.latent import FaceBasis, FaceLatent
from openvasa.face.track import gaussian_smooth
from openvasa.io.media import load_audio
from openvasa.motion.generator import MotionGenerator
from openvasa.motion.mouth_regression import (
    LEVEL_SIGMA,
    LiveSteering,
    MouthRegression,
    clip_offsets,
    delayed,
    fit_directions,
    fit_taps,
)
from openvasa.units import FPS
from tests.conftest import shared_file


def smooth_noise(rng: np.random.Generator, frames: int, dims: int) -> np.ndarray:
    kernel = np.hanning(7) / np.hanning(7).sum()
    white = rng.normal(size=(frames + 6, dims))
    return np.stack([np.convolve(white[:, j], kernel, mode="valid") for j in range(dims)], 1)


def lagged_mouth(features: np.ndarray) -> np.ndarray:
    """Opening led by feature 0 two frames ahead, width by feature 21 (loudness-like, last four) one frame behind."""
    padded = np.pad(features, ((1, 2), (0, 0)), mode="edge")
    return np.stack([0.02 * padded[3:, 0], -0.01 * padded[:-3, 21]], 1)


def test_fitted_taps_recover_a_lagged_mouth_on_new_clips():
    rng = np.random.default_rng(0)
    clips = [smooth_noise(rng, 300, 24) for _ in range(6)]
    taps = fit_taps(clips, [lagged_mouth(c) for c in clips], first=-3, n_taps=11, dims=20, ridge=10.0)
    regression = MouthRegression(taps, -3, np.zeros((5, 2)), np.zeros((2, 5)), 1.0)
    new = smooth_noise(rng, 300, 24)
    predicted, real = regression.predict(new), lagged_mouth(new)
    for j in range(2):
        r = np.corrcoef(predicted[:, j], real[:, j])[0, 1]
        ratio = predicted[:, j].std() / real[:, j].std()
        print(f"measure {j}: r {r:.3f}, std ratio {ratio:.2f}")
        assert r > 0.9 and 0.8 < ratio < 1.25


def test_each_clips_audio_video_offset_is_found_and_fitting_at_it_sharpens_the_taps():
    rng = np.random.default_rng(2)
    clips = [smooth_noise(rng, 300, 24) for _ in range(8)]
    offsets = [0, 2, -1, 3, -2, 1, 0, -3]  # frames each recording's mouth lags its audio by
    mouths = [
        delayed(lagged_mouth(c), o) + 0.002 * rng.normal(size=(300, 2)) for c, o in zip(clips, offsets, strict=True)
    ]
    people = ["a", "a", "b", "b", "c", "c", "d", "d"]
    found = clip_offsets(clips, mouths, people, first=-3, n_taps=11, dims=20, ridge=10.0, max_offset=4)
    # The delay that undoes each recording's, to a frame: the others' regression is itself blurred by theirs.
    errors = np.abs(np.add(found, offsets))
    assert errors.max() <= 1
    assert np.array_equal(delayed(np.arange(5.0)[:, None], 2)[:, 0], [0, 0, 0, 1, 2])
    assert np.array_equal(delayed(np.arange(5.0)[:, None], -1)[:, 0], [1, 2, 3, 4, 4])

    new = smooth_noise(rng, 300, 24)
    rs = []
    for measures in (
        mouths,
        [delayed(m, o) for m, o in zip(mouths, found, strict=True)],
    ):  # as recorded, at their offsets
        taps = fit_taps(clips, measures, first=-3, n_taps=11, dims=20, ridge=10.0)
        predicted = MouthRegression(taps, -3, np.zeros((5, 2)), np.zeros((2, 5)), 1.0).predict(new)
        rs.append(np.corrcoef(predicted[:, 0], lagged_mouth(new)[:, 0])[0, 1])
    print(f"opening r on a new clip: fitted as recorded {rs[0]:.3f}, at each clip's offset {rs[1]:.3f}")
    assert rs[1] > rs[0] + 0.05 and rs[1] > 0.9


def test_steering_moves_the_mouth_by_its_blend():
    rng = np.random.default_rng(1)
    dynamics = rng.normal(size=(400, 6))
    measures = dynamics[:, :2] @ np.array([[0.05, 0.01], [0.0, 0.03]]) + 0.001 * rng.normal(size=(400, 2))
    readout, directions = fit_directions(dynamics, measures)
    np.testing.assert_allclose(directions @ readout, np.eye(2), atol=1e-9)

    features = smooth_noise(rng, 200, 10)
    taps = np.zeros((3, 10, 2))
    taps[1, 0] = [0.04, -0.02]  # the opening and width follow feature 0 at frame t
    latent = FaceLatent(np.zeros((200, 7)), np.zeros((200, 6)), smooth_noise(rng, 200, 6))
    before = latent.dynamics @ readout
    goal = MouthRegression(taps, -1, readout, directions, 1.0).predict(features)
    for blend in (0.0, 0.5, 1.0, np.array([0.3, 0.8])):  # one share for both, or the opening's and the width's
        regression = MouthRegression(taps, -1, readout, directions, blend)
        steered = regression.steer(latent, features)
        assert np.allclose(steered.pose, latent.pose) and np.allclose(steered.eyes, latent.eyes)
        # The measured mouth, about its running mean, moved `blend` of the way to the regression's.
        wanted = np.asarray(blend) * (goal - (before - gaussian_smooth(before, LEVEL_SIGMA)))
        np.testing.assert_allclose(steered.dynamics @ readout - before, wanted, atol=1e-9)
        again = MouthRegression.from_dict(regression.to_dict())
        np.testing.assert_allclose(again.steer(latent, features).dynamics, steered.dynamics)
    # A per-frame share of the move (silence relaxes it as it relaxes the expression): none of it where it is 0.
    share = np.clip(np.linspace(-0.5, 1.5, 200), 0, 1)
    partly = regression.steer(latent, features, share)
    np.testing.assert_allclose(partly.dynamics @ readout - before, share[:, None] * wanted, atol=1e-9)
    old_checkpoint = {**regression.to_dict(), "blend": 0.5}  # saved before the width had a share of its own
    np.testing.assert_array_equal(MouthRegression.from_dict(old_checkpoint).blend, [0.5, 0.5])


def test_live_steering_block_by_block_equals_all_at_once_and_needs_no_later_audio():
    rng = np.random.default_rng(2)
    dynamics, measures = rng.normal(size=(300, 6)), rng.normal(size=(300, 2))
    readout, directions = fit_directions(dynamics, measures)
    features = smooth_noise(rng, 120, 10)
    causal = MouthRegression(rng.normal(size=(11, 10, 2)) * 0.01, -10, readout, directions, 0.5)
    latent = FaceLatent(np.zeros((120, 7)), np.zeros((120, 6)), smooth_noise(rng, 120, 6))
    whole = causal.steer(latent, features)
    live = LiveSteering(causal)
    blocks = [live.apply(latent[i : i + 4], features[i : i + 4]) for i in range(0, 120, 4)]
    np.testing.assert_allclose(np.concatenate([b.dynamics for b in blocks]), whole.dynamics, atol=1e-12)
    assert np.abs(whole.dynamics - latent.dynamics).max() > 1e-3  # it steered
    # A frame's steering does not change with the audio after it.
    later = features.copy()
    later[60:] += 1.0
    np.testing.assert_allclose(causal.steer(latent, later).dynamics[:60], whole.dynamics[:60], atol=1e-12)
    share = np.linspace(0, 1, 120)
    shared = [LiveSteering(causal).apply(latent, features, share), causal.steer(latent, features, share)]
    np.testing.assert_allclose(shared[0].dynamics, shared[1].dynamics, atol=1e-12)
    np.testing.assert_allclose(shared[0].dynamics[0], latent.dynamics[0], atol=1e-12)  # a share of 0: unsteered
    with pytest.raises(ValueError, match="taps end at the frame"):
        LiveSteering(MouthRegression(causal.taps, -3, readout, directions, 0.5))


@pytest.mark.parametrize("clip", ["sadtalker_WDA_KatieHill_000.mp4", "real3dportrait_May_5s.mp4"])
def test_steered_mouth_follows_unseen_people_more_closely(clip):
    """Two validation people (neither the model nor the regression saw them): the generated mouth opening,
    from the clip's first frame and audio, correlates with the tracked real one better steered than as sampled."""
    from openvasa.eval.suite import frames_at
    from openvasa.face.latent import FaceLatentCodec
    from openvasa.face.track import track_frames

    video = shared_file(f"videos/{clip}")
    audio = load_audio(video)[: 8 * 16000]
    frames = list(frames_at(video, np.arange(int(len(audio) / 16000 * FPS)) / FPS))
    tracked = track_frames(frames, keep_frames=False).landmarks
    real = lm.mouth_opening(tracked)
    codec, basis = FaceLatentCodec(), FaceBasis.load()
    identity = codec.identity_of(tracked[0])
    generator = MotionGenerator()  # not the cached one: its regression is taken away below
    regression = generator.mouth_regression
    assert regression is not None and np.all((regression.blend > 0) & (regression.blend <= 1))
    features = generator.audio_features(audio)
    rs = {}
    for name, steering in (("steered", regression), ("as sampled", None)):
        generator.mouth_regression = steering
        rs[name] = np.mean(
            [
                np.corrcoef(
                    lm.mouth_opening(
                        codec.decode(
                            generator.generate(audio, FPS, identity.reference, basis, seed=s, features=features),
                            identity,
                        )
                    )[: len(real)],
                    real,
                )[0, 1]
                for s in range(2)
            ]
        )
    print(f"\n{clip}: mouth r {rs}")
    assert rs["steered"] > rs["as sampled"] + 0.03
