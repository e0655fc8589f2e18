"""The blink floor: a face the model leaves unblinking blinks at a human rate, a face that blinks is left alone, and
it gives the same eyes block by block (live) as all at once (offline)."""

import numpy as np

from openvasa.eval.metrics import blink_rate
from openvasa.face.latent import EYE_OPEN
from openvasa.motion.blinks import MAX_GAP_S, BlinkFloor

FPS = 25.0
OPEN = np.array([0.3, 0.28])


def as_eyes(openness: np.ndarray) -> np.ndarray:
    eyes = np.zeros((len(openness), 6))
    eyes[:, EYE_OPEN] = openness
    return eyes


def test_a_face_that_never_blinks_gets_blinks_at_a_human_rate():
    still = np.tile(OPEN, (int(120 * FPS), 1))
    out = BlinkFloor(FPS, seed=1).apply(still, OPEN)
    rate = blink_rate(as_eyes(out), FPS)
    print(f"\nadded blinks: {rate:.1f}/min, deepest {out.mean(1).min() / OPEN.mean():.2f} of open")
    assert 60 / MAX_GAP_S[1] - 1 <= rate <= 60 / MAX_GAP_S[0] + 1
    assert out.mean(1).min() < 0.25 * OPEN.mean()  # each a full closure, not a squint
    assert (out <= still).all()


def test_a_face_that_blinks_is_left_alone():
    openness = np.tile(OPEN, (int(60 * FPS), 1))
    openness[:: int(2.5 * FPS)] *= 0.1  # a blink every 2.5 s, as people do
    out = BlinkFloor(FPS).apply(openness, OPEN)
    np.testing.assert_array_equal(out, openness)


def test_block_by_block_equals_all_at_once():
    rng = np.random.default_rng(0)
    openness = OPEN * rng.uniform(0.8, 1.0, (500, 2))
    whole = BlinkFloor(FPS, seed=3).apply(openness, OPEN)
    floor = BlinkFloor(FPS, seed=3)
    blocks = np.concatenate([floor.apply(openness[i : i + 2], OPEN) for i in range(0, 500, 2)])
    np.testing.assert_array_equal(blocks, whole)
