"""Run one case through one implementation: never raises, always gives a record.

:func:`fit_case` runs the fit in the implementation's worker process (its "lane", see
harness.core.isolation), under a hard time limit and a memory limit: an exception, a NaN/inf result,
a fit past the case's timeout, one that needs too much memory or one that kills its process
becomes a failed record with the reason, and the session goes on. lme4 also stops itself
inside R at the timeout (setTimeLimit, see harness/core/rbridge.py), which keeps its R process
alive; the worker is killed only when that does not happen. Records are cached per
(implementation, case, interpreter) within the process, so the reference for a case is fitted
once per pytest(-xdist) worker however many candidates compare with it.

An adapter whose ``python`` is set (--impl-python) fits in a worker of that interpreter, in
its own environment (harness.core.isolation): the adapter and the catalog's Case are sent, never a
DataFrame (pandas objects do not load across pandas versions): the worker loads the case's data
from the catalog's files, and the record comes back as plain Python.
"""

from __future__ import annotations

import time
from typing import Any

from harness.core import isolation
from harness.core.record import failed_record, normalize_record

NOT_SUPPORTED = "not supported: "  # prefix of the error of a fit the implementation declined

#: Seconds beyond the case's timeout before an adapter that stops itself (``handles_timeout``:
#: lme4's setTimeLimit) is killed: R's limit counts the fit alone, not the data's conversion
#: into R nor the unwinding after the stop.
GRACE = 10.0

_cache: dict[tuple[str, str, str | None], dict[str, Any]] = {}

_describe = isolation.describe  # "TypeName: message (at file:line)"


def clear_cache() -> None:
    """Forget every cached record (tests use this)."""
    _cache.clear()


def case_data(case: Any) -> Any:
    """The case's DataFrame: a fresh copy for each fit, so that an implementation that changes
    its input cannot change another's (harness.core.datasets caches the parsed file, keyed by the
    catalog's data folders as well as the name)."""
    from harness.core.catalog import load_data

    return load_data(case)


def fit_case(adapter: Any, case: Any, data: Any = None, *, timeout: float | None = None,
             memory: int | None = None, use_cache: bool = True,
             isolated: bool = True) -> dict[str, Any]:
    """The record of ``adapter`` fitting ``case`` (data loaded from the catalog if not given).

    ``timeout`` (seconds) overrides ``case.timeout``; ``memory`` (bytes) defaults to
    isolation.DEFAULT_MEMORY. The fit runs in the lane ``adapter.lane`` (default: its name),
    to which the adapter, the case and ``data`` are pickled; the worker loads the case's data
    itself when ``data`` is None. With ``adapter.python`` set the lane runs that interpreter
    and ``data`` is not sent: the worker always loads the case's own data, and data that differ
    from them give a failed record. ``isolated=False`` fits in this process instead (no kill,
    no memory limit: for callers that time or debug a fit; not for an adapter with its own
    interpreter); a fit past the timeout then fails only after it returns. Adapters that run
    no code (``runs_code = False``: recorded answers) are read here either way.
    """
    key = (adapter.name, case.id, getattr(adapter, "python", None))
    if use_cache and key in _cache:
        return _cache[key]
    limit = timeout if timeout is not None else getattr(case, "timeout", None)
    limit = limit if limit and limit > 0 else None
    own_python = getattr(adapter, "python", None) is not None  # never this process then
    if (isolated or own_python) and getattr(adapter, "runs_code", True):
        rec = _fit_isolated(adapter, case, data, limit, memory)
    else:
        rec = _fit_here(adapter, case, data, limit)
    if limit and rec["error"] is None and (rec.get("seconds") or 0) > limit:
        rec["error"] = (f"timeout: the fit took {rec['seconds']:.1f} s, more than the case's "
                        f"{limit:g} s")
    if use_cache:
        _cache[key] = rec
    return rec


def is_not_supported(record: dict[str, Any]) -> bool:
    """True for the record of a fit the implementation declined (NotImplementedError)."""
    return str(record.get("error") or "").startswith(NOT_SUPPORTED)


def fit_record(adapter: Any, case: Any, data: Any, limit: float | None) -> dict[str, Any]:
    """Fit and normalize the record, timing the fit alone (runs in the worker; raises)."""
    if data is None:
        data = case_data(case)
    t0 = time.perf_counter()
    if getattr(adapter, "handles_timeout", False):
        raw = adapter.fit(case, data, timeout=limit)
    else:
        raw = adapter.fit(case, data)
    seconds = time.perf_counter() - t0
    rec = normalize_record(raw, adapter.name, case.id)
    if rec.get("seconds") is None:
        rec["seconds"] = seconds
    if rec.get("REML") is None:
        rec["REML"] = bool(getattr(case, "REML", None))
    return rec


def _fit_isolated(adapter: Any, case: Any, data: Any, limit: float | None,
                  memory: int | None) -> dict[str, Any]:
    lane = getattr(adapter, "lane", None) or adapter.name
    python = getattr(adapter, "python", None)
    REML = bool(getattr(case, "REML", None))
    if python and data is not None:
        why = _not_the_cases_data(case, data)
        if why:
            return failed_record(adapter.name, case.id, why, REML=REML)
        data = None  # the worker loads them: a DataFrame does not cross pandas versions
    hard = limit + GRACE if limit and getattr(adapter, "handles_timeout", False) else limit
    out = isolation.call(lane, "harness.core.runner:fit_record", adapter, case, data, limit,
                         timeout=hard, memory=memory, python=python)
    if out.kind == "ok":
        return out.value
    if out.kind == "not-supported":
        return failed_record(adapter.name, case.id, NOT_SUPPORTED + str(out.error), REML=REML)
    killed = out.kind in ("timeout", "memory", "crashed")
    seconds = out.seconds if killed or out.worker_seconds is None else out.worker_seconds
    return failed_record(adapter.name, case.id, str(out.error), REML=REML, seconds=seconds)


def _not_the_cases_data(case: Any, data: Any) -> str | None:
    """Why ``data`` cannot go to another interpreter's worker (which loads the case's own data
    from the catalog), or None when they are the case's own."""
    try:
        own = case_data(case)
        same = bool(own.equals(data)) and list(own.dtypes) == list(data.dtypes)
    except Exception as exc:  # noqa: BLE001 - a case without catalog data
        return (f"data cannot be sent to another interpreter, and the case's own cannot be "
                f"loaded: {_describe(exc)}")
    if same:
        return None
    return ("data cannot be sent to another interpreter (--impl-python): its worker loads the "
            "case's data from the catalog, and the data given are not the case's own")


def _fit_here(adapter: Any, case: Any, data: Any, limit: float | None) -> dict[str, Any]:
    REML = bool(getattr(case, "REML", None))
    t0 = time.perf_counter()
    try:
        return fit_record(adapter, case, data, limit)
    except NotImplementedError as exc:
        return failed_record(adapter.name, case.id,
                             NOT_SUPPORTED + (" ".join(str(exc).split()) or "not implemented"),
                             REML=REML)
    except Exception as exc:
        return failed_record(adapter.name, case.id, _describe(exc), REML=REML,
                             seconds=time.perf_counter() - t0)
