"""The bridge to R's lme4: one embedded R per process, started on first use.

R is started lazily (about 2 s with lme4), once per process (each pytest-xdist worker has its
own). lme4 is attached and the r_scripts/*.R files marked "Sourced by harness/core/rbridge.py"
are
sourced into a dedicated R environment, so nothing lands in R's globalenv. DataFrames are
converted column by column with factor levels passed explicitly (pandas category order;
LC_COLLATE=C for the rest), and fits come back as JSON text made inside R, so no rpy2
conversion rule touches the numbers. If rpy2, R or lme4 cannot be loaded, :func:`unavailable`
gives one reason string instead of a traceback.

R's BLAS runs on :data:`R_BLAS_THREADS` thread(s) in the process that hosts R, whatever
pytest-xdist's ``-n``, and :func:`versions` says which OpenBLAS kernel and how many threads R's
BLAS has, as the loaded library itself reports them (threadpoolctl).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import HOME
from harness.core.errors import DataConversionError, RBridgeError
from harness.core.record import normalize_record

#: Threads of R's BLAS (OpenBLAS reads OPENBLAS_NUM_THREADS when R loads it). One: lme4's
#: recorded answers (harness/references/lme4.json) were made with one thread (the hard cases'
#: commit says so, and tests/references/blas_spread.json.gz reproduces them bit for bit with one
#: thread and not with two); a threaded OpenBLAS splits its products by the thread count, so
#: lme4's last digits, and at singular fits its θ below a zero pivot and lmerTest's df, would
#: depend on -n (a run without -n used two); and the catalog's fits are too small for a second
#: thread to pay (blas_spread.R: 1 thread was as fast as or faster than 2 for every kernel).
R_BLAS_THREADS = 1

_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "env": None, "reason": None, "versions": None}


def r_scripts_dir() -> Path | None:
    """The folder holding lmer_record.R: $MIXEDREF_R_SCRIPTS, the package's harness/r_scripts
    (installed package data), or the repository's r_scripts/ next to harness/ (a clone)."""
    here = HOME
    candidates = [os.environ.get("MIXEDREF_R_SCRIPTS"), here / "r_scripts",
                  here.parent / "r_scripts"]
    for c in candidates:
        if c and (Path(c) / "lmer_record.R").is_file():
            return Path(c)
    return None


LIBRARY_MARKER = "Sourced by harness/core/rbridge.py"


def library_scripts(scripts: Path) -> list[Path]:
    """The R files the bridge sources: those whose header (first 15 lines) says
    "Sourced by harness/core/rbridge.py" (function definitions only). Other r_scripts are
    command-line
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
    # before R (and its BLAS) loads; it stays set, so that harness.core.isolation's per-call limit
    # (which applies this variable in the R lane) keeps R's BLAS on the same count
    os.environ["OPENBLAS_NUM_THREADS"] = str(R_BLAS_THREADS)
    from harness.core.record import SCHEMA_PATH

    os.environ["MIXEDREF_RECORD_SCHEMA"] = str(SCHEMA_PATH)  # r_scripts/record_schema.R
    # rpy2 logs its own failure to find R on stderr; the reason below says it once, ours
    logging.getLogger("rpy2").addHandler(logging.NullHandler())
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
    versions.update(_pin_r_blas(versions))
    _state["env"], _state["versions"] = env, versions


def _pin_r_blas(versions: dict[str, Any]) -> dict[str, str]:
    """Hold R's OpenBLAS at R_BLAS_THREADS (also when it was loaded before the variable was
    set) and return its kernel and thread count as the library reports them
    (openblas_get_corename, openblas_get_num_threads, through threadpoolctl): R's OpenBLAS is
    the one in the folder of R's BLAS or LAPACK library (La_library()). Empty when R's BLAS is
    not an OpenBLAS threadpoolctl sees (the reference BLAS has no threads and no kernels)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return {}
    folders = {os.path.dirname(os.path.realpath(str(versions[k])))
               for k in ("BLAS", "LAPACK") if versions.get(k)}
    for lib in ThreadpoolController().lib_controllers:
        path = os.path.realpath(str(getattr(lib, "filepath", "") or ""))
        if getattr(lib, "internal_api", None) != "openblas" or os.path.dirname(path) not in folders:
            continue
        try:
            lib.set_num_threads(R_BLAS_THREADS)
            return {"BLAS_core": str(lib.architecture), "BLAS_threads": str(lib.num_threads)}
        except Exception:  # noqa: BLE001 - an OpenBLAS without these symbols: nothing to say
            return {}
    return {}


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
    """R, lme4, Matrix, BLAS versions of the embedded R (empty when unavailable), with
    R's OpenBLAS kernel and thread count (BLAS_core, BLAS_threads) where it is OpenBLAS."""
    _ensure()
    return dict(_state["versions"] or {})


