"""The textbook equations of a linear mixed model, evaluated literally with dense matrices.

This is the oracle every faster code is checked against on small data, following "Mixed models
from scratch: REML and random slopes" (../shared/reference/). The model is

    y = X beta + Z gamma + eps,   gamma ~ N(0, sigma^2 Omega^{-1}),   eps ~ N(0, sigma^2 I),

and with R_theta = I - Z (Z'Z + Omega)^{-1} Z' and A_theta = (X' R X)^{-1} X' R:

* ML:   beta = A y,  sigma2 = (y - X beta)' R (y - X beta) / n,
        l_p(theta) = 1/2 log det R - n/2 log sigma2                      (+ constants)
* REML: sigma2 = y' (R - R X (X'RX)^{-1} X'R) y / (n - p),
        r_p(theta) = 1/2 log det R - 1/2 log det X'RX - (n-p)/2 log sigma2  (+ constants)

The constants -n/2 (1 + log 2 pi) (ML) and -(n-p)/2 (1 + log 2 pi) (REML) are included, so
``loglik`` equals lme4's ``logLik`` and ``objective = -2 loglik`` equals lme4's deviance or REML
criterion. No shortcut is taken: matrices are formed, inverted and multiplied as written, which
is O(n^3); :data:`MAX_DENSE_N` guards the memory.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from mixedref.errors import DataError

#: Largest n for which the dense n x n algebra is attempted (several n x n float64 matrices are
#: alive at once: 4000 -> ~128 MB each).
MAX_DENSE_N = 4000

#: The post's L-BFGS-B bounds for theta = (sigma_alpha/sigma, sigma_eta/sigma, rho).
SLOPES_LOWER = (0.001, 0.001, -1.0)
SLOPES_UPPER = (np.inf, np.inf, 1.0)
SLOPES_START = (0.1, 0.1, 0.1)

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class LiteralEvaluation:
    """The profiled quantities at one Omega^{-1}: beta-hat, sigma2-hat and the likelihood."""

    beta: np.ndarray
    sigma2: float
    log_det_R: float
    log_det_XtRX: float
    loglik: float  # with constants: lme4's logLik (REML log-likelihood under REML)
    objective: float  # -2 loglik: lme4's deviance (ML) or REML criterion
    REML: bool


def check_dense_inputs(X: np.ndarray, Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Validate shapes and values for the dense algebra; return float64 copies."""
    X = np.asarray(X, dtype=float)
    Z = np.asarray(Z.toarray() if hasattr(Z, "toarray") else Z, dtype=float)
    y = np.asarray(y, dtype=float)
    if y.ndim != 1:
        raise DataError(f"y must be a vector, got an array of shape {y.shape}")
    n = y.shape[0]
    if X.ndim != 2 or Z.ndim != 2:
        raise DataError(f"X and Z must be matrices, got shapes {X.shape} and {Z.shape}")
    if X.shape[0] != n or Z.shape[0] != n:
        raise DataError(
            f"row counts differ: y has {n} rows, X has {X.shape[0]}, Z has {Z.shape[0]}"
        )
    if n > MAX_DENSE_N:
        raise DataError(
            f"mixedref.literal forms dense {n} x {n} matrices; n = {n} exceeds its limit of "
            f"{MAX_DENSE_N} rows (use mixedref.lmer for data of this size)"
        )
    for name, arr in (("y", y), ("X", X), ("Z", Z)):
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"{name} has a non-finite value ({arr[where]}) at {where}")
    p = X.shape[1]
    if p >= n:
        raise DataError(f"X has p = {p} columns for n = {n} observations; need p < n")
    if np.linalg.matrix_rank(X) < p:
        raise DataError("X is rank deficient: its columns are linearly dependent")
    return X, Z, y


