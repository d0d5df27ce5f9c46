"""GLM families and links as R's ``stats`` defines them (what glmer takes as ``family=``).

A :class:`Family` carries the link (linkfun, linkinv, mu_eta), the variance function, the unit
deviance (``dev_resids``), R's ``aic`` (-2 log-likelihood of the family, with R's dispersion
plug-in for Gamma and inverse Gaussian) and the validity checks of mu and eta. Names, link
names and defaults are R's: ``binomial`` (logit, probit, cauchit, log, cloglog), ``poisson``
(log, identity, sqrt), ``Gamma`` (inverse, identity, log), ``inverse.gaussian`` (1/mu^2,
inverse, identity, log). :func:`get_family` turns what a user passes into a Family and raises
:class:`FamilyError` for a name or link R does not know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from mixedref.errors import MixedrefError, ResponseError

Array = np.ndarray

_EPS = np.finfo(float).eps
#: R's thresholds in binomial()$linkinv / mu.eta (logit) and make.link's probit/cloglog
_THRESH = -np.log(_EPS)
_MTHRESH = np.log(_EPS)
_PROBIT_T = -special.ndtri(_EPS)


class FamilyError(MixedrefError):
    """An unknown family, or a link the family does not offer."""


@dataclass(frozen=True)
class Link:
    """A link as R's make.link: g (linkfun), g^-1 (linkinv), d mu / d eta, valideta."""

    name: str
    linkfun: Callable[[Array], Array]
    linkinv: Callable[[Array], Array]
    mu_eta: Callable[[Array], Array]
    valideta: Callable[[Array], bool] = lambda eta: True


def _logit_inv(eta: Array) -> Array:
    return special.expit(eta)


def _logit_mu_eta(eta: Array) -> Array:
    e = np.exp(-np.abs(eta))
    out = e / (1.0 + e) ** 2
    return np.maximum(out, _EPS)


def _probit_inv(eta: Array) -> Array:
    return special.ndtr(np.clip(eta, -_PROBIT_T, _PROBIT_T))


def _probit_mu_eta(eta: Array) -> Array:
    return np.maximum(np.exp(-0.5 * eta * eta) / np.sqrt(2 * np.pi), _EPS)


def _cloglog_inv(eta: Array) -> Array:
    return np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS)


def _cloglog_mu_eta(eta: Array) -> Array:
    eta = np.minimum(eta, 700.0)
    return np.maximum(np.exp(eta) * np.exp(-np.exp(eta)), _EPS)


def _cauchit_inv(eta: Array) -> Array:
    thresh = -(np.tan(np.pi * (_EPS - 0.5)))
    return 0.5 + np.arctan(np.clip(eta, -thresh, thresh)) / np.pi


def _cauchit_mu_eta(eta: Array) -> Array:
    return np.maximum(1.0 / (np.pi * (1.0 + eta * eta)), _EPS)


LINKS: dict[str, Link] = {
    "logit": Link("logit", special.logit, _logit_inv, _logit_mu_eta),
    "probit": Link("probit", special.ndtri, _probit_inv, _probit_mu_eta),
    "cloglog": Link("cloglog", lambda mu: np.log(-np.log1p(-mu)), _cloglog_inv, _cloglog_mu_eta),
    "cauchit": Link("cauchit", lambda mu: np.tan(np.pi * (mu - 0.5)), _cauchit_inv,
                    _cauchit_mu_eta),
    "log": Link("log", np.log, lambda eta: np.maximum(np.exp(eta), _EPS),
                lambda eta: np.maximum(np.exp(eta), _EPS)),
    "identity": Link("identity", lambda mu: np.asarray(mu, float),
                     lambda eta: np.asarray(eta, float),
                     lambda eta: np.ones_like(eta, dtype=float)),
    "sqrt": Link("sqrt", np.sqrt, lambda eta: eta * eta, lambda eta: 2.0 * eta,
                 lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta > 0))),
    "inverse": Link("inverse", lambda mu: 1.0 / mu, lambda eta: 1.0 / eta,
                    lambda eta: -1.0 / (eta * eta),
                    lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta != 0))),
    "1/mu^2": Link("1/mu^2", lambda mu: 1.0 / (mu * mu), lambda eta: 1.0 / np.sqrt(eta),
                   lambda eta: -1.0 / (2.0 * eta ** 1.5),
                   lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta > 0))),
}


def _ylogy(y: Array, mu: Array) -> Array:
    """y log(y / mu), 0 where y == 0 (R's y_log_y)."""
    return special.xlogy(y, y / mu)


# ---------------------------------------------------------------------------- families


