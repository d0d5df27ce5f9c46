"""mixedref.fitting.gradient_run: the rescue strategies' L-BFGS-B run in the scaled θ, on a
criterion
whose minimizer is known in closed form (a separable quadratic), so the reference is theory."""

from __future__ import annotations

import math

import numpy as np

from mixedref.fitting.gradient_run import lbfgsb_phi

CENTRE = np.array([2.0, -3.0, -1.0, 0.5])
LOWER = np.array([0.0, -np.inf, 0.0, -np.inf])
SCALES = np.array([1.0, 10.0, 0.1, 1.0])


def _quadratic(theta: np.ndarray) -> float:
    return float(np.sum((np.asarray(theta) - CENTRE) ** 2))


def _with_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
    return _quadratic(theta), 2.0 * (np.asarray(theta) - CENTRE)


def test_reaches_the_bounded_minimum_in_theta_with_the_fixed_elements_held() -> None:
    phi0 = np.array([1.0, 1.0, 0.3, 7.0]) * SCALES
    free = np.array([True, True, True, False])
    for grad in (_with_gradient, None):  # exact gradient, then central differences
        theta, f, ok = lbfgsb_phi(_quadratic, grad, SCALES, LOWER, phi0, free, 500)
        assert ok
        # element 2's minimum -1 is below its bound 0: it stops there; element 3 is held
        np.testing.assert_allclose(theta, [2.0, -3.0, 0.0, 7.0], atol=1e-5)
        assert f == _quadratic(theta)


def test_a_non_finite_criterion_ends_the_run_with_its_best_point() -> None:
    def walled(theta: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = _with_gradient(theta)
        return (math.inf if theta[0] > 1.5 else v), g

    theta, f, ok = lbfgsb_phi(_quadratic, walled, np.ones(4), LOWER, np.zeros(4),
                              np.ones(4, dtype=bool), 500)
    assert not ok
    assert math.isfinite(f) and f == _quadratic(theta) and theta[0] <= 1.5
    assert f < _quadratic(np.zeros(4))