def _env() -> Any:
    env = _ensure()
    if env is None:
        raise RuntimeError(_state["reason"])
    return env


def to_r_frame(data: pd.DataFrame, formula: str | None = None) -> Any:
    """An R data.frame with the same columns: numbers as doubles, booleans as logicals,
    categoricals as factors (ordered ones as ordered factors) with pandas' level order,
    strings as character vectors; missing values as NA.

    Raises DataConversionError naming the column for what R cannot be given faithfully: duplicate
    column names, complex or date/time columns, object columns mixing types. With ``formula``,
    such a column whose name the formula's text does not contain is left out instead (the fit
    cannot use it, and lme4 ignores unused columns)."""
    import rpy2.robjects as ro

    env = _env()
    if not isinstance(data, pd.DataFrame):
        raise DataConversionError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if isinstance(data.columns, pd.MultiIndex):
        raise DataConversionError("data has multi-level column names (a MultiIndex), which R's "
                        "data.frame cannot hold; flatten them first")

    def used(name: str) -> bool:
        return formula is None or name in formula

    names = [str(c) for c in data.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if any(used(n) for n in duplicated):
        raise DataConversionError(f"duplicate column names: {', '.join(duplicated)} (as strings, "
                        "which R needs: a formula could not tell them apart)")
    columns: dict[str, Any] = {}
    for name, (_, col) in zip(names, data.items(), strict=True):
        if name in duplicated:
            continue
        try:
            columns[name] = _to_r_vector(name, col, ro, env)
        except Exception as exc:  # ours, or rpy2's conversion errors named by column
            if not used(name):
                continue
            if isinstance(exc, DataConversionError):
                raise
            raise DataConversionError(f"column {name!r} cannot be passed to R: "
                            f"{type(exc).__name__}: {_r_error(exc)}") from None
    return env["harness_frame"](ro.ListVector(columns), len(data))


# pandas' inferred kinds of object columns that R receives as numbers / strings / logicals
_NUMERIC_KINDS = {"integer", "floating", "mixed-integer-float", "decimal"}
_STRING_KINDS = {"string"}
_BOOL_KINDS = {"boolean"}


def _to_r_vector(name: str, col: pd.Series, ro: Any, env: Any) -> Any:
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        levels = [str(c) for c in col.cat.categories]
        if len(set(levels)) < len(levels):
            raise DataConversionError(f"column {name!r} has categories that coincide as strings "
                            f"({levels}), which an R factor cannot have")
        codes = col.cat.codes.to_numpy()
        return env["harness_factor"](_integers(codes + 1, codes < 0, ro), ro.StrVector(levels),
                                     bool(col.cat.ordered))
    if pd.api.types.is_bool_dtype(dtype):
        return _logical(col, ro)
    if pd.api.types.is_complex_dtype(dtype):
        raise DataConversionError(f"column {name!r} is complex ({dtype}), which lme4 cannot fit")
    if pd.api.types.is_numeric_dtype(dtype):
        return _double(col, ro)
    if pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(col, skipna=True)
        if kind == "empty":  # nothing but missing values: R's all-NA column is logical
            return ro.BoolVector([ro.NA_Logical] * len(col))
        if kind in _STRING_KINDS:
            return _character(col, ro)
        if kind in _NUMERIC_KINDS:
            return _double(col, ro)
        if kind in _BOOL_KINDS:
            return _logical(col, ro)
        found = sorted({type(v).__name__ for v in col if not _missing(v)})
        example = next((v for v in col if not _missing(v) and not isinstance(v, str)),
                       next(v for v in col if not _missing(v)))
        raise DataConversionError(f"column {name!r} is an object column of {kind} values (types "
                        f"{', '.join(found)}; e.g. {repr(example)[:40]}), which R cannot take "
                        "as one vector type; convert it to numbers, strings or a Categorical")
    if pd.api.types.is_string_dtype(dtype):
        return _character(col, ro)
    raise DataConversionError(f"column {name!r} has dtype {dtype}, which cannot be passed to R "
                    "(convert it to numbers, strings or a Categorical)")


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and np.isnan(value))