def _binom_dev(y: Array, mu: Array, wt: Array) -> Array:
    """R's binomial()$dev.resids; for a 0/1 response the one log that is not zero (the same
    numbers, at 2/5 of the cost: PIRLS evaluates it several times per criterion)."""
    binary = (y == 0.0) | (y == 1.0)
    if binary.all():
        return -2.0 * wt * np.log(np.where(y == 1.0, mu, 1.0 - mu))
    return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))


def _binom_aic(y: Array, n: Array, mu: Array, wt: Array, dev: float) -> float:
    """R's binomial()$aic: m trials per row (n when any n > 1, else the prior weights)."""
    m = n if np.any(n > 1) else wt
    k = np.round(m * y)
    mm = np.round(m)
    logd = (special.gammaln(mm + 1) - special.gammaln(k + 1) - special.gammaln(mm - k + 1)
            + special.xlogy(k, mu) + special.xlog1py(mm - k, -mu))
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
    return float(-2.0 * np.sum(f * logd))


def _pois_dev(y: Array, mu: Array, wt: Array) -> Array:
    return 2.0 * wt * (_ylogy(y, mu) - (y - mu))


def _pois_aic(y: Array, n: Array, mu: Array, wt: Array, dev: float) -> float:
    logd = special.xlogy(y, mu) - mu - special.gammaln(y + 1)
    return float(-2.0 * np.sum(logd * wt))


def _gamma_dev(y: Array, mu: Array, wt: Array) -> Array:
    return -2.0 * wt * (np.log(np.where(y == 0, 1.0, y / mu)) - (y - mu) / mu)


def _gamma_aic(y: Array, n: Array, mu: Array, wt: Array, dev: float) -> float:
    nn = np.sum(wt)
    disp = dev / nn
    shape = 1.0 / disp
    scale = mu * disp
    logd = (-special.gammaln(shape) - shape * np.log(scale) + (shape - 1.0) * np.log(y)
            - y / scale)
    return float(-2.0 * np.sum(logd * wt) + 2.0)


def _ig_dev(y: Array, mu: Array, wt: Array) -> Array:
    return wt * ((y - mu) ** 2) / (y * mu * mu)


def _ig_aic(y: Array, n: Array, mu: Array, wt: Array, dev: float) -> float:
    sw = np.sum(wt)
    return float(sw * (np.log(dev / sw * 2.0 * np.pi) + 1.0) + 3.0 * np.sum(np.log(y) * wt) + 2.0)


# ----------------------------------------------------------------- initialize, validate, simulate
# R's family$initialize (the starting mean and its checks, as errors: R only warns about
# non-integer counts) and simulate, one set per family.


def _binom_start(y: Array, w: Array) -> Array:
    return (w * y + 0.5) / (w + 1.0)


def _binom_check(y: Array, w: Array, response: str) -> None:
    if np.any((y < 0) | (y > 1)):
        raise ResponseError(f"binomial response {response!r}: y values must be 0 <= y <= 1 "
                            "(proportions, with the trials as weights, or 0/1, or "
                            "cbind(successes, failures))")
    m = w * y
    if np.any(np.abs(m - np.round(m)) > 1e-3):
        raise ResponseError(f"non-integer #successes in the binomial response {response!r}: "
                            "weights * y must be whole numbers (give the trials as weights)")


def _binom_draw(mu: Array, w: Array | None, sigma: float, rng: np.random.Generator) -> Array:
    if w is None:
        return rng.binomial(1, mu).astype(float)
    trials = np.rint(w).astype(np.int64)[:, None]
    return rng.binomial(trials, mu) / trials


def _pois_check(y: Array, w: Array, response: str) -> None:
    if np.any(y < 0):
        raise ResponseError(f"negative values not allowed for the 'Poisson' family "
                            f"(response {response!r})")
    if np.any(np.abs(y - np.round(y)) > 1e-7 * np.maximum(1.0, np.abs(y))):
        raise ResponseError(f"non-integer counts in the Poisson response {response!r}")


def _gamma_check(y: Array, w: Array, response: str) -> None:
    if np.any(y <= 0):
        raise ResponseError(f"non-positive values not allowed for the 'Gamma' family "
                            f"(response {response!r})")


def _gamma_draw(mu: Array, w: Array | None, sigma: float, rng: np.random.Generator) -> Array:
    shape = 1.0 / sigma**2
    return rng.gamma(shape, mu / shape)


def _ig_check(y: Array, w: Array, response: str) -> None:
    if np.any(y <= 0):
        raise ResponseError(f"positive values only are allowed for the 'inverse.gaussian' "
                            f"family (response {response!r})")


