"""Errors mixedref raises for bad input: each names the problem (column, term, value)."""


class MixedrefError(ValueError):
    """Base class: input mixedref cannot fit, with a message naming what is wrong."""


class FormulaError(MixedrefError):
    """The formula cannot be read, or names something the data does not have."""


class DataError(MixedrefError):
    """The data cannot be fitted as given (types, missing or infinite values, sizes)."""