def _double(col: pd.Series, ro: Any) -> Any:
    values = pd.to_numeric(col, errors="raise").to_numpy(dtype=float, na_value=np.nan)
    return _doubles(values, np.isnan(values), ro)


# Whole columns go to R through one buffer copy (rpy2's from_memoryview), not element by element
# (InstEval's 73,421 rows took 0.6 s a conversion so); the missing values are then set one by one
# to R's NA: R tells NA from NaN, and a NaN of the buffer would stay a NaN.


def _integers(values: np.ndarray, missing: np.ndarray, ro: Any) -> Any:
    """An R integer vector of ``values``, NA where ``missing``."""
    from rpy2 import rinterface

    return _from_buffer(np.int32, rinterface.IntSexpVector, ro.IntVector, ro.NA_Integer,
                        values, missing)


def _doubles(values: np.ndarray, missing: np.ndarray, ro: Any) -> Any:
    """An R double vector of ``values``, NA where ``missing``."""
    from rpy2 import rinterface

    return _from_buffer(np.float64, rinterface.FloatSexpVector, ro.FloatVector, ro.NA_Real,
                        values, missing)


def _from_buffer(dtype: Any, sexp: Any, vector: Any, na: Any, values: np.ndarray,
                 missing: np.ndarray) -> Any:
    """R's vector (``vector`` around ``sexp``) of ``values`` as ``dtype``, one buffer copy,
    then ``na`` at each missing position."""
    buf = np.ascontiguousarray(values, dtype=dtype)
    vec = vector(sexp.from_memoryview(memoryview(buf)))
    for i in np.flatnonzero(missing):
        vec[int(i)] = na
    return vec


def _logical(col: pd.Series, ro: Any) -> Any:
    return ro.BoolVector([ro.NA_Logical if _missing(v) else bool(v) for v in col])


def _character(col: pd.Series, ro: Any) -> Any:
    return ro.StrVector([ro.NA_Character if _missing(v) else str(v) for v in col])


def lmer_record(data: pd.DataFrame | Any, formula: str, REML: bool, case_id: str,
                impl: str = "lme4", optimizer: str | None = None,
                timeout: float | None = None, intervals: bool = False,
                anova: str | None = None, grid: dict[str, list[Any]] | None = None
                ) -> dict[str, Any]:
    """Fit one case with lme4 (inside R, warnings captured there) and return its record;
    ``intervals`` adds confint(m)'s profile intervals (the Wald ones are always there),
    ``anova`` (a partner model's formula) the rows of anova(partner, m), ``grid`` (column ->
    values) predictions on that grid.
    ``data`` is a DataFrame or an R data.frame already converted with :func:`to_r_frame`;
    ``optimizer`` replaces lmer's default (lmerControl(optimizer=...)), None keeps it.
    lme4's errors come back as the record's ``error`` (its text verbatim), its warnings and
    messages as ``messages``. ``timeout`` (seconds) is enforced inside R (setTimeLimit): a fit
    still running then is stopped and recorded as "timeout: lme4 did not finish within N s".
    Raises DataConversionError for a DataFrame R cannot be given (naming the column)."""
    import rpy2.robjects as ro

    env = _env()
    rdata = to_r_frame(data, formula) if isinstance(data, pd.DataFrame) else data
    opt = ro.NULL if optimizer is None else optimizer
    limit = ro.NULL if timeout is None or not timeout > 0 else float(timeout)
    try:
        text = env["lmer_record_json"](rdata, formula, bool(REML), case_id, impl, opt, limit,
                                       bool(intervals), ro.NULL if anova is None else anova,
                                       _r_grid(grid, ro))[0]
    except Exception as exc:  # an R error outside lmer's own handling, e.g. bad arguments
        raise RBridgeError(f"R failed in lmer_record_json: {_r_error(exc)}") from None
    raw = json.loads(str(text))
    return normalize_record(raw, impl, case_id)


