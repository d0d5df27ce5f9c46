"""The run's environment, recorded with every report: timings and last-digit differences mean
little without the versions, the BLAS each side used and the machine.

R's side (R, lme4, its BLAS) is read from the lme4 record's ``versions``; the Python side from
the installed distributions and numpy/scipy's build configuration (threadpoolctl is not a
dependency); the machine from /proc.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

PYTHON_PACKAGES = ("numpy", "scipy", "pandas", "statsmodels", "nlopt", "threadpoolctl", "rpy2",
                   "matplotlib", "mixedref")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _blas_of(module_name: str) -> str | None:
    """BLAS name and version from numpy/scipy's show_config(mode="dicts")."""
    try:
        mod = __import__(module_name)
        cfg = mod.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
    except Exception:  # noqa: BLE001 - older builds have no dict mode
        return None
    name = blas.get("name", "?")
    detail = blas.get("openblas configuration") or blas.get("version") or ""
    return f"{name} {detail}".strip()


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _r_versions(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """R, lme4 and R's BLAS from the first lme4 record that carries versions."""
    for rec in records:
        if str(rec.get("impl", "")).lower().startswith("lme4") and rec.get("versions"):
            return {str(k): v for k, v in rec["versions"].items()}
    return {}


def collect(records: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The environment block of a report (plain JSON)."""
    python = {dist: _version(dist) for dist in PYTHON_PACKAGES}
    python["python"] = sys.version.split()[0]
    return {
        "python": python,
        "blas": {"numpy": _blas_of("numpy"), "scipy": _blas_of("scipy")},
        "r": _r_versions(records),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gb": _memory_gb(),
            "platform": platform.platform(),
        },
    }