@dataclass(frozen=True)
class Family:
    """An R family object: its name and link, and the functions glmer needs of it, including
    R's initialize (the starting mean, the response's checks) and simulate."""

    name: str
    link: str
    linkfun: Callable[[Array], Array]
    linkinv: Callable[[Array], Array]
    mu_eta: Callable[[Array], Array]
    variance: Callable[[Array], Array]
    dev_resids: Callable[[Array, Array, Array], Array]
    aic: Callable[[Array, Array, Array, Array, float], float]
    validmu: Callable[[Array], bool]
    valideta: Callable[[Array], bool]
    #: True when the family has a scale parameter that glmer estimates (Gamma, inverse Gaussian)
    has_scale: bool = False
    #: True when the family takes a cbind(successes, failures) or factor response, the trials
    #: travelling in the prior weights (binomial)
    takes_trials: bool = False
    #: the negative binomial's θ, fixed (MASS's negative.binomial); None for other families
    theta: float | None = None
    _start: Callable[[Array, Array], Array] = lambda y, w: y.copy()
    _check: Callable[[Array, Array, str], None] = lambda y, w, response: None
    _draw: Callable[[Array, Array | None, float, np.random.Generator], Array] | None = None

    def initialize(self, y: Array, w: Array) -> Array:
        """R's family$initialize: the starting mean (mustart) for the response y and prior
        weights w."""
        return self._start(y, w)

    def validate(self, y: Array, w: Array, response: str, counts: bool = False) -> None:
        """R's family$initialize checks on the response (as errors naming ``response``); a
        constant response is refused unless it came as counts (cbind)."""
        self._check(y, w, response)
        if np.ptp(y) == 0 and not counts:
            raise ResponseError(f"response {response!r} is constant")

    def simulate(self, mu: Array, w: Array | None, sigma: float, rng: np.random.Generator
                 ) -> Array:
        """Responses drawn from the family at the means ``mu`` (R's family$simulate): w the
        prior weights (binomial: the trials), sigma the scale of families that have one."""
        if self._draw is None:
            raise MixedrefError(f"simulate does not know the family {self.name!r}")
        return self._draw(mu, w, sigma, rng)

    def __repr__(self) -> str:
        return f"Family({self.name!r}, link={self.link!r})"


_FAMILIES = {
    # name: (default link, allowed links, variance, dev_resids, aic, validmu, has_scale,
    #        takes_trials, initialize, validate, simulate)
    "binomial": ("logit", ("logit", "probit", "cauchit", "log", "cloglog"),
                 lambda mu: mu * (1.0 - mu), _binom_dev, _binom_aic,
                 lambda mu: bool(np.all(np.isfinite(mu)) and np.all((mu > 0) & (mu < 1))), False,
                 True, _binom_start, _binom_check, _binom_draw),
    "poisson": ("log", ("log", "identity", "sqrt"), lambda mu: mu, _pois_dev, _pois_aic,
                lambda mu: bool(np.all(np.isfinite(mu)) and np.all(mu > 0)), False,
                False, lambda y, w: y + 0.1, _pois_check,
                lambda mu, w, sigma, rng: rng.poisson(mu).astype(float)),
    "Gamma": ("inverse", ("inverse", "identity", "log"), lambda mu: mu * mu, _gamma_dev,
              _gamma_aic, lambda mu: bool(np.all(np.isfinite(mu)) and np.all(mu > 0)), True,
              False, lambda y, w: y.copy(), _gamma_check, _gamma_draw),
    "inverse.gaussian": ("1/mu^2", ("1/mu^2", "inverse", "identity", "log"),
                         lambda mu: mu ** 3, _ig_dev, _ig_aic, lambda mu: True, True,
                         False, lambda y, w: y.copy(), _ig_check,
                         lambda mu, w, sigma, rng: rng.wald(mu, 1.0 / sigma**2)),
}

#: Spellings R accepts for the family argument as a string (glmer calls get(family)).
_ALIASES = {"binomial": "binomial", "poisson": "poisson", "Gamma": "Gamma",
            "inverse.gaussian": "inverse.gaussian", "quasibinomial": None, "quasipoisson": None,
            "quasi": None}


