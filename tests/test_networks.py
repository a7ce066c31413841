"""The policy's action distributions against values computed by hand."""

import math

import jax
import jax.numpy as jp
import numpy as np
import pytest

from locomotion.train.config import PPOConfig
from locomotion.train.networks import Actor, entropy, gaussian_kl, log_prob


def normal_logpdf(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def test_log_prob_without_squash_is_the_gaussian_density():
    u, mean, log_std = np.array([0.3, -1.2]), np.array([0.1, -0.5]), np.array([-0.2, 0.4])
    expected = sum(normal_logpdf(*v) for v in zip(u, mean, np.exp(log_std), strict=True))
    got = log_prob(jp.asarray(u), jp.asarray(mean), jp.asarray(log_std), squash=False)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_tanh_log_prob_is_the_density_of_the_squashed_action():
    """a = tanh(u), u ~ N(mean, std): p(a) = N(atanh a) / (1 - a^2), including far out in the
    tails where 1 - tanh(u)^2 underflows in float32 if computed naively."""
    mean, std = 0.4, 0.7
    for u in (0.0, 0.5, -1.3, 2.0):
        a = math.tanh(u)
        expected = normal_logpdf(math.atanh(a), mean, std) - math.log(1 - a * a)
        got = log_prob(jp.array([u]), jp.array([mean]), jp.array([math.log(std)]), squash=True)
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    # u = 12: log(1 - tanh^2) = log(4) - 24 + O(e^-24), and 1 - tanh(12)^2 is 0 in float32.
    far = log_prob(jp.array([12.0]), jp.array([mean]), jp.array([math.log(std)]), squash=True)
    expected = normal_logpdf(12.0, mean, std) - (math.log(4) - 24)
    np.testing.assert_allclose(far, expected, rtol=1e-5)


def test_entropy_matches_quadrature():
    """Gaussian entropy in closed form; the tanh estimate over many samples against a
    numerical integral of -p log p over a in (-1, 1)."""
    mean, std = 0.8, 0.9
    gauss = entropy(jp.array([mean]), jp.array([math.log(std)]), jp.zeros(1), squash=False)
    np.testing.assert_allclose(gauss, 0.5 * math.log(2 * math.pi * math.e * std**2), rtol=1e-6)

    u = np.linspace(mean - 12 * std, mean + 12 * std, 200001)
    log_p_a = normal_logpdf(u, mean, std) - np.log1p(-(np.tanh(u) ** 2))
    # -E[log p(a)] with the expectation over u ~ N (a = tanh u).
    expected = -np.trapezoid(np.exp(normal_logpdf(u, mean, std)) * log_p_a, u)
    noise = jax.random.normal(jax.random.PRNGKey(0), (200000, 1))
    ones = jp.ones((200000, 1))
    estimate = entropy(mean * ones, math.log(std) * ones, noise, squash=True).mean()
    assert abs(float(estimate) - expected) < 0.01, (float(estimate), expected)
    assert expected < float(gauss) - 0.3  # squashing removes entropy: the check can fail


def test_kl_of_identical_policies_is_zero_and_positive_otherwise():
    m, s = jp.array([[0.1, 0.2]]), jp.array([[-0.3, 0.1]])
    assert float(gaussian_kl(m, s, m, s)[0]) == pytest.approx(0.0, abs=1e-7)
    # KL(N(0,1) || N(1,1)) = 1/2 per dimension.
    np.testing.assert_allclose(
        gaussian_kl(jp.zeros((1, 2)), jp.zeros((1, 2)), jp.ones((1, 2)), jp.zeros((1, 2))), 1.0
    )


@pytest.mark.parametrize("kernel_init", ["orthogonal", "lecun_uniform"])
def test_state_dependent_std_starts_near_the_configured_std(kernel_init):
    actor = Actor((32, 32), 3, -0.5, True, "swish", kernel_init)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 5))
    params = actor.init(jax.random.PRNGKey(0), obs)
    assert "log_std" not in params["params"]  # the std is an output head
    mean, log_std = actor.apply(params, obs)
    assert mean.shape == log_std.shape == (64, 3)
    assert float(jp.std(log_std)) > 0  # it depends on the state
    if kernel_init == "orthogonal":  # output gain 0.01: the head starts at its bias
        np.testing.assert_allclose(jp.exp(log_std), math.exp(-0.5), rtol=0.05)


def test_config_refuses_unknown_choices():
    with pytest.raises(ValueError, match="action_distribution"):
        PPOConfig(action_distribution="beta")
    with pytest.raises(ValueError, match="activation"):
        PPOConfig(activation="relu")
