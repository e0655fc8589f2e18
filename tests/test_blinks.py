"""Blinks of the generated eyes: a face the model leaves unblinking blinks at a human rate, a face that blinks is
left alone, a calibrated model's deep dips become full blinks at the fitted rate while its shallow ones stay
shallow, and all of it gives the same eyes block by block (live) as all at once (offline)."""

import numpy as np

from openvasa.eval.metrics import blink_rate
from openvasa.face.latent import EYE_OPEN
from openvasa.motion.blinks import BLINK_PROFILE, HELD_OPEN, MAX_GAP_S, BlinkCalibration, Blinks
from openvasa.tools.calibrate import EyeSample, fit

FPS = 25.0
OPEN = np.array([0.3, 0.28])


def as_eyes(openness: np.ndarray) -> np.ndarray:
    eyes = np.zeros((len(openness), 6))
    eyes[:, EYE_OPEN] = openness
    return eyes


def dipping(depths: np.ndarray, seed: int = 0) -> np.ndarray:
    """A model's eyes (T, 2) that dip once a second, to the given depths (shares of open)."""
    rng = np.random.default_rng(seed)
    openness = OPEN * rng.uniform(0.95, 1.0, (int((len(depths) + 1) * FPS), 1))
    for start, depth in zip(np.arange(len(depths)) * int(FPS) + 10, depths, strict=True):
        openness[start : start + 3] = OPEN * np.array([(1 + depth) / 2, depth, (1 + depth) / 2])[:, None]
    return openness


def test_a_face_that_never_blinks_gets_blinks_at_a_human_rate():
    still = np.tile(OPEN, (int(120 * FPS), 1))
    out = Blinks(FPS, seed=1).apply(still, OPEN)
    rate = blink_rate(as_eyes(out), FPS)
    print(f"\nadded blinks: {rate:.1f}/min, deepest {out.mean(1).min() / OPEN.mean():.2f} of open")
    assert 60 / MAX_GAP_S[-1] <= rate <= 60 / MAX_GAP_S[0]
    assert 18 <= rate <= 30  # people blink 20-40 times a minute as they speak
    assert out.mean(1).min() < 0.25 * OPEN.mean()  # each a full closure, not a squint
    assert (out <= still).all()


def test_a_face_that_blinks_is_left_alone():
    openness = np.tile(OPEN, (int(60 * FPS), 1))
    openness[:: int(2 * FPS)] *= 0.1  # a blink every 2 s, as people do
    out = Blinks(FPS).apply(openness, OPEN)
    np.testing.assert_array_equal(out, openness)


def test_deep_dips_become_full_blinks_and_shallow_ones_stay():
    depths = np.tile([0.85, 0.75, 0.6], 20)  # 60 dips a minute, every third one deep (the floor has no gap to fill)
    openness = dipping(depths)
    calibration = BlinkCalibration(threshold=0.7, real_rate=20.0, model_rate=20.0)
    out = Blinks(FPS, calibration=calibration).apply(openness, OPEN)
    rate = blink_rate(as_eyes(out), FPS) * len(out) / (60 * FPS)  # blinks in the whole sequence
    print(f"\n{blink_rate(as_eyes(openness), FPS):.0f} blinks before, {rate:.0f} after")
    assert round(rate) == np.count_nonzero(depths < 0.7)  # one blink per dip below the threshold
    assert out.mean(1).min() / OPEN.mean() <= BLINK_PROFILE.min() + 1e-9  # a real blink's depth
    deep = np.flatnonzero(openness.mean(1) < calibration.threshold * OPEN.mean())
    kept = np.setdiff1d(np.arange(len(out)), np.concatenate([deep + i for i in range(len(BLINK_PROFILE))]))
    np.testing.assert_array_equal(out[kept], openness[kept])  # shallow dips untouched


def test_a_dip_that_outlasts_its_blink_is_one_blink_not_a_flutter():
    """The model's eyes stay half shut for 0.8 s, wavering about half open: one blink is drawn, and its eyes reopen
    to HELD_OPEN and stay there, rather than closing again as the model's dip shows through the reopening lids."""
    openness = np.tile(OPEN, (int(4 * FPS), 1))
    openness[25:45] = OPEN * np.where(np.arange(20) % 3 == 0, 0.55, 0.35)[:, None]
    calibration = BlinkCalibration(threshold=0.5, real_rate=20.0, model_rate=20.0)
    out = Blinks(FPS, calibration=calibration).apply(openness, OPEN)
    closed = out.mean(1) < 0.5 * OPEN.mean()
    assert np.count_nonzero(closed[1:] & ~closed[:-1]) == 1
    assert out.mean(1).min() / OPEN.mean() <= BLINK_PROFILE.min() + 1e-9  # a real blink's depth
    np.testing.assert_allclose(out[30:45].mean(1) / OPEN.mean(), HELD_OPEN)


def test_the_fitted_threshold_gives_the_real_rate():
    """Many shallow dips and a few deep ones (60 a minute): the fit finds the threshold at which the blinks, floor
    included, come at the real rate."""
    rng = np.random.default_rng(0)
    samples = [EyeSample(dipping(rng.uniform(0.5, 0.95, 40), seed), OPEN, seed) for seed in range(2)]
    calibration = fit(samples, real_rate=23.0)
    print(f"\nthreshold {calibration.threshold:.2f}: {calibration.model_rate:.1f} blinks/min")
    assert 0.55 < calibration.threshold < 0.85
    assert abs(calibration.model_rate - 23.0) < 4
    out = Blinks(FPS, 0, calibration).apply(samples[0].openness, OPEN)
    assert out.mean(1).min() / OPEN.mean() <= BLINK_PROFILE.min() + 1e-9


def test_block_by_block_equals_all_at_once():
    openness = dipping(np.random.default_rng(5).uniform(0.5, 0.95, 20))
    calibration = BlinkCalibration(threshold=0.7, real_rate=23.0, model_rate=23.0)
    whole = Blinks(FPS, seed=3, calibration=calibration).apply(openness, OPEN)
    blinks = Blinks(FPS, seed=3, calibration=calibration)
    blocks = np.concatenate([blinks.apply(openness[i : i + 4], OPEN) for i in range(0, len(openness), 4)])
    np.testing.assert_array_equal(blocks, whole)
    assert not np.array_equal(whole, openness)
