"""The grid's run: lme4's recorded answers checked against the regenerated grid, then the grid
run through the harness with them (``python -m harness.commands.grid run``, ``./dev grid``)."""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.generate.grid_cells import GRID_DIR, HERE, cells, write_grid

RECORDING = HERE / "references" / "grid_lme4.json.gz"
#: the grid's registered divergences (passed as --divergences unless one is given)
DIVERGENCES = HERE / "grid_divergences.yaml"
#: lme4's GLMM cells converged tightly (r_scripts/record_grid.R --tight): who is right
TIGHT_RECORDING = HERE / "references" / "grid_lme4_tight.json.gz"
#: pytest-split's timings of the grid's items (--store-durations; commit it for --splits N)
DURATIONS = HERE / "references" / "grid_durations.json"
#: the pytest plugin that draws the run's status map (harness/pytest_plugin/grid_hook.py)
HOOK = "harness.pytest_plugin.grid_hook"


# ----------------------------------------------------------------------------- the recording


def read_recording(path: str | Path = RECORDING) -> dict[str, Any]:
    """The recorded lme4 answers of the grid (a .json.gz or a .json)."""
    path = Path(path)
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def recording_problems(doc: dict[str, Any], hashes: dict[str, str]) -> list[str]:
    """Why the recording does not fit the grid (empty when it does): cases missing from it,
    cases it has that the grid has not, and cases recorded on other data or another model."""
    by_id = {c.id: c for c in cells()}
    recorded = doc.get("cases") or {}
    problems = []
    missing = [cid for cid in hashes if cid not in recorded or cid not in doc.get("records", {})]
    if missing:
        problems.append(f"{len(missing)} grid case(s) not recorded, e.g. {missing[0]}")
    extra = [cid for cid in recorded if cid not in by_id]
    if extra:
        problems.append(f"{len(extra)} recorded case(s) not in the grid, e.g. {extra[0]}")
    stale = []
    for cid, sha in hashes.items():
        rec = recorded.get(cid)
        if rec is None:
            continue
        cell = by_id[cid]
        want = {"dataset": cell.dataset, "formula": cell.spec.formula,
                "REML": cell.method == "REML", "data_sha256": sha}
        diff = [k for k, v in want.items() if rec.get(k) != v]
        if diff:
            stale.append(f"{cid} ({', '.join(diff)})")
    if stale:
        problems.append(f"{len(stale)} recorded case(s) stale (fitted to other data or another "
                        f"model), e.g. {stale[0]}")
    return problems


# ----------------------------------------------------------------------------- the run


def run(pytest_args: Sequence[str], grid_dir: Path = GRID_DIR,
        recording: Path = RECORDING) -> int:
    """Regenerate the grid, check the recording against it, and run it through the harness
    with the recorded lme4 answers (``-n 2`` and ``--impl mixedref`` unless given)."""
    hashes = write_grid(grid_dir)
    if not recording.is_file():
        print(f"harness.commands.grid: no recording at {recording}; record it with "
              f"`python -m harness.commands.grid --write-data {grid_dir} && Rscript "
              f"r_scripts/record_grid.R {grid_dir} {recording}`", file=sys.stderr)
        return 4
    doc = read_recording(recording)
    problems = recording_problems(doc, hashes)
    if problems:
        print(f"harness.commands.grid: the recording {recording} does not fit the grid: "
              + "; ".join(problems) + "; re-record it (r_scripts/record_grid.R)",
              file=sys.stderr)
        return 4
    plain = grid_dir / "lme4_recorded.json"  # the plugin reads plain JSON
    plain.write_text(json.dumps(doc))
    args = list(pytest_args)
    catalog = str(grid_dir / "catalog.yaml")
    cmd = [sys.executable, "-m", "pytest", catalog, "--catalog", catalog,
           "--reference=recorded", "--recorded", str(plain), "-p", "no:cacheprovider",
           "-p", HOOK]
    if not any(a == "--impl" or a.startswith("--impl=") for a in args):
        cmd += ["--impl", "mixedref"]
    if not any(a == "-n" or a.startswith("-n") or a.startswith("--numprocesses") for a in args):
        cmd += ["-n", "2"]
    if not any(a.startswith("--divergences") for a in args):
        cmd += ["--divergences", str(DIVERGENCES)]
    if any(a.startswith(("--store-durations", "--splits")) for a in args) and not any(
            a.startswith("--durations-path") for a in args):
        cmd += ["--durations-path", str(DURATIONS)]  # pytest-split: the grid's own timings
    cmd += args
    print("harness.commands.grid: " + " ".join(cmd[2:]), file=sys.stderr)
    sys.stdout.flush()
    os.execv(sys.executable, cmd)
    return 0  # not reached