def make_family(name: str, link: str | None = None) -> Family:
    """The family ``name`` with ``link`` (None: R's default link for it)."""
    if name == "gaussian":
        raise FamilyError("family 'gaussian' (identity link) is lmer's model: use mixedref.lmer")
    if name in _ALIASES and _ALIASES[name] is None:
        raise FamilyError(f"family {name!r} is a quasi-likelihood family, which glmer does not fit")
    if name not in _FAMILIES:
        hint = ""
        low = {k.lower(): k for k in _FAMILIES}
        if name.lower() in low:
            hint = f" (R spells it {low[name.lower()]!r})"
        raise FamilyError(f"unknown family {name!r}{hint}; glmer's families: "
                          f"{', '.join(_FAMILIES)}")
    (default, allowed, variance, dev, aic, validmu, has_scale, takes_trials, start, check,
     draw) = _FAMILIES[name]
    link = default if link is None else link
    if link not in allowed:
        raise FamilyError(f"link {link!r} not available for {name} family; available links are "
                          + ", ".join(repr(k) for k in allowed))
    lk = LINKS[link]
    return Family(name=name, link=link, linkfun=lk.linkfun, linkinv=lk.linkinv,
                  mu_eta=lk.mu_eta, variance=variance, dev_resids=dev, aic=aic,
                  validmu=validmu, valideta=lk.valideta, has_scale=has_scale,
                  takes_trials=takes_trials, _start=start, _check=check, _draw=draw)


def binomial(link: str = "logit") -> Family:
    return make_family("binomial", link)


def poisson(link: str = "log") -> Family:
    return make_family("poisson", link)


def Gamma(link: str = "inverse") -> Family:  # noqa: N802 - R's name
    return make_family("Gamma", link)


def inverse_gaussian(link: str = "1/mu^2") -> Family:
    return make_family("inverse.gaussian", link)


def get_family(family: str | Family, link: str | None = None) -> Family:
    """A Family from a name as R writes it (with ``link``) or a Family (``link`` must then be
    None or the family's own)."""
    if isinstance(family, Family):
        if link is not None and link != family.link:
            return make_family(family.name, link)
        return family
    if not isinstance(family, str):
        raise FamilyError(f"family must be a name such as 'binomial' or a Family, not "
                          f"{type(family).__name__}")
    return make_family(family, link)


# ------------------------------------------------------------------- negative binomial (fixed θ)
# MASS's negative.binomial(theta, link): what lme4's glmer.nb fits at each θ it tries.

def _nb_check(y: Array, w: Array, response: str) -> None:
    """Counts only: the first negative or non-integer value is named with the response."""
    bad = (y < 0) | (np.abs(y - np.round(y)) > 1e-7 * np.maximum(1.0, np.abs(y)))
    if np.any(bad):
        value = y[np.flatnonzero(bad)[0]]
        raise ResponseError(f"the negative binomial family takes counts: response {response!r} "
                            f"has the value {value:g} (row {int(np.flatnonzero(bad)[0]) + 1} "
                            "of the rows used), not a non-negative whole number")


def negative_binomial(theta: float, link: str = "log") -> Family:
    """MASS's ``negative.binomial(theta, link)``: variance μ + μ²/θ with θ fixed, MASS's
    deviance residuals, aic and start (y + (y == 0)/6), named as MASS names it
    ("Negative Binomial(θ rounded to 4 digits)"); the response must be counts."""
    theta = float(theta)
    if not np.isfinite(theta) or theta <= 0:
        raise FamilyError(f"negative binomial theta must be a positive number, got {theta!r}")
    allowed = ("log", "identity", "sqrt")
    if link not in allowed:
        raise FamilyError(f"link {link!r} not available for the negative binomial family; "
                          "available links are " + ", ".join(repr(k) for k in allowed))

    def dev_resids(y: Array, mu: Array, wt: Array) -> Array:
        return 2.0 * wt * (special.xlogy(y, np.maximum(1.0, y) / mu)
                           - (y + theta) * np.log((y + theta) / (mu + theta)))

    def aic(y: Array, n: Array, mu: Array, wt: Array, dev: float) -> float:
        term = ((y + theta) * np.log(mu + theta) - special.xlogy(y, mu)
                + special.gammaln(y + 1.0) - theta * np.log(theta) + special.gammaln(theta)
                - special.gammaln(theta + y))
        return float(2.0 * np.sum(term * wt))

    def draw(mu: Array, w: Array | None, sigma: float, rng: np.random.Generator) -> Array:
        return rng.negative_binomial(theta, theta / (theta + mu)).astype(float)

    lk = LINKS[link]
    return Family(name=f"Negative Binomial({round(theta, 4):.7g})", link=link, theta=theta,
                  linkfun=lk.linkfun, linkinv=lk.linkinv, mu_eta=lk.mu_eta,
                  variance=lambda mu: mu + mu * mu / theta, dev_resids=dev_resids, aic=aic,
                  validmu=lambda mu: bool(np.all(np.isfinite(mu)) and np.all(mu > 0)),
                  valideta=lk.valideta, _start=lambda y, w: y + (y == 0) / 6.0,
                  _check=_nb_check, _draw=draw)
