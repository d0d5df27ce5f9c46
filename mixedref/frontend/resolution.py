"""What float64 can hold of a response: its spread against the spacing of doubles at its level.

A response stored as float64 near a level L is held on a grid of spacing ulp(L) (2.4e-4 at
1e12). What matters for a mixed model is the spread of the response about its fixed effects:
when that spread is only a few thousand grid steps (NIST's SmLs07-09: sd 0.1 at 1e12), the
input itself carries a few significant digits of the variation, and no program can estimate
the variances better than that (docs/certified.md). :func:`check_response` warns with the
numbers; :func:`below_rounding` says when a residual is nothing but rounding (the fixed effects
reproduce the response exactly).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from mixedref.errors import MixedrefWarning

#: a response holding fewer significant digits of its spread than this is warned about: the
#: rounding of the input then moves the variance estimates by more than about 1e-6 relative
#: (on SmLs07, 2.9 digits, the input's own σ² is 5e-5 from NIST's)
MIN_DIGITS = 6.0
#: a residual whose RMS is within this many units of roundoff of the response's magnitude is
#: rounding alone (a least-squares residual of an exactly linear response is a few of them)
ROUNDING_UNITS = 64


class ResponseResolutionWarning(MixedrefWarning):
    """The response's spread is too small for float64 to hold at its level."""


def spacing(level: float) -> float:
    """The spacing of doubles at ``level`` (numpy's ulp)."""
    return float(np.spacing(abs(level)))


def below_rounding(resid_ss: float, r: np.ndarray) -> bool:
    """True when a residual sum of squares over ``r`` (the response as fitted) is rounding
    alone: its RMS at most ROUNDING_UNITS units of roundoff of max |r|."""
    n = max(int(np.size(r)), 1)
    top = float(np.max(np.abs(r))) if np.size(r) else 0.0
    return resid_ss <= n * (ROUNDING_UNITS * np.finfo(float).eps * top) ** 2


def resolution_message(y: np.ndarray, X: np.ndarray, name: str = "y") -> str | None:
    """The warning's text when ``y``'s spread about its least-squares fit on ``X`` holds fewer
    than MIN_DIGITS significant digits at its level, else None."""
    y = np.asarray(y, dtype=float)
    if y.size < 2 or not np.all(np.isfinite(y)):
        return None
    level = float(np.max(np.abs(y)))
    if level == 0:
        return None
    if X.shape[1]:
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        e = y - X @ beta
    else:
        e = y
    spread = float(np.sqrt(np.mean(e * e)))
    step = spacing(level)
    if spread == 0 or below_rounding(float(e @ e), y):
        return None  # degenerate: the fixed effects reproduce it (design.py says so)
    digits = math.log10(spread / step)
    if digits >= MIN_DIGITS:
        return None
    return (f"the response {name!r} varies by {spread:.3g} (RMS about its fixed effects) at a "
            f"level of {level:.6g}, where doubles are spaced {step:.3g}: float64 holds only "
            f"{digits:.1f} significant digits of its variation, and fits on these doubles "
            "cannot recover the variance components to more digits than that; subtract a "
            "constant near its level (or rescale) before it is stored as float64")


#: check_response skips its least squares where the residual the model build computed
#: (ModelFrame.response_resid_ss) already gives this many digits beyond MIN_DIGITS: the two
#: residuals (a QR projection there, lstsq here) then agree far better than a tenfold RMS
CLEAR_MARGIN = 1.0


def clearly_resolved(y: np.ndarray, resid_ss: float | None) -> bool:
    """Whether a residual sum of squares about the fixed effects (None: unknown) shows the
    response held to at least MIN_DIGITS + CLEAR_MARGIN digits of its spread, so that
    :func:`resolution_message` would return None."""
    if resid_ss is None or y.size < 2 or not math.isfinite(resid_ss):
        return False
    level = float(np.max(np.abs(y)))
    if not math.isfinite(level) or level == 0:
        return False
    spread = math.sqrt(resid_ss / y.size)
    return spread > 0 and math.log10(spread / spacing(level)) >= MIN_DIGITS + CLEAR_MARGIN


def check_response(model: Any) -> str | None:
    """Warn (ResponseResolutionWarning) when the model's response is held too coarsely."""
    y = np.asarray(model.y, dtype=float)
    if clearly_resolved(y, getattr(model, "response_resid_ss", None)):
        return None  # the build's residual settles it: no second least squares
    X = np.asarray(model.X, dtype=float)
    msg = resolution_message(y, X, str(getattr(model, "response", None) or "y"))
    if msg:
        warnings.warn(msg, ResponseResolutionWarning, stacklevel=3)
    return msg
