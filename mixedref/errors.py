"""Errors mixedref raises for bad input: each names the problem (column, term, value); and the
warnings it gives where lme4 (or R) warns but still returns a fit."""


class MixedrefError(ValueError):
    """Base class: input mixedref cannot fit, with a message naming what is wrong."""


class FormulaError(MixedrefError):
    """The formula cannot be read, or names something the data does not have."""


class DataError(MixedrefError):
    """The data cannot be fitted as given (types, missing or infinite values, sizes)."""


class ResponseError(DataError):
    """The response cannot be modelled by the family (range, integer counts, weights)."""


class MixedrefWarning(UserWarning):
    """Base class of mixedref's warnings: the fit goes on, as lme4's does, but something in the
    input deserves a look."""


class ScaleWarning(MixedrefWarning):
    """lme4's ``checkScaleX``: "Some predictor variables are on very different scales: consider
    rescaling" (a non-0/1 column of X with a standard deviation, or a ratio of two, beyond
    1e3)."""


class NaNsProducedWarning(MixedrefWarning):
    """R's "NaNs produced": a function in the formula (``sqrt``, ``log``, ...) returned NaN for a
    value that was not missing; those rows are then dropped as missing (na.omit)."""


class DegenerateResponseWarning(MixedrefWarning):
    """The response is reproduced exactly by the fixed effects (constant, or a linear function of
    the predictors): the residual variance is 0 and the variance components are not identified.
    lme4 1.1-31 returns sigma = 0 with convergence warnings, or silently."""


class DuplicateTermWarning(MixedrefWarning):
    """The same random-effects term appears twice: lme4 1.1-31 fits both (silently), but only the
    sum of their variances is identified."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without converging, or lme4's convergence checks (checkConv:
    scaled gradient, Hessian) fail at the estimate; the text is lme4's."""


class SingularFitWarning(UserWarning):
    """The estimate is on the boundary (a variance of zero or a correlation of ±1), as lme4's
    "boundary (singular) fit: see help('isSingular')"."""