def _r_grid(grid: dict[str, list[Any]] | None, ro: Any) -> Any:
    """A prediction grid as an R named list of vectors (numbers or text), or NULL."""
    if not grid:
        return ro.NULL
    vectors = {k: ro.StrVector([str(v) for v in vs]) if any(isinstance(v, str) for v in vs)
               else ro.FloatVector([float(v) for v in vs]) for k, vs in grid.items()}
    return ro.ListVector(vectors)


def glmer_record(data: pd.DataFrame | Any, case: Any, impl: str = "lme4",
                 optimizer: str | None = None, timeout: float | None = None,
                 intervals: bool = False) -> dict[str, Any]:
    """Fit one GLMM case with lme4's glmer (r_scripts/glmer_record.R) and return its record,
    as :func:`lmer_record` does for lmer: family, link, nAGQ and prior weights from the case,
    with its inference (Wald z tests, predictions at both scales, Wald intervals, profile ones
    when ``intervals``, anova against the case's partner, predictions on its grid)."""
    import rpy2.robjects as ro

    env = _env()
    rdata = to_r_frame(data, case.formula) if isinstance(data, pd.DataFrame) else data
    null = ro.NULL
    anova = getattr(case, "anova_formula", None)
    args = (rdata, *glmm_args(case), case.id, impl, null if optimizer is None else optimizer,
            null if timeout is None or not timeout > 0 else float(timeout), bool(intervals),
            null if anova is None else anova, _r_grid(getattr(case, "predict_grid", None), ro))
    try:
        text = env["glmer_record_json"](*args)[0]
    except Exception as exc:
        raise RBridgeError(f"R failed in glmer_record_json: {_r_error(exc)}") from None
    return normalize_record(json.loads(str(text)), impl, case.id)


def call(function: str, data: pd.DataFrame | Any, *args: Any) -> Any:
    """Call ``function`` (defined by a sourced r_scripts file) with ``data`` converted to an
    R data.frame (or already converted) and ``args``; returns the R result (rpy2 object)."""
    env = _env()
    rdata = to_r_frame(data) if isinstance(data, pd.DataFrame) else data
    return env[function](rdata, *args)


def lmer_fit_only(rdata: Any, formula: str, REML: bool) -> None:
    """Fit in R and return nothing: the call the benchmarks time (data already converted)."""
    _env()["lmer_fit_only"](rdata, formula, bool(REML))


def glmer_fit_only(rdata: Any, case: Any) -> None:
    """A GLMM case fitted by glmer in R, nothing returned (what the benchmarks time)."""
    _env()["glmer_fit"](rdata, *glmm_args(case))


def glmm_args(case: Any) -> tuple[Any, ...]:
    """A GLMM case's model as r_scripts/glmer_record.R's functions take it: formula, family,
    link, nAGQ, weights column (link and weights NULL when the case gives none)."""
    import rpy2.robjects as ro

    return (str(case.formula), case.family, ro.NULL if case.link is None else case.link,
            int(case.nAGQ), ro.NULL if case.weights is None else case.weights)
