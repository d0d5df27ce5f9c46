"""The Newton finish after L-BFGS-B stops at the criterion's rounding floor
(mixedref.fitting.optimize._newton_finish and the stall rule of _lbfgsb), on closed-form
criteria."""

from __future__ import annotations

import numpy as np

from mixedref.fitting.optimize import Control, _lbfgsb, _newton_finish

H = np.array([[4.0, 1.0], [1.0, 3.0]])
X_MIN = np.array([0.7, 0.4])


def quadratic(x: np.ndarray) -> float:
    d = np.asarray(x) - X_MIN
    return 5.0 + 0.5 * float(d @ H @ d)


def quadratic_vg(x: np.ndarray) -> tuple[float, np.ndarray]:
    return quadratic(x), H @ (np.asarray(x) - X_MIN)


def test_one_newton_step_lands_on_a_quadratics_minimum() -> None:
    x0 = X_MIN + np.array([0.01, -0.02])
    out = _newton_finish(quadratic, quadratic_vg, x0, quadratic(x0), np.zeros(2), Control())
    assert out is not None
    x, fx, steps, (free, g, hess) = out
    assert steps == 1
    np.testing.assert_allclose(x, X_MIN, atol=1e-9)
    assert abs(fx - 5.0) < 1e-12
    np.testing.assert_allclose(hess, H, rtol=1e-6)  # what lme4's checks then reuse
    assert list(free) == [0, 1] and np.max(np.abs(g)) < 1e-8


def test_at_the_minimum_no_step_is_taken() -> None:
    out = _newton_finish(quadratic, quadratic_vg, X_MIN.copy(), 5.0, np.zeros(2), Control())
    assert out is not None and out[2] == 0


def test_a_saddle_is_left_to_bobyqa() -> None:
    S = np.array([[1.0, 0.0], [0.0, -1.0]])

    def vg(x):
        return 0.5 * float(x @ S @ x), S @ x

    x0 = np.array([0.3, 0.2])
    assert _newton_finish(lambda x: vg(x)[0], vg, x0, vg(x0)[0], np.full(2, -np.inf),
                          Control()) is None


def test_lbfgsb_stops_when_its_evaluations_sit_at_the_rounding_floor() -> None:
    """A criterion of magnitude 1e7 with rounding noise of 1e-8 in it and 5e-3 in its gradient
    (as at a million rows): scipy's relative ftol cannot be met, so without the stall rule its
    line search spends evaluations on noise; with it, L-BFGS-B stops near the minimum and says
    why."""
    rng = np.random.default_rng(1)
    calls = [0]

    def vg(x):
        calls[0] += 1
        f, g = quadratic_vg(x)
        return 1e7 + f + 1e-8 * rng.standard_normal(), g + 5e-3 * rng.standard_normal(2)

    x, fx, ok, status, message = _lbfgsb(vg, np.array([0.2, 0.9]), np.zeros(2), Control())
    assert not ok and "rounding floor" in message
    np.testing.assert_allclose(x, X_MIN, atol=2e-3)  # the gradient's noise / H's eigenvalues
    assert fx - 1e7 - 5.0 < 1e-5
    assert calls[0] < 30


CASES = ["sleepstudy-slopes-REML", "cake-interaction-REML", "Penicillin-crossed-ML",
         "Dyestuff-intercept-REML"]


def test_polish_stops_on_the_last_hessian_with_the_same_steps(monkeypatch) -> None:
    """The Newton polish (mixedref.fitting.polish) stops without a new Hessian where the last
    one predicts a step below the rounding floor: the estimate and every reported number are
    those of the polish that recomputes the Hessian before stopping, bit for bit, at fewer
    gradients (nfev)."""
    import warnings

    import mixedref
    from harness.core import runner
    from harness.core.catalog import load_catalog
    from mixedref.fitting import polish

    cases = {c.id: c for c in load_catalog()}

    def fits() -> list:
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for cid in CASES:
                case = cases[cid]
                out.append(mixedref.lmer(case.formula, runner.case_data(case),
                                         REML=bool(case.REML)))
        return out

    now = fits()
    monkeypatch.setattr(polish, "_at_floor", lambda *args: False)
    full = fits()
    for cid, a, b in zip(CASES, now, full, strict=True):
        assert np.array_equal(a.theta, b.theta), cid
        assert a.objective == b.objective, cid
        assert a.optinfo.strategies == b.optinfo.strategies, cid
        assert a.optinfo.gradient == b.optinfo.gradient, cid
        assert a.nfev < b.nfev, (cid, a.nfev, b.nfev)


def test_checks_take_the_polishs_derivatives_at_the_estimate(monkeypatch) -> None:
    """lme4's checks after the Newton polish read its last derivatives (taken at θ̂ or within
    polish.REUSE_SHIFT of it) instead of computing them again: no derivatives of their own,
    the reported gradient the exact one at θ̂, the Hessian's eigenvalues those of a fresh
    central difference of the exact gradient at θ̂ up to that shift (fails on 1bb74a7: the
    checks differenced the criterion, a gradient of 1e-6 to 2e-5 on sleepstudy's slopes)."""
    import warnings

    import mixedref
    from harness.core import runner
    from harness.core.catalog import load_catalog
    from mixedref.engines import PLSObjective
    from mixedref.fitting import optimize
    from mixedref.fitting.convergence import derivatives

    cases = {c.id: c for c in load_catalog()}
    calls = []
    own = optimize.derivatives
    monkeypatch.setattr(optimize, "derivatives", lambda *a, **k: calls.append(1) or own(*a, **k))
    for cid in ("sleepstudy-slopes-REML", "cake-interaction-REML", "Dyestuff-intercept-ML"):
        case = cases[cid]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = mixedref.lmer(case.formula, runner.case_data(case), REML=bool(case.REML))
        assert "polish" in " ".join(m.optinfo.strategies), cid
        assert calls == [], cid
        fn = PLSObjective(m.model, bool(case.REML))
        lower = m.model.theta_lower.astype(float)
        free, g, H = derivatives(fn, m.theta, lower, value_and_grad=fn.value_and_grad)
        np.testing.assert_array_equal(m.optinfo.gradient, fn.value_and_grad(m.theta)[1][free])
        assert np.max(np.abs(m.optinfo.gradient)) < 1e-9, cid
        np.testing.assert_allclose(m.optinfo.hessian_eigenvalues, np.linalg.eigvalsh(H),
                                   rtol=1e-5)
