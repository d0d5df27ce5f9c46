"""Time mixedref, glmm, mixedlm and lme4 side by side on the catalog's small LMM cases (issue 14).

    python tools/small_fits.py [--reps 9] [-k sleepstudy] [--impls mixedref,glmm,mixedlm,lme4]

One process, one run: every case is fitted by every implementation that can express it (the
peer adapters' ``supports`` and ``check``), round-robin (rep 1 of each, then rep 2, ...) after a
warm-up fit each, so that all see the same machine load; the table gives each one's median in
milliseconds. Small cases: linear mixed models with nobs <= 1000 not tagged large or hard.
BLAS runs on one thread (threadpoolctl, after R is loaded, so R's BLAS too). Times are the
process's CPU seconds around each call (R runs in this process; a loaded machine stretches wall
time, not CPU time; R's own proc.time() counts whole milliseconds only); the table also gives
mixedref's criterion evaluations per fit (``nfev``).

Each timed call fits and reads the same quantities, as each package computes them by default:

- mixedref: ``mixedref.lmer`` (the fit, with lme4's checkConv derivatives), then ``fixef``,
  ``se``, ``varcorr``, ``sigma``, ``loglik`` (computed lazily, on access).
- glmm: ``glmm.fit(data, formula, reml=)``: its result holds beta, se, varcorr, dispersion and
  loglik, and by default (``satterthwaite=True``) Satterthwaite df and p values too.
- mixedlm: ``mixedlm.lmer(formula, data, REML=)`` (formula translated as its adapter does), then
  ``fixef()``, ``vcov()`` (SEs), ``VarCorr()``, ``logLik()``.
- lme4: one R function through rpy2 on a data.frame converted once: ``lmer(...)``, then
  ``fixef``, ``sqrt(diag(vcov))``, ``as.data.frame(VarCorr)``, ``sigma``,
  ``logLik``.

Each implementation's logLik is checked against lme4's: a difference above 1e-3 is flagged.
The machine is shared: the load average is printed before and after, and the ratios matter
more than the milliseconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMPLS = ("mixedref", "glmm", "mixedlm", "lme4")
MAX_NOBS = 1000
EXCLUDED_TAGS = {"large", "hard"}

_R_TIMER = """
function(data, formula, REML) {
  f <- stats::as.formula(formula)
  m <- suppressWarnings(suppressMessages(lme4::lmer(f, data = data, REML = isTRUE(REML))))
  fe <- lme4::fixef(m); se <- sqrt(diag(as.matrix(stats::vcov(m))))
  vc <- as.data.frame(lme4::VarCorr(m)); s <- stats::sigma(m); ll <- stats::logLik(m)
  as.numeric(ll)
}
"""


def small_cases(pattern: str | None = None) -> list[Any]:
    """The catalog's small LMM cases (nobs <= MAX_NOBS, not tagged large or hard)."""
    from harness.core import runner
    from harness.core.catalog import load_catalog

    out = []
    for case in load_catalog():
        if case.is_glmm or EXCLUDED_TAGS & set(case.tags):
            continue
        if pattern and pattern not in case.id:
            continue
        if len(runner.case_data(case)) <= MAX_NOBS:
            out.append(case)
    return out


def _mixedref(case: Any, data: Any) -> Callable[[], float]:
    import mixedref

    def fit() -> float:
        m = mixedref.lmer(case.formula, data, REML=bool(case.REML))
        m.fixef, m.se, m.varcorr, m.sigma  # noqa: B018 - computed on access
        fit.nfev = m.nfev  # type: ignore[attr-defined] - the table's evaluations column
        return float(m.loglik)

    return fit


def _glmm(case: Any, data: Any) -> Callable[[], float]:
    import glmm

    from harness.adapters import get_adapter

    adapter = get_adapter("glmm")
    adapter.prepare(case, data)  # NotImplementedError for what it cannot express

    def fit() -> float:
        m = glmm.fit(data, case.formula, reml=bool(case.REML))
        return float(m.loglik)

    return fit


def _mixedlm(case: Any, data: Any) -> Callable[[], float]:
    import mixedlm

    from harness.adapters import get_adapter
    from harness.adapters.peers import _formula as F
    from harness.adapters.peers._base import ordered_in_fixed

    parsed, _ = get_adapter("mixedlm").prepare(case, data)
    contrasts = {v: "poly" for v in ordered_in_fixed(parsed, data)} or None
    formula, offsets = F.split_offsets(case.formula)
    formula = F.python_powers(formula)
    offset = F.offset_vector(offsets, data)

    def fit() -> float:
        m = mixedlm.lmer(formula, data, REML=bool(case.REML), contrasts=contrasts,
                         offset=offset)
        m.fixef(), np.sqrt(np.diag(np.asarray(m.vcov(), dtype=float))), m.VarCorr()
        return float(m.logLik())

    return fit


