"""Shared fixtures of the unit tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def catalog_rscript() -> Callable[..., str]:
    """Run R code after sourcing r_scripts/catalog.R and return its standard output; skip
    with the reason when Rscript is absent, fail with R's stderr when R fails."""

    def run(call: str, timeout: float = 300) -> str:
        if shutil.which("Rscript") is None:
            pytest.skip("Rscript is not on PATH: R-side check skipped")
        proc = subprocess.run(
            ["Rscript", "-e", f'source("r_scripts/catalog.R"); {call}'],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            pytest.fail(f"Rscript failed: {proc.stderr[-2000:]}")
        return proc.stdout

    return run


@pytest.fixture(scope="module")
def shared_r_lane() -> Any:
    """The harness's R lane (harness.core.isolation's "R": lme4's fits and its judge's devfun)
    started once in this process for a module whose pytest sessions run in it (pytester's
    in-process runs): a session run inside another leaves the outer one's lanes running
    (harness.pytest_plugin.plugin, pytest_unconfigure), so each of them finds R started, with
    the judge's module loaded, instead of starting its own. Stopped after the module, with the
    other lanes the module left. Yields R's unavailability reason (None: R is there); where R
    is not, the sessions do without it as they would anyway."""
    from harness.core import isolation

    before = isolation.lanes()
    out = isolation.call("R", "harness.core.rbridge:unavailable", timeout=120)
    if out.kind == "ok" and out.value is None:
        isolation.call("R", "harness.core.judge:clear_cache", timeout=120)  # the judge's import
    yield out.value if out.kind == "ok" else out.error
    isolation.shutdown(keep=before)


@dataclass
class FakeCase:
    """The fields of a catalog Case that adapters and the runner read, for hand-made cases."""

    id: str
    formula: str
    REML: bool = True
    dataset: str = "none"
    timeout: float = 60
    xfail: dict = field(default_factory=dict)
    skip: dict = field(default_factory=dict)


@pytest.fixture
def df() -> pd.DataFrame:
    """A small valid data set (8 groups x 5 rows) with a real between-group variance, for
    the bad-input tests to spoil one way at a time."""
    rng = np.random.default_rng(6)
    g = np.repeat(np.arange(8), 5)
    x = rng.standard_normal(40)
    y = 1.0 + 0.5 * x + rng.standard_normal(8)[g] + 0.5 * rng.standard_normal(40)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{k}" for k in g])})


# Order under `./dev test` (-n 2): the harness plugin hands each test module and each catalog
# case to a worker as one unit, heaviest first by tests/durations.json (pyproject.toml's
# harness_durations; harness/pytest_plugin/schedule.py). Refresh that file after adding heavy
# tests: `./dev test --store-durations --durations-path tests/durations.json --clean-durations`.


# ----------------------------------------------------------------------------- gradient checks


def interior_theta(model: Any, rng: np.random.Generator) -> np.ndarray:
    """A θ strictly inside the bounds, each entry on its column's scale."""
    from mixedref.fitting.strategies import theta_scales

    lower = model.theta_lower
    z = np.where(lower == 0, rng.uniform(0.3, 1.5, lower.size), rng.normal(0.0, 0.3, lower.size))
    return z / theta_scales(model)


def richardson(obj: Callable[[np.ndarray], float], theta: np.ndarray,
               rel: float = 2e-3) -> np.ndarray:
    """Central differences of the criterion ``obj`` (with ``obj.model``) with relative steps h
    and h/2, extrapolated: error O(h^4)."""
    from mixedref.fitting.strategies import theta_scales

    h = rel * np.maximum(np.abs(theta), 0.1 / theta_scales(obj.model))

    def central(step: np.ndarray) -> np.ndarray:
        out = np.empty(theta.size)
        for i, hi in enumerate(step):
            e = np.zeros(theta.size)
            e[i] = hi
            out[i] = (obj(theta + e) - obj(theta - e)) / (2.0 * hi)
        return out

    return (4.0 * central(h / 2.0) - central(h)) / 3.0


def ref_frame(table: dict) -> pd.DataFrame:
    """A table recorded by r_scripts/ddf_references.R or bigddf_references.R ({columns,
    rownames}) as a DataFrame."""
    cols = {k: np.atleast_1d(v) for k, v in table["columns"].items()}
    return pd.DataFrame(cols, index=np.atleast_1d(table["rownames"]))


def dense_objective(case: Any, max_rows: int) -> Any:
    """The dense engine's objective of a catalog case of at most ``max_rows`` rows, or None
    (more rows, or a design the dense engine refuses)."""
    import warnings

    from harness.core.catalog import load_data
    from mixedref.engines.dense import DensePLSObjective
    from mixedref.frontend.design import build_model

    data = load_data(case)
    if len(data) > max_rows:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(case.formula, data, weights=case.prior_weights(data))
    try:
        return DensePLSObjective(model, REML=bool(case.REML))
    except Exception:  # noqa: BLE001 - a design the dense engine refuses
        return None
