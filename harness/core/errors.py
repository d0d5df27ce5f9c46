"""The harness's own errors: about catalogs, datasets, records and R, never mixedref's (the
harness uses mixedref only as an implementation and as a judge)."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of the harness's errors."""


class DataConversionError(HarnessError, ValueError):
    """A DataFrame (or a column of it) that cannot be handed to an implementation faithfully:
    the message names the column."""


class RBridgeError(HarnessError):
    """R failed outside the fit's own error handling (bad arguments, a script error)."""


class JudgeError(HarnessError):
    """A record whose estimates the judge cannot evaluate (no σ, terms it cannot match)."""
