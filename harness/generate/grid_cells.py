"""The stress grid's cells: its axes, each cell's seed, data and true parameters, and the
catalog and data files written from them (the generator; harness/commands/grid/__init__.py
describes the
grid)."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from harness import HOME
from harness.generate.simulate import (
    column_metadata,
    correlated_effects,
    csv_bytes,
    factor,
    glmm_truth,
    plogis,
    truth,
)

HERE = HOME
#: where the generated catalog and data go (not committed; build/ is ignored by git). Not under
#: harness/: the plugin would not collect a catalog inside the harness package's folder.
GRID_DIR = Path(os.environ.get("MIXEDREF_GRID_DIR") or HERE.parent / "build" / "grid")
SPEC = "grid"  # every cell's spec: case ids read "<dataset>-grid-<method>"

SNR = {"lo": 1e-1, "mid": 1.0, "hi": 10.0}
GLMM_SNR = {"lo": 1e-1, "mid": 0.5, "hi": 2.0}
BOUNDARY = {"b0": 0.0, "b1": 1e-3, "b2": 1e-2, "b3": 1e-1, "b4": 1.0}
#: per design shape, per size: (groups, rows per group) / (outer, inner per outer, rows per
#: inner) / (levels of a, levels of b, replicates per a:b pair)
SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "grouped": {"S": (8, 5), "M": (20, 8), "L": (40, 10)},
    "nested": {"S": (4, 3, 3), "M": (8, 4, 5), "L": (16, 5, 5)},
    "crossed": {"S": (8, 5, 1), "M": (16, 10, 1), "L": (25, 16, 1)},
}
BETA0 = 2.0  # the intercept of every LMM design (the GLMM's is 0 on the logit scale)
SIGMA = 1.0


@dataclass(frozen=True)
class GridDesign:
    name: str
    formula: str
    shape: str  # a key of SIZES
    family: str | None = None  # None: lmer; else glmer's family (its canonical link)
    methods: tuple[str, ...] = ("REML", "ML")
    replicates: int = 2
    description: str = ""


DESIGNS: dict[str, GridDesign] = {d.name: d for d in (
    GridDesign("intercept", "y ~ x + (1 | g)", "grouped",
               description="random intercept; boundary: its variance ratio to sigma^2"),
    GridDesign("slopes", "y ~ x + (x | g)", "grouped",
               description="correlated random intercept (sd 1) and slope (sd 0.5); boundary: "
                           "1 - |correlation|"),
    GridDesign("uncorrelated", "y ~ x + (x || g)", "grouped",
               description="independent random intercept (sd 1) and slope; boundary: the "
                           "slope's variance ratio"),
    GridDesign("nested", "y ~ x + (1 | a/b)", "nested",
               description="b nested in a (sd 1); boundary: the variance ratio of b:a"),
    GridDesign("crossed", "y ~ x + (1 | a) + (1 | b)", "crossed",
               description="fully crossed a (sd 1) and b; boundary: b's variance ratio"),
    GridDesign("glmm", "y ~ x + (1 | g)", "grouped", family="binomial", methods=("ML",),
               replicates=3,
               description="binomial (logit) 0/1 response, random intercept; boundary: its "
                           "variance on the logit scale"),
)}


@dataclass(frozen=True)
class Cell:
    """One grid cell: a case of the harness with its own seed."""

    design: str
    size: str
    snr: str
    boundary: str
    method: str
    rep: int

    @property
    def dataset(self) -> str:
        return (f"grid_{self.design}_{self.size}_{self.snr}_{self.boundary}_r{self.rep}_"
                f"{self.method}")

    @property
    def id(self) -> str:
        """The harness case id: ``<dataset>-grid-<method>``."""
        return f"{self.dataset}-{SPEC}-{self.method}"

    @property
    def seed(self) -> int:
        """32 bits of the SHA-256 of the dataset name: stable, and independent of the order
        (adding a design or a level leaves the other cells' data as they were)."""
        digest = hashlib.sha256(f"mixedref-grid:{self.dataset}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    @property
    def spec(self) -> GridDesign:
        return DESIGNS[self.design]

    @property
    def distance(self) -> float:
        return BOUNDARY[self.boundary]

    @property
    def slope(self) -> float:
        return (GLMM_SNR if self.spec.family else SNR)[self.snr]

    def axes(self) -> dict[str, Any]:
        return {"design": self.design, "size": self.size, "snr": self.snr,
                "boundary": self.boundary, "distance": self.distance, "slope": self.slope,
                "method": self.method, "rep": self.rep}


def cells() -> list[Cell]:
    """Every cell, in the grid's order (design, size, snr, boundary, method, replicate)."""
    out = []
    for d in DESIGNS.values():
        for size in SIZES[d.shape]:
            for snr in SNR:
                for b in BOUNDARY:
                    for method in d.methods:
                        for rep in range(1, d.replicates + 1):
                            out.append(Cell(d.name, size, snr, b, method, rep))
    return out


def cell_of(case_id: str) -> Cell | None:
    """The cell of a grid case id (None for any other id)."""
    dataset = case_id.split("-", 1)[0]
    parts = dataset.split("_")
    if len(parts) != 7 or parts[0] != "grid" or parts[1] not in DESIGNS:
        return None
    try:
        rep = int(parts[5].removeprefix("r"))
    except ValueError:
        return None
    cell = Cell(parts[1], parts[2], parts[3], parts[4], parts[6], rep)
    return cell if cell.id == case_id else None


# ----------------------------------------------------------------------------- generation


def _x(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.round(rng.standard_normal(n), 3)


def generate(cell: Cell) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The cell's data and truth, from its seed (the same bytes every time)."""
    rng = np.random.default_rng(cell.seed)
    d, b1, dist = cell.spec, cell.slope, cell.distance
    beta = {"(Intercept)": BETA0, "x": b1}
    if d.shape == "grouped":
        n_groups, n_per = SIZES["grouped"][cell.size]
        g = np.repeat(np.arange(n_groups), n_per)
        n = len(g)
        x = _x(rng, n)
        if d.name == "slopes":
            rho = (1.0 - dist) * (1.0 if cell.rep % 2 else -1.0)
            sds = (1.0, 0.5)
            corr = np.array([[1.0, rho], [rho, 1.0]])
            u = correlated_effects(rng, n_groups, sds, corr)
            e = SIGMA * rng.standard_normal(n)
            y = BETA0 + u[g, 0] + (b1 + u[g, 1]) * x + e
            tr = truth(beta, SIGMA, [("g", ["(Intercept)", "x"], sds, corr)])
        elif d.name == "uncorrelated":
            sd1 = math.sqrt(dist) * SIGMA
            u0 = 1.0 * rng.standard_normal(n_groups)
            u1 = sd1 * rng.standard_normal(n_groups)
            e = SIGMA * rng.standard_normal(n)
            y = BETA0 + u0[g] + (b1 + u1[g]) * x + e
            tr = truth(beta, SIGMA, [("g", ["(Intercept)"], [1.0], None),
                                     ("g.1", ["x"], [sd1], None)])
        elif d.name == "glmm":
            sd = math.sqrt(dist)
            u = sd * rng.standard_normal(n_groups)
            y = rng.binomial(1, plogis(0.0 + b1 * x + u[g])).astype(float)
            tr = glmm_truth("binomial", "logit", {"(Intercept)": 0.0, "x": b1},
                            [("g", ["(Intercept)"], [sd], None)])
        else:  # intercept
            sd = math.sqrt(dist) * SIGMA
            u = sd * rng.standard_normal(n_groups)
            e = SIGMA * rng.standard_normal(n)
            y = BETA0 + b1 * x + u[g] + e
            tr = truth(beta, SIGMA, [("g", ["(Intercept)"], [sd], None)])
        df = pd.DataFrame({"y": y, "x": x, "g": factor(g, "g")})
    elif d.shape == "nested":
        n_a, n_b, n_per = SIZES["nested"][cell.size]
        a = np.repeat(np.arange(n_a), n_b * n_per)
        b = np.tile(np.repeat(np.arange(n_b), n_per), n_a)  # b's labels repeat within each a
        n = len(a)
        x = _x(rng, n)
        sd_ab = math.sqrt(dist) * SIGMA
        ua = 1.0 * rng.standard_normal(n_a)
        uab = sd_ab * rng.standard_normal(n_a * n_b)
        e = SIGMA * rng.standard_normal(n)
        y = BETA0 + b1 * x + ua[a] + uab[a * n_b + b] + e
        df = pd.DataFrame({"y": y, "x": x, "a": factor(a, "a"), "b": factor(b, "b")})
        tr = truth(beta, SIGMA, [("b:a", ["(Intercept)"], [sd_ab], None),
                                 ("a", ["(Intercept)"], [1.0], None)])
    else:  # crossed
        n_a, n_b, reps = SIZES["crossed"][cell.size]
        a = np.repeat(np.arange(n_a), n_b * reps)
        b = np.tile(np.repeat(np.arange(n_b), reps), n_a)
        n = len(a)
        x = _x(rng, n)
        sd_b = math.sqrt(dist) * SIGMA
        ua = 1.0 * rng.standard_normal(n_a)
        ub = sd_b * rng.standard_normal(n_b)
        e = SIGMA * rng.standard_normal(n)
        y = BETA0 + b1 * x + ua[a] + ub[b] + e
        df = pd.DataFrame({"y": y, "x": x, "a": factor(a, "a"), "b": factor(b, "b")})
        # lme4 orders the terms by decreasing number of levels: a (more levels) first
        tr = truth(beta, SIGMA, [("a", ["(Intercept)"], [1.0], None),
                                 ("b", ["(Intercept)"], [sd_b], None)])
    return df, tr


def data_sha256(df: pd.DataFrame) -> str:
    """The SHA-256 of the dataset's CSV text (what is written, gzipped, for R)."""
    return hashlib.sha256(csv_bytes(df)).hexdigest()


def catalog_entry(cell: Cell) -> dict[str, Any]:
    d = cell.spec
    # short: every harness process parses the catalog, several times (the dataset's name
    # says the cell; cells.json has its axes and truth)
    entry: dict[str, Any] = {"spec": SPEC, "dataset": cell.dataset, "formula": d.formula,
                             "methods": [cell.method]}
    if d.family:
        entry["family"] = d.family
    return entry


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Quotes the strings R's yaml package would read as booleans or NA (as simulate's)."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="'" if value.lower() in {"y", "n", "na"} else None))

HEADER = ("# GENERATED by `python -m harness.commands.grid --write-data` "
          "(harness/generate/grid_cells.py): do not edit.\n"
          "# The stress grid's cases (see harness/commands/grid/ for its axes); the schema is\n"
          "# harness/catalog.yaml's. Regenerate rather than commit.\n")


def write_grid(out_dir: str | Path = GRID_DIR, selected: Sequence[Cell] | None = None
               ) -> dict[str, Any]:
    """Write ``out_dir``/catalog.yaml, ``out_dir``/data/ (csv.gz and datasets.yaml, with each
    dataset's seed and SHA-256) and ``out_dir``/cells.json (per case id: seed, formula, axes,
    truth, SHA-256); returns {case id: sha256}."""
    out = Path(out_dir)
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    chosen = list(selected or cells())
    meta: dict[str, Any] = {}
    manifest: dict[str, Any] = {}
    hashes: dict[str, str] = {}
    for cell in chosen:
        df, tr = generate(cell)
        text = csv_bytes(df)
        sha = hashlib.sha256(text).hexdigest()
        path = data_dir / f"{cell.dataset}.csv.gz"
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                    mtime=0, compresslevel=6) as gz:
            gz.write(text)
        # datasets.yaml keeps what loading needs (every harness process parses it: PyYAML
        # takes seconds per megabyte); the truth and the axes go to cells.json
        meta[cell.dataset] = {"source": "simulated", "file": path.name, "nrow": len(df),
                              "seed": cell.seed, "sha256": sha, "columns": column_metadata(df)}
        manifest[cell.id] = {"dataset": cell.dataset, "seed": cell.seed,
                             "formula": cell.spec.formula, "family": cell.spec.family,
                             "generator": "harness.commands.grid:generate", "cell": cell.axes(),
                             "sha256": sha, "truth": tr}
        hashes[cell.id] = sha
    (out / "cells.json").write_text(json.dumps({"cells": manifest}, indent=1) + "\n")
    stale = {p.name for p in data_dir.glob("grid_*.csv.gz")} - {
        f"{c.dataset}.csv.gz" for c in chosen}
    for name in stale:
        (data_dir / name).unlink()
    (data_dir / "datasets.yaml").write_text(HEADER + yaml.dump(
        {"datasets": meta}, Dumper=_Dumper, sort_keys=False, default_flow_style=None,
        width=100))
    (out / "catalog.yaml").write_text(HEADER + yaml.dump(
        {"cases": [catalog_entry(c) for c in chosen]}, Dumper=_Dumper, sort_keys=False,
        default_flow_style=None, width=100))
    return hashes
