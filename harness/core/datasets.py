"""Load the harness's datasets (lme4's and the simulated ones) with R's column types.

Each dataset is a ``<name>.csv.gz`` plus an entry in ``datasets.yaml`` in the same folder,
recording per column its type (numeric, integer, factor, ordered) and the factor levels in R's
order, so that factor coding and level order are exactly R's. The package's own folder is
found with importlib.resources (works from an installed package as from a clone); a user's
catalog may add folders of its own (``data_dirs``), searched first.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from harness.core import yaml_text
from harness.core.errors import DataConversionError

METADATA_FILE = "datasets.yaml"
COLUMN_TYPES = ("numeric", "integer", "factor", "ordered")


class DatasetError(DataConversionError):
    """A dataset is unknown, or its file does not match its metadata."""


def package_data_dir() -> Path:
    """The folder of the datasets that travel with the harness package."""
    return Path(str(importlib.resources.files("harness") / "data"))


def _dirs(data_dirs: Sequence[str | Path] | None) -> tuple[Path, ...]:
    extra = tuple(Path(d).resolve() for d in (data_dirs or ()))
    # nist_anova/: the certified sets, with their own metadata (harness.generate.certified writes
    # it)
    return (*extra, package_data_dir(), package_data_dir() / "nist_anova")


@functools.cache
def _metadata(data_dir: Path) -> dict[str, Any]:
    path = data_dir / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        doc = yaml_text.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets", {}), dict):
        raise DatasetError(f"{path}: expected a mapping 'datasets: {{name: entry}}'")
    return doc.get("datasets") or {}


def _locate(name: str, data_dirs: Sequence[str | Path] | None) -> tuple[Path, dict[str, Any]]:
    dirs = _dirs(data_dirs)
    for d in dirs:
        meta = _metadata(d)
        if name in meta:
            return d, meta[name]
    known = sorted({n for d in dirs for n in _metadata(d)}, key=str.lower)
    raise DatasetError(
        f"unknown dataset {name!r}; known datasets: {', '.join(known)} "
        f"(searched {', '.join(str(d) for d in dirs)})"
    )


def dataset_names(data_dirs: Sequence[str | Path] | None = None) -> list[str]:
    """Names of all datasets available (the package's and those in ``data_dirs``)."""
    names: dict[str, None] = {}
    for d in _dirs(data_dirs):
        names.update(dict.fromkeys(_metadata(d)))
    return list(names)


def dataset_info(name: str, data_dirs: Sequence[str | Path] | None = None) -> dict[str, Any]:
    """The dataset's metadata: source, description, columns; seed, generator, truth if simulated."""
    d, entry = _locate(name, data_dirs)
    info = copy.deepcopy(entry)
    info["name"] = name
    info["path"] = str(d / entry.get("file", f"{name}.csv.gz"))
    return info


def load_dataset(name: str, data_dirs: Sequence[str | Path] | None = None) -> pd.DataFrame:
    """The dataset as a DataFrame with R's types (a fresh copy; the parsed file is cached).

    Factors are pandas Categoricals with R's level order (ordered ones for R ordered factors),
    integers int64, numerics float64.
    """
    d, _ = _locate(name, data_dirs)
    return _load(name, d).copy()


@functools.cache
def _load(name: str, data_dir: Path) -> pd.DataFrame:
    entry = _metadata(data_dir)[name]
    path = data_dir / entry.get("file", f"{name}.csv.gz")
    columns = entry.get("columns")
    if not isinstance(columns, list) or not columns:
        raise DatasetError(f"dataset {name!r}: its metadata lists no columns")
    if not path.is_file():
        raise DatasetError(f"dataset {name!r}: file {path} is missing")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    expected = [c.get("name") for c in columns]
    if list(raw.columns) != expected:
        raise DatasetError(
            f"dataset {name!r}: file columns {list(raw.columns)} differ from metadata {expected}"
        )
    out = {c["name"]: _convert(name, c, raw[c["name"]]) for c in columns}
    df = pd.DataFrame(out)
    if "nrow" in entry and len(df) != entry["nrow"]:
        raise DatasetError(f"dataset {name!r}: {len(df)} rows, metadata says {entry['nrow']}")
    return df


def _convert(dataset: str, col: dict[str, Any], text: pd.Series) -> pd.Series:
    name, kind = col["name"], col.get("type")
    if kind not in COLUMN_TYPES:
        raise DatasetError(
            f"dataset {dataset!r}, column {name!r}: type {kind!r} is not one of {COLUMN_TYPES}"
        )
    if kind in ("factor", "ordered"):
        levels = [str(v) for v in col.get("levels") or []]
        unknown = sorted(set(text) - set(levels))
        if unknown:
            raise DatasetError(
                f"dataset {dataset!r}, column {name!r}: values {unknown[:5]} are not among its "
                f"recorded levels"
            )
        cat = pd.Categorical(text.to_numpy(), categories=levels, ordered=kind == "ordered")
        return pd.Series(cat, name=name)
    try:
        values = pd.to_numeric(text.replace({"NA": None, "": None}))
    except ValueError as exc:
        raise DatasetError(f"dataset {dataset!r}, column {name!r}: not {kind}: {exc}") from None
    if kind == "integer":
        return values.astype("int64")
    return values.astype("float64")