def R_theta(omega_inv: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """R_theta = I - Z (Z'Z + Omega)^{-1} Z', with Omega = (Omega^{-1})^{-1} inverted explicitly.

    On the boundary (Omega^{-1} singular, e.g. a zero variance or rho = +-1) Omega does not
    exist; there the same matrix is formed from the identity R_theta = (I + Z Omega^{-1} Z')^{-1}
    (Woodbury), which is its limit.
    """
    n = Z.shape[0]
    eye = np.eye(n)
    if np.linalg.cond(omega_inv) < 1e10:
        omega = np.linalg.inv(omega_inv)
        return eye - Z @ np.linalg.inv(Z.T @ Z + omega) @ Z.T
    return np.linalg.inv(eye + Z @ omega_inv @ Z.T)


def _logdet(A: np.ndarray) -> float:
    sign, value = np.linalg.slogdet(A)
    if sign <= 0:
        raise DataError("a matrix that must be positive definite has a non-positive determinant")
    return float(value)


def _check_precision(quad_ml: float, quad_reml: float, y: np.ndarray) -> None:
    """The two forms of the residual quadratic form are equal in exact arithmetic (completing
    the square); when they differ, the dense products cancelled catastrophically (e.g. y = 1e9 +
    noise) and any number returned would be silently wrong, so refuse instead."""
    if not (quad_ml > 0 and abs(quad_ml - quad_reml) <= 1e-6 * quad_ml):
        raise DataError(
            f"the dense equations lost precision: the residual quadratic form is {quad_ml:.6g} "
            f"in one form and {quad_reml:.6g} in the other (|y| up to {np.abs(y).max():.3g}); "
            "subtract a constant from the response, or use mixedref.lmer"
        )


def profiled(
    omega_inv: np.ndarray, X: np.ndarray, Z: np.ndarray, y: np.ndarray, REML: bool
) -> LiteralEvaluation:
    """Profiled ML or REML log-likelihood and the estimates at ``omega_inv`` (the post's eqs.)."""
    X, Z, y = check_dense_inputs(X, Z, y)
    omega_inv = np.asarray(omega_inv, dtype=float)
    q = Z.shape[1]
    if omega_inv.shape != (q, q):
        raise DataError(
            f"Omega^-1 must be {q} x {q} to match Z's {q} columns, got {omega_inv.shape}"
        )
    n, p = X.shape
    R = R_theta(omega_inv, Z)
    XtRX = X.T @ R @ X
    A = np.linalg.inv(XtRX) @ X.T @ R
    beta = A @ y
    log_det_R = _logdet(R)
    log_det_XtRX = _logdet(XtRX)
    resid = y - X @ beta
    quad_ml = float(resid @ R @ resid)  # the ML form of the residual quadratic form
    quad_reml = float(y @ (R - R @ X @ np.linalg.inv(XtRX) @ X.T @ R) @ y)  # the REML form
    _check_precision(quad_ml, quad_reml, y)
    if REML:
        sigma2 = quad_reml / (n - p)
        loglik = (
            0.5 * log_det_R
            - 0.5 * log_det_XtRX
            - 0.5 * (n - p) * math.log(sigma2)
            - 0.5 * (n - p) * (1.0 + _LOG_2PI)
        )
    else:
        sigma2 = quad_ml / n
        loglik = 0.5 * log_det_R - 0.5 * n * math.log(sigma2) - 0.5 * n * (1.0 + _LOG_2PI)
    return LiteralEvaluation(
        beta=beta,
        sigma2=sigma2,
        log_det_R=log_det_R,
        log_det_XtRX=log_det_XtRX,
        loglik=loglik,
        objective=-2.0 * loglik,
        REML=REML,
    )


# --- the post's random-slopes model ---------------------------------------------------------


def slopes_omega_inv(theta: np.ndarray, m: int) -> np.ndarray:
    """The post's block Omega^{-1} for theta = (sigma_alpha/sigma, sigma_eta/sigma, rho) and m
    groups, random effects ordered (alpha_1..alpha_m, eta_1..eta_m)."""
    a, e, rho = (float(v) for v in theta)
    eye = np.eye(m)
    return np.block([[a * a * eye, rho * a * e * eye], [rho * a * e * eye, e * e * eye]])


def random_slopes_Z(codes: np.ndarray, x: np.ndarray, m: int) -> np.ndarray:
    """Z = (blockdiag 1_{n_i} | blockdiag x_i): group indicators, then indicators times x."""
    n = codes.shape[0]
    J = np.zeros((n, m))
    J[np.arange(n), codes] = 1.0
    return np.hstack([J, J * np.asarray(x, dtype=float)[:, None]])


@dataclass(frozen=True)
class SlopesFit:
    """A literal random-slopes fit: the post's estimates and the optimizer's report."""

    beta: np.ndarray
    sigma2: float
    sigma2_alpha: float
    sigma2_eta: float
    rho: float
    theta: np.ndarray  # the post's (sigma_alpha/sigma, sigma_eta/sigma, rho)
    loglik: float
    objective: float
    vcov_beta: np.ndarray
    REML: bool
    nfev: int
    converged: bool
    message: str

    @property
    def lme4_theta(self) -> np.ndarray:
        """The same estimate in lme4's theta: the Cholesky factor of Omega^{-1}'s 2x2 block."""
        a, e, rho = self.theta
        return np.array([a, rho * e, e * math.sqrt(max(0.0, 1.0 - rho * rho))])


def fit_random_slopes(
    X: np.ndarray,
    codes: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    REML: bool = True,
    start: tuple[float, float, float] = SLOPES_START,
) -> SlopesFit:
    """Maximize the profiled (RE)ML likelihood over the post's theta with L-BFGS-B and the
    post's bounds, as the post does, for y ~ X + (1 + x | group)."""
    codes = np.asarray(codes)
    m = int(codes.max()) + 1
    Z = random_slopes_Z(codes, x, m)
    X, Z, y = check_dense_inputs(X, Z, y)

    def negloglik(theta: np.ndarray) -> float:
        return -profiled(slopes_omega_inv(theta, m), X, Z, y, REML).loglik

    opt = minimize(
        negloglik,
        np.asarray(start, dtype=float),
        method="L-BFGS-B",
        bounds=list(zip(SLOPES_LOWER, SLOPES_UPPER, strict=True)),
    )
    theta = np.asarray(opt.x, dtype=float)
    ev = profiled(slopes_omega_inv(theta, m), X, Z, y, REML)
    R = R_theta(slopes_omega_inv(theta, m), Z)
    vcov_beta = ev.sigma2 * np.linalg.inv(X.T @ R @ X)
    return SlopesFit(
        beta=ev.beta,
        sigma2=ev.sigma2,
        sigma2_alpha=theta[0] ** 2 * ev.sigma2,
        sigma2_eta=theta[1] ** 2 * ev.sigma2,
        rho=float(theta[2]),
        theta=theta,
        loglik=ev.loglik,
        objective=ev.objective,
        vcov_beta=vcov_beta,
        REML=REML,
        nfev=int(opt.nfev),
        converged=bool(opt.success),
        message=str(opt.message),
    )


def fit_formula(formula: str, data, REML: bool):
    """Fit ``y ~ fixed + (1 + x | g)`` literally from an lme4 formula: (model frame, fit, seconds).

    Only the post's model (one correlated random intercept and slope term) is supported; any
    other formula raises NotImplementedError naming what is supported.
    """
    from mixedref.frontend.design import build_model  # the formula grammar is shared with lmer

    model = build_model(formula, data)
    terms = model.reterms
    if len(terms) != 1 or terms[0].columns[:1] != ("(Intercept)",) or terms[0].q != 2:
        raise NotImplementedError(
            "mixedref.literal fits only the post's model y ~ ... + (1 + x | g); "
            f"{formula!r} has random terms "
            + ", ".join(f"({' + '.join(t.columns)} | {t.group})" for t in terms)
        )
    if model.weights is not None or model.offset is not None:
        raise NotImplementedError("mixedref.literal has no prior weights or offset")
    term = terms[0]
    started = time.perf_counter()
    fit = fit_random_slopes(model.X, term.codes, term.X[:, 1], model.y, REML=REML)
    return model, fit, time.perf_counter() - started


class LiteralObjective:
    """The dense equations as an objective over lme4's θ for any model frame
    (mixedref.engines.objective):
    Ω⁻¹ = Λ Λᵀ (the relative covariance of the random effects), the criterion -2 × the
    profiled (REML) log-likelihood of :func:`profiled`. O(n³) per call: an oracle for small data.
    """

    has_gradient = False

    def __init__(self, model, REML: bool = True) -> None:
        self.model, self.REML = model, bool(REML)
        self.ntheta = model.ntheta
        self.X = np.asarray(model.X, dtype=float)
        self.y = np.asarray(model.y, dtype=float)
        if model.offset is not None:
            self.y = self.y - np.asarray(model.offset, dtype=float)
        if model.weights is not None:
            raise DataError("the literal objective has no prior weights")
        self.Z = np.hstack([t.Z.toarray() for t in model.reterms])

    @property
    def lower(self) -> np.ndarray:
        return self.model.theta_lower

    @property
    def size(self) -> int:
        return int(self.y.shape[0])

    def omega_inv(self, theta: np.ndarray) -> np.ndarray:
        """Λ Λᵀ: block diagonal, one template product per level of each term (level-major)."""
        from mixedref.frontend.reterm import split_theta

        blocks = [np.kron(np.eye(t.nlevels), t.covariance(th))
                  for t, th in zip(self.model.reterms, split_theta(theta, self.model.reterms),
                                   strict=True)]
        q = sum(b.shape[0] for b in blocks)
        out = np.zeros((q, q))
        k = 0
        for b in blocks:
            out[k:k + b.shape[0], k:k + b.shape[0]] = b
            k += b.shape[0]
        return out

    def __call__(self, theta: np.ndarray) -> float:
        try:
            ev = profiled(self.omega_inv(np.asarray(theta, dtype=float)), self.X, self.Z,
                          self.y, self.REML)
        except np.linalg.LinAlgError:
            return math.inf
        return -2.0 * ev.loglik

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray | None]:
        return self(theta), None
