"""Where one ``mixedref.lmer`` call spends its time, stage by stage (issue 23).

    python tools/profile_lmer.py [--reps 200] [-k cake-interaction-REML,sleepstudy-slopes-REML]

Each rep runs the whole call as tools/small_fits.py times it (``lmer``, then ``fixef``, ``se``,
``varcorr``, ``sigma``, ``loglik``) with the stages wrapped by timers (CPU seconds,
``time.process_time_ns``): the model build (``build_model`` and the response check), the engine
set-up (``PLSObjective``), the start (lme4's start and the criterion there), BOBYQA, the Newton
polish, lme4's convergence checks, the rest of ``optimize_theta``, the result object and the
tables read after the fit, and the rest of lmer (other). The table gives each stage's median
CPU milliseconds over the reps, the whole call's median, and the criterion evaluations per fit.
BLAS runs on one thread. The timers cost a few microseconds per wrapped call; compare trees
under the same load, alternately (the machine's load moves these numbers by 10-20 %).
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
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = ("build", "engine set-up", "start", "BOBYQA", "polish", "checks", "optimize rest",
          "tables", "other", "whole call")
DEFAULT_CASES = "cake-interaction-REML,cake-numeric_temp-REML,sleepstudy-slopes-REML"


class _Timers:
    """Accumulated CPU nanoseconds per stage within one rep; nested stages are subtracted
    from their enclosing stage (the polish's and the checks' evaluations are theirs)."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)
        self.stack: list[list] = []

    def wrap(self, stage: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.stack.append([stage, 0])
            t0 = time.process_time_ns()
            try:
                return func(*args, **kwargs)
            finally:
                dt = time.process_time_ns() - t0
                _, inner = self.stack.pop()
                self.ns[stage] += dt - inner
                if self.stack:
                    self.stack[-1][1] += dt

        return timed


def _instrument(timers: _Timers) -> None:
    """Wrap the stages where lmer looks them up (module globals)."""
    import mixedref.fitting.modular as modular
    import mixedref.fitting.optimize as optimize

    modular.build_model = timers.wrap("build", modular.build_model)
    modular.check_response = timers.wrap("build", modular.check_response)
    modular.PLSObjective = timers.wrap("engine set-up", modular.PLSObjective)
    modular.optimize_theta = timers.wrap("optimize rest", modular.optimize_theta)
    modular.LmerFit = timers.wrap("tables", modular.LmerFit)
    optimize.lme4_start = timers.wrap("start", optimize.lme4_start)
    optimize.centred_start = timers.wrap("start", optimize.centred_start)
    optimize._bobyqa = timers.wrap("BOBYQA", optimize._bobyqa)
    optimize.polish_with_derivatives = timers.wrap("polish", optimize.polish_with_derivatives)
    optimize._checks = timers.wrap("checks", optimize._checks)


def profile(case: Any, data: Any, reps: int, timers: _Timers) -> dict[str, float]:
    """Median CPU ms per stage over ``reps`` whole calls (after one warm-up)."""
    import mixedref

    def call() -> Any:
        m = timers.wrap("whole call", _fit)()
        return m

    def _fit() -> Any:
        m = mixedref.lmer(case.formula, data, REML=bool(case.REML))
        timers.wrap("tables", lambda: (m.fixef, m.se, m.varcorr, m.sigma, m.loglik))()
        return m

    samples: dict[str, list[float]] = defaultdict(list)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = call()
        for _ in range(reps):
            timers.ns.clear()
            m = call()
            # the whole call's time includes its stages: give it back undivided
            total = sum(timers.ns.values())
            for stage in STAGES[:-2]:
                samples[stage].append(timers.ns.get(stage, 0) / 1e6)
            samples["other"].append(timers.ns.get("whole call", 0) / 1e6)
            samples["whole call"].append(total / 1e6)
    out = {s: statistics.median(v) for s, v in samples.items()}
    out["nfev"] = m.nfev
    out["objective"] = m.objective
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("-k", dest="cases", default=DEFAULT_CASES,
                    help="comma-separated catalog case ids")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from harness.core import runner
    from harness.core.catalog import load_catalog

    threadpool_limits(1)
    catalog = {c.id: c for c in load_catalog()}
    timers = _Timers()
    _instrument(timers)
    rows = []
    for cid in args.cases.split(","):
        case = catalog[cid]
        rows.append((cid, profile(case, runner.case_data(case), args.reps, timers)))
    print(f"median CPU ms over {args.reps} calls; load average {os.getloadavg()[0]:.2f}\n")
    print("| stage | " + " | ".join(c for c, _ in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for stage in STAGES:
        print(f"| {stage} | " + " | ".join(f"{r[stage]:.3f}" for _, r in rows) + " |")
    print("| nfev | " + " | ".join(str(r["nfev"]) for _, r in rows) + " |")
    print("| objective | " + " | ".join(f"{r['objective']:.10f}" for _, r in rows) + " |")


if __name__ == "__main__":
    main()
