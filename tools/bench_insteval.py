"""Time mixedref against lme4 on InstEval (issue 3's speed goal) and on sleepstudy, alternating.

    python tools/bench_insteval.py [--reps 5] [--threads 1] [--case insteval_ml]

Each repetition runs lme4 (r_scripts/bench_insteval.R, one Rscript process) and then mixedref (a
fresh Python process, timed around ``mixedref.lmer`` after one warm-up fit on sleepstudy), so
both see the same machine load; it prints one line per run and the medians and ratio at the end.
Peak RSS is each process's high-water mark (VmHWM), data loading included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "insteval_ml": ("InstEval", "y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)", False, 1),
    "insteval_reml": ("InstEval", "y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)", True, 1),
    "sleepstudy_reml": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", True, 20),
}

_CHILD = """
import json, statistics, sys, time
from harness.core.datasets import load_dataset
import mixedref
dataset, formula, REML, reps = json.loads(sys.argv[1])
data = load_dataset(dataset)
warm = load_dataset("sleepstudy")
mixedref.lmer("Reaction ~ Days + (Days | Subject)", warm)
secs = []
for _ in range(reps):
    t0 = time.perf_counter()
    fit = mixedref.lmer(formula, data, REML=REML)
    secs.append(time.perf_counter() - t0)
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")]
print(json.dumps({"impl": "mixedref", "seconds": statistics.median(secs), "nfev": fit.nfev,
                  "objective": fit.objective, "maxrss_kb": hwm[0] if hwm else None}))
"""


def run_lme4(case: str) -> dict:
    out = subprocess.run(["Rscript", str(REPO / "r_scripts" / "bench_insteval.R"), case],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_mixedref(case: str, threads: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(CASES[case])],
                         capture_output=True, text=True, check=True, cwd=REPO, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="mixedref's BLAS threads")
    ap.add_argument("--case", choices=sorted(CASES), default="insteval_ml")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {"lme4": [], "mixedref": []}
    for i in range(args.reps):
        for impl, run in (("lme4", lambda: run_lme4(args.case)),
                          ("mixedref", lambda: run_mixedref(args.case, args.threads))):
            rec = run()
            runs[impl].append(rec)
            print(f"rep {i + 1} {impl:9s} {rec['seconds']:8.4f}s nfev {rec['nfev']:4d} "
                  f"objective {rec['objective']:.9f} maxrss {rec['maxrss_kb'] / 1024:.0f} MB",
                  flush=True)
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    print(f"{args.case}: median lme4 {med['lme4']:.4f}s, mixedref {med['mixedref']:.4f}s "
          f"(threads {args.threads}), ratio lme4/mixedref {med['lme4'] / med['mixedref']:.2f}")


if __name__ == "__main__":
    main()
