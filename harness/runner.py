"""Run one case through one implementation: never raises, always gives a record.

:func:`fit_case` times the fit, turns an exception, a NaN/inf result or a fit longer than the
case's timeout into a failed record with the reason, so the session goes on (lme4's R code
is stopped by R itself at the timeout, see harness/rbridge.py). Records are cached
per (implementation, case) within the process, so the reference for a case is fitted once per
pytest(-xdist) worker however many candidates compare with it.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import traceback
from typing import Any

from harness.record import failed_record, normalize_record

NOT_SUPPORTED = "not supported: "  # prefix of the error of a fit the implementation declined

_cache: dict[tuple[str, str], dict[str, Any]] = {}


class CaseTimeout(Exception):
    """The fit ran longer than the case's timeout."""


def clear_cache() -> None:
    """Forget every cached record (tests use this)."""
    _cache.clear()


def case_data(case: Any) -> Any:
    """The case's DataFrame: a fresh copy for each fit, so that an implementation that changes
    its input cannot change another's (harness.datasets caches the parsed file, keyed by the
    catalog's data folders as well as the name)."""
    from harness.catalog import load_data

    return load_data(case)


def fit_case(adapter: Any, case: Any, data: Any = None, *, timeout: float | None = None,
             use_cache: bool = True) -> dict[str, Any]:
    """The record of ``adapter`` fitting ``case`` (data loaded from the catalog if not given).

    ``timeout`` (seconds) overrides ``case.timeout``. Pure-Python adapters are interrupted by
    SIGALRM when it runs out (main thread only). An adapter with ``handles_timeout`` (lme4 in
    R, which SIGALRM must not interrupt) is given the limit as ``fit(..., timeout=)`` and
    stops itself; any other non-interruptible adapter is judged after it returns.
    """
    key = (adapter.name, case.id)
    if use_cache and key in _cache:
        return _cache[key]
    limit = timeout if timeout is not None else getattr(case, "timeout", None)
    REML = bool(getattr(case, "REML", None))
    t0 = time.perf_counter()
    try:
        if data is None:
            data = case_data(case)
        with _alarm(limit if getattr(adapter, "interruptible", True) else None):
            if getattr(adapter, "handles_timeout", False):
                raw = adapter.fit(case, data, timeout=limit)
            else:
                raw = adapter.fit(case, data)
        elapsed = time.perf_counter() - t0
        rec = normalize_record(raw, adapter.name, case.id)
        if rec.get("seconds") is None:
            rec["seconds"] = elapsed
        if rec.get("REML") is None:
            rec["REML"] = REML
        if limit and elapsed > limit and rec["error"] is None:
            rec["error"] = f"timeout: the fit took {elapsed:.1f} s, more than the case's {limit} s"
    except CaseTimeout:
        rec = failed_record(adapter.name, case.id,
                            f"timeout: the fit was stopped after {limit} s", REML=REML,
                            seconds=time.perf_counter() - t0)
    except NotImplementedError as exc:
        rec = failed_record(adapter.name, case.id, NOT_SUPPORTED + (str(exc) or "not implemented"),
                            REML=REML)
    except Exception as exc:
        rec = failed_record(adapter.name, case.id, _describe(exc), REML=REML,
                            seconds=time.perf_counter() - t0)
    if use_cache:
        _cache[key] = rec
    return rec


def is_not_supported(record: dict[str, Any]) -> bool:
    """True for the record of a fit the implementation declined (NotImplementedError)."""
    return str(record.get("error") or "").startswith(NOT_SUPPORTED)


def _describe(exc: BaseException) -> str:
    """The exception's type and message, and where in the implementation it was raised."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text + where


class _alarm:
    """Raise CaseTimeout in the main thread after ``seconds`` (no-op elsewhere or when None)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds if seconds and math.isfinite(seconds) and seconds > 0 else None
        self.active = (self.seconds is not None and hasattr(signal, "setitimer")
                       and threading.current_thread() is threading.main_thread())

    def __enter__(self) -> None:
        if self.active:
            self.previous = signal.signal(signal.SIGALRM, self._raise)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        raise CaseTimeout()
