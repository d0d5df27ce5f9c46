"""Shared fixtures of the unit tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

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
