"""GAE against hand-computed values: termination, truncation and fractional termination."""

import jax.numpy as jp
import numpy as np

from locomotion.train.losses import compute_gae


def reference_gae(r, v, nv, term, trunc, gamma, lam):
    """Plain-loop GAE, written independently of the scan implementation."""
    T, B = r.shape
    adv = np.zeros((T, B))
    for b in range(B):
        running = 0.0
        for t in reversed(range(T)):
            delta = r[t, b] + gamma * (1 - term[t, b]) * nv[t, b] - v[t, b]
            running = delta + gamma * lam * (1 - term[t, b]) * (1 - trunc[t, b]) * running
            adv[t, b] = running
    return adv


def _gae(r, v, nv, term, trunc, gamma, lam):
    args = [jp.array(x, jp.float32) for x in (r, v, nv, term, trunc)]
    adv, ret = compute_gae(*args, gamma, lam)
    return np.asarray(adv), np.asarray(ret)


def test_by_hand_no_ending():
    # T=2, gamma=0.5, lambda=1: A1 = r1 + 0.5*V2 - V1 = 1 + 0.5*4 - 2 = 1
    # A0 = r0 + 0.5*V1 - V0 + 0.5*A1 = 1 + 1 - 1 + 0.5 = 1.5
    adv, ret = _gae(
        [[1.0], [1.0]], [[1.0], [2.0]], [[2.0], [4.0]], [[0], [0]], [[0], [0]], 0.5, 1.0
    )
    np.testing.assert_allclose(adv[:, 0], [1.5, 1.0])
    np.testing.assert_allclose(ret[:, 0], [2.5, 3.0])


def test_by_hand_termination_cuts_bootstrap():
    # Step 0 terminates: A0 = r0 - V0 = 1 - 1 = 0, no bootstrap and nothing flows back.
    adv, _ = _gae([[1.0], [1.0]], [[1.0], [2.0]], [[5.0], [4.0]], [[1], [0]], [[0], [0]], 0.5, 1.0)
    np.testing.assert_allclose(adv[:, 0], [0.0, 1.0])


def test_by_hand_truncation_bootstraps_from_final_value():
    # Step 0 truncated: A0 = r0 + 0.5*V(final)=5 -> 1 + 2.5 - 1 = 2.5; A1 does not flow back.
    adv, _ = _gae([[1.0], [1.0]], [[1.0], [2.0]], [[5.0], [4.0]], [[0], [0]], [[1], [0]], 0.5, 1.0)
    np.testing.assert_allclose(adv[:, 0], [2.5, 1.0])


def test_by_hand_fractional_termination():
    # delta=0.25 at step 0: A0 = 1 + 0.5*0.75*2 - 1 + 0.5*1*0.75*A1 = 0.75 + 0.375*A1
    # A1 = 1 + 0.5*4 - 2 = 1 -> A0 = 1.125
    adv, _ = _gae(
        [[1.0], [1.0]], [[1.0], [2.0]], [[2.0], [4.0]], [[0.25], [0]], [[0], [0]], 0.5, 1.0
    )
    np.testing.assert_allclose(adv[:, 0], [1.125, 1.0])


def test_matches_plain_loop_on_random_data():
    rng = np.random.default_rng(0)
    T, B = 16, 5
    r, v, nv = rng.normal(size=(3, T, B))
    term = rng.uniform(size=(T, B)) * (rng.uniform(size=(T, B)) < 0.3)
    term[rng.uniform(size=(T, B)) < 0.1] = 1.0
    trunc = (rng.uniform(size=(T, B)) < 0.1) * (term == 0)
    adv, ret = _gae(r, v, nv, term, trunc, 0.97, 0.9)
    expected = reference_gae(r, v, nv, term, trunc, 0.97, 0.9)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, expected + v, rtol=1e-5, atol=1e-5)
