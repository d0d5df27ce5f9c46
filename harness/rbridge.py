"""The bridge to R's lme4: one embedded R per process, started on first use.

R is started lazily (about 2 s with lme4), once per process (each pytest-xdist worker has its
own). lme4 is attached and the r_scripts/*.R files marked "Sourced by harness/rbridge.py" are
sourced into a dedicated R environment, so nothing lands in R's globalenv. DataFrames are
converted column by column with factor levels passed explicitly (pandas category order;
LC_COLLATE=C for the rest), and fits come back as JSON text made inside R, so no rpy2
conversion rule touches the numbers. If rpy2, R or lme4 cannot be loaded, :func:`unavailable`
gives one reason string instead of a traceback.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.record import normalize_record

_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "env": None, "reason": None, "versions": None}


def r_scripts_dir() -> Path | None:
    """The folder holding lmer_record.R: $MIXEDREF_R_SCRIPTS, the package's harness/r_scripts
    (installed package data), or the repository's r_scripts/ next to harness/ (a clone)."""
    here = Path(__file__).resolve().parent
    candidates = [os.environ.get("MIXEDREF_R_SCRIPTS"), here / "r_scripts",
                  here.parent / "r_scripts"]
    for c in candidates:
        if c and (Path(c) / "lmer_record.R").is_file():
            return Path(c)
    return None


LIBRARY_MARKER = "Sourced by harness/rbridge.py"


def library_scripts(scripts: Path) -> list[Path]:
    """The R files the bridge sources: those whose header (first 15 lines) says
    "Sourced by harness/rbridge.py" (function definitions only). Other r_scripts are command-line
    scripts that do their work when run, so sourcing them would run them."""
    out = []
    for path in sorted(scripts.glob("*.R")):
        try:
            head = path.read_text(errors="replace").splitlines()[:15]
        except OSError:
            continue
        if any(LIBRARY_MARKER in line for line in head):
            out.append(path)
    return out


def _start() -> None:
    """Start R, attach lme4 and source the scripts; sets _state's env or reason."""
    _state["pid"] = os.getpid()
    scripts = r_scripts_dir()
    if scripts is None:
        _state["reason"] = ("R scripts not found (no lmer_record.R in harness/r_scripts "
                            "or r_scripts)")
        return
    os.environ["LC_COLLATE"] = "C"
    try:
        import rpy2.rinterface_lib.callbacks as callbacks
        import rpy2.robjects as ro
    except Exception as exc:  # ImportError, or R's shared library failing to load
        _state["reason"] = f"R not available: rpy2 import failed: {type(exc).__name__}: {exc}"
        return
    # R's console output (start-up chatter, print()) should not interleave with pytest's.
    callbacks.consolewrite_print = lambda s: None
    callbacks.consolewrite_warnerror = lambda s: None
    try:
        ro.r('invisible(Sys.setlocale("LC_COLLATE", "C"))')
        ro.r("suppressPackageStartupMessages(library(lme4))")
        ro.r("suppressPackageStartupMessages(requireNamespace('jsonlite'))")
    except Exception as exc:
        _state["reason"] = f"R started but lme4/jsonlite failed to load: {_r_error(exc)}"
        return
    try:
        env = ro.r("new.env(parent = globalenv())")
        for path in library_scripts(scripts):
            ro.r["sys.source"](str(path), envir=env)
        versions = json.loads(str(ro.r("jsonlite::toJSON")(env["lmer_versions"](),
                                                           auto_unbox=True)[0]))
    except Exception as exc:
        _state["reason"] = f"R scripts in {scripts} failed to load: {_r_error(exc)}"
        return
    _state["env"], _state["versions"] = env, versions


def _r_error(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _ensure() -> Any:
    with _lock:
        if _state["pid"] != os.getpid():
            _state.update(env=None, reason=None, versions=None)
            _start()
    return _state["env"]


def unavailable() -> str | None:
    """None when R and lme4 are usable in this process, else the reason (starts R if needed)."""
    _ensure()
    return _state["reason"]


def versions() -> dict[str, str]:
    """R, lme4, Matrix, BLAS versions of the embedded R (empty when unavailable)."""
    _ensure()
    return dict(_state["versions"] or {})


def _env() -> Any:
    env = _ensure()
    if env is None:
        raise RuntimeError(_state["reason"])
    return env


def to_r_frame(data: pd.DataFrame) -> Any:
    """An R data.frame with the same columns: numbers as doubles, booleans as logicals,
    categoricals as factors (ordered ones as ordered factors) with pandas' level order,
    strings as character vectors; missing values as NA."""
    import rpy2.robjects as ro

    env = _env()
    columns: dict[str, Any] = {}
    for name, col in data.items():
        columns[str(name)] = _to_r_vector(str(name), col, ro, env)
    return env["harness_frame"](ro.ListVector(columns), len(data))


def _to_r_vector(name: str, col: pd.Series, ro: Any, env: Any) -> Any:
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        vec = ro.IntVector([int(c) + 1 if c >= 0 else ro.NA_Integer for c in codes])
        levels = ro.StrVector([str(c) for c in col.cat.categories])
        return env["harness_factor"](vec, levels, bool(col.cat.ordered))
    if pd.api.types.is_bool_dtype(col.dtype) and not col.isna().any():
        return ro.BoolVector(col.to_numpy(dtype=bool).tolist())
    if pd.api.types.is_numeric_dtype(col.dtype):
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return ro.FloatVector([ro.NA_Real if np.isnan(v) else float(v) for v in values])
    if pd.api.types.is_string_dtype(col.dtype) or col.dtype == object:
        return ro.StrVector([ro.NA_Character if pd.isna(v) else str(v) for v in col])
    raise TypeError(f"column {name!r} has dtype {col.dtype}, which cannot be passed to R")


def lmer_record(data: pd.DataFrame | Any, formula: str, REML: bool, case_id: str,
                impl: str = "lme4", optimizer: str | None = None) -> dict[str, Any]:
    """Fit one case with lme4 (inside R, warnings captured there) and return its record.
    ``data`` is a DataFrame or an R data.frame already converted with :func:`to_r_frame`;
    ``optimizer`` replaces lmer's default (lmerControl(optimizer=...)), None keeps it."""
    import rpy2.robjects as ro

    env = _env()
    rdata = to_r_frame(data) if isinstance(data, pd.DataFrame) else data
    opt = ro.NULL if optimizer is None else optimizer
    text = env["lmer_record_json"](rdata, formula, bool(REML), case_id, impl, opt)[0]
    raw = json.loads(str(text))
    return normalize_record(raw, impl, case_id)


def call(function: str, data: pd.DataFrame | Any, *args: Any) -> Any:
    """Call ``function`` (defined by a sourced r_scripts file) with ``data`` converted to an
    R data.frame (or already converted) and ``args``; returns the R result (rpy2 object)."""
    env = _env()
    rdata = to_r_frame(data) if isinstance(data, pd.DataFrame) else data
    return env[function](rdata, *args)


def lmer_fit_only(rdata: Any, formula: str, REML: bool) -> None:
    """Fit in R and return nothing: the call the benchmarks time (data already converted)."""
    _env()["lmer_fit_only"](rdata, formula, bool(REML))