class _Lme4:
    """lme4 through rpy2: one R function that fits and reads the quantities."""

    def __init__(self) -> None:
        import rpy2.robjects as ro

        from harness.core import rbridge

        rbridge._env()  # start R and load lme4 (and the harness's R helpers) once
        self.timer = ro.r(_R_TIMER)
        self.frames: dict[str, Any] = {}

    def __call__(self, case: Any, data: Any) -> Callable[[], float]:
        from harness.core import rbridge

        if case.dataset not in self.frames:
            self.frames[case.dataset] = rbridge.to_r_frame(data)
        rdata = self.frames[case.dataset]

        def fit() -> float:
            return float(self.timer(rdata, case.formula, bool(case.REML))[0])

        return fit


def _supported(impl: str, case: Any) -> str | None:
    """None if ``impl`` can express the case (its adapter's ``supports``), else why not."""
    if impl in ("mixedref", "lme4"):
        return None
    from harness.adapters import get_adapter

    adapter = get_adapter(impl)
    return adapter.unavailable() or adapter.supports(case)


def run(cases: list[Any], impls: tuple[str, ...], reps: int) -> list[dict[str, Any]]:
    """Per case each implementation's median seconds and logLik (None where it cannot fit)."""
    from harness.core import runner

    makers: dict[str, Any] = {"mixedref": _mixedref, "glmm": _glmm, "mixedlm": _mixedlm}
    if "lme4" in impls:
        makers["lme4"] = _Lme4()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # after R is up, so its BLAS is limited too
    rows = []
    for case in cases:
        data = runner.case_data(case)
        fits: dict[str, Callable[[], Any]] = {}
        row: dict[str, Any] = {"case": case.id, "nobs": len(data), "ms": {}, "loglik": {},
                               "why": {}}
        for impl in impls:
            why = _supported(impl, case)
            if why is None:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fits[impl] = makers[impl](case, data.copy())
                        out = fits[impl]()  # warm-up
                    row["loglik"][impl] = out
                except Exception as exc:  # noqa: BLE001 - a peer's refusal or failure
                    fits.pop(impl, None)
                    why = f"{type(exc).__name__}: {exc}"
            if why is not None:
                row["why"][impl] = why.splitlines()[0][:120]
        times: dict[str, list[float]] = {impl: [] for impl in fits}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(reps):
                for impl, fit in fits.items():
                    t0 = time.process_time()
                    fit()
                    times[impl].append(time.process_time() - t0)
        row["ms"] = {impl: 1e3 * statistics.median(ts) for impl, ts in times.items()}
        row["nfev"] = getattr(fits.get("mixedref"), "nfev", None)
        rows.append(row)
        print(f"{case.id}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in row["ms"].items()),
              file=sys.stderr, flush=True)
    return rows


def _cell(v: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table: per case each implementation's median ms and mixedref's ratios."""
    out = ["| case | nobs | mixedref nfev | mixedref ms | glmm ms | mixedlm ms | lme4 ms | "
           "mixedref/glmm | mixedref/lme4 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ratios: dict[str, list[float]] = {"glmm": [], "lme4": []}
    flags = []
    for r in rows:
        ms = r["ms"]
        mr = ms.get("mixedref")
        rat = {}
        for other in ratios:
            if mr is not None and ms.get(other):
                rat[other] = mr / ms[other]
                ratios[other].append(rat[other])
        out.append(f"| {r['case']} | {r['nobs']} | {_cell(r.get('nfev'), '{}')} | " + " | ".join(
            _cell(ms.get(i)) for i in IMPLS) + f" | {_cell(rat.get('glmm'))} | "
            f"{_cell(rat.get('lme4'))} |")
        ref = r["loglik"].get("lme4")
        for impl, ll in r["loglik"].items():
            if ref is not None and impl != "lme4" and abs(ll - ref) > 1e-3:
                flags.append(f"{r['case']}: {impl} logLik {ll:.6f} vs lme4 {ref:.6f}")
    geo = {k: float(np.exp(np.mean(np.log(v)))) if v else None for k, v in ratios.items()}
    out.append(f"| geometric mean of ratios | | | | | | | {_cell(geo['glmm'])} | "
               f"{_cell(geo['lme4'])} |")
    if flags:
        out += ["", "logLik differences above 1e-3:"] + [f"- {f}" for f in flags]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("-k", dest="pattern", default=None, help="only case ids containing this")
    ap.add_argument("--impls", default=",".join(IMPLS))
    args = ap.parse_args(argv)
    impls = tuple(i for i in args.impls.split(",") if i)
    cases = small_cases(args.pattern)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rows = run(cases, impls, args.reps)
    load1 = os.getloadavg()
    print(f"{len(cases)} cases, median of {args.reps} fits each, BLAS 1 thread, "
          f"{time.perf_counter() - t0:.0f} s; load average (1, 5, 15 min) before "
          f"{', '.join(f'{x:.2f}' for x in load0)}, after {', '.join(f'{x:.2f}' for x in load1)}"
          f" on {os.cpu_count()} cores\n")
    print(table(rows))
    skipped = [(r["case"], i, w) for r in rows for i, w in r["why"].items()]
    if skipped:
        print("\nNot fitted (n/a):")
        for case, impl, why in skipped:
            print(f"- {case} {impl}: {why}")


if __name__ == "__main__":
    main()
