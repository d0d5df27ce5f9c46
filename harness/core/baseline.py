"""Regression baselines: one run's candidate records, kept to compare later runs with.

``--save-baseline DIR`` keeps every candidate record of a run; ``--compare-baseline DIR`` fails
any quantity that moved more than its tolerance from the saved record of the same
implementation: drift between two releases of one package, even while both stay within
lme4's tolerance. The tolerance is the harness's own policy (harness/core/tolerance.py), applied
with the saved record in the place of the reference.

Layout of a baseline folder::

    DIR/manifest.json               catalog version and path, harness version, creation time
    DIR/<impl>/<case_id>.json       one FitRecord per implementation and case, verbatim

``<impl>`` and ``<case_id>`` are made filesystem-safe by percent-quoting every character but
letters, digits and ``_.-~`` (``mypkg.fit:fit`` -> ``mypkg.fit%3Afit``); :func:`unquote_name`
reverses it. Records are written atomically (a temporary file in the same folder, then
``os.replace``), by each process (pytest-xdist worker) for itself; the manifest is written
once by the controller and records never depend on it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core.compare import Comparison, Row, compare_records
from harness.core.tolerance import DEFAULT, Tolerance

MANIFEST = "manifest.json"
FORMAT = 1  # the layout above; bump when it changes
DRIFT_NOTE = "drift since baseline"
DISTRIBUTION = "mixedref"  # the distribution that ships the harness


class BaselineError(Exception):
    """A baseline cannot be saved or used: the message says which and what to do."""


def catalog_version(cases: Iterable[Any]) -> str:
    """A short stable hash (16 hex digits of sha256) of what defines the cases: each case's
    id, dataset, formula and REML flag, sorted by id. Notes, tags, timeouts and expectations
    do not change it."""
    defs = sorted(([str(c.id), str(c.dataset), str(c.formula), bool(c.REML)] for c in cases),
                  key=lambda d: d[0])
    text = json.dumps(defs, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def quote_name(name: str) -> str:
    """A filesystem-safe, reversible form of an implementation name or case id."""
    if not isinstance(name, str) or not name:
        raise BaselineError(f"cannot make a file name of {name!r}: a non-empty name is needed")
    quoted = urllib.parse.quote(name, safe="")
    if quoted.startswith("."):  # ".", "..", hidden files
        quoted = "%2E" + quoted[1:]
    return quoted


def unquote_name(quoted: str) -> str:
    """The name :func:`quote_name` made ``quoted`` from."""
    return urllib.parse.unquote(quoted)


def record_path(directory: str | Path, impl: str, case_id: str) -> Path:
    """Where the record of ``impl`` on ``case_id`` lives in the baseline ``directory``."""
    return Path(directory) / quote_name(impl) / f"{quote_name(case_id)}.json"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_record(directory: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` (a FitRecord with ``impl`` and ``case_id``) to
    ``DIR/<impl>/<case_id>.json`` atomically; returns the path. Safe to call from several
    processes at once; needs no manifest."""
    impl, case_id = record.get("impl"), record.get("case_id")
    if not impl or not case_id:
        raise BaselineError(f"cannot save a record without impl and case_id "
                            f"(impl={impl!r}, case_id={case_id!r})")
    try:
        text = json.dumps(dict(record), indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise BaselineError(f"cannot save the record of {impl} on {case_id}: not "
                            f"JSON-serializable ({exc})") from None
    path = record_path(directory, str(impl), str(case_id))
    _write_atomic(path, text)
    return path


def _harness_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_manifest(directory: str | Path, catalog_version: str,
                   catalog_path: str | Path) -> None:
    """Write ``DIR/manifest.json`` (atomically): the catalog version and path, the harness
    (mixedref) version and the creation time. Called once per run, by the controller."""
    manifest = {
        "format": FORMAT,
        "catalog_version": catalog_version,
        "catalog_path": str(catalog_path),
        "harness_version": _harness_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    _write_atomic(Path(directory) / MANIFEST, json.dumps(manifest, indent=1) + "\n")


@dataclass
class Baseline:
    """An opened baseline folder: its manifest and, on demand, its records."""

    directory: Path
    manifest: dict[str, Any]
    _cache: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict,
                                                                 repr=False)

    @property
    def catalog_version(self) -> str:
        return str(self.manifest.get("catalog_version"))

    def record(self, impl: str, case_id: str) -> dict[str, Any] | None:
        """The saved record of ``impl`` on ``case_id``, or None when the baseline has none."""
        key = (impl, case_id)
        if key not in self._cache:
            path = record_path(self.directory, impl, case_id)
            if not path.is_file():
                self._cache[key] = None
            else:
                try:
                    rec = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise BaselineError(f"baseline record {path} cannot be read: {exc}") from None
                if not isinstance(rec, dict):
                    raise BaselineError(f"baseline record {path} is not a record (a JSON "
                                        f"object), but {type(rec).__name__}")
                self._cache[key] = rec
        return self._cache[key]

    def impls(self) -> list[str]:
        """The implementations with records in the baseline."""
        return sorted(unquote_name(p.name) for p in self.directory.iterdir() if p.is_dir())


def open_baseline(directory: str | Path, catalog_version: str) -> Baseline:
    """Open the baseline at ``directory`` for a run of the catalog whose version is
    ``catalog_version``; refuses a missing baseline and one saved for other cases."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BaselineError(f"no baseline at {directory} ({MANIFEST} missing): save one with "
                            f"--save-baseline {directory}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BaselineError(f"baseline manifest {manifest_path} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or "catalog_version" not in manifest:
        raise BaselineError(f"baseline manifest {manifest_path} has no catalog_version: not a "
                            f"baseline; save one with --save-baseline {directory}")
    saved = str(manifest["catalog_version"])
    if saved != catalog_version:
        raise BaselineError(
            f"baseline at {directory} was saved for catalog version {saved} (catalog "
            f"{manifest.get('catalog_path')}), but this run's catalog is version "
            f"{catalog_version}: the cases differ, so the records do not compare; save a new "
            f"baseline with --save-baseline {directory}")
    return Baseline(directory, manifest)


def compare_with_baseline(baseline_record: Mapping[str, Any], record: Mapping[str, Any],
                          tol: Tolerance = DEFAULT) -> Comparison:
    """The full comparison of ``record`` with the saved ``baseline_record`` under ``tol``
    (the saved record in the place of the reference), with a note when either fit failed."""
    comp = compare_records(baseline_record, record, tol=tol)
    if baseline_record.get("error") and not record.get("error"):
        comp.notes.append(f"the baseline's fit failed ({baseline_record['error']}) and this "
                          "run's succeeded: nothing to compare")
    elif record.get("error") and not baseline_record.get("error"):
        comp.notes.append(f"this run's fit failed ({record['error']}) where the baseline's "
                          "succeeded: the comparison with the reference reports it")
    return comp


def drift(baseline_record: Mapping[str, Any], record: Mapping[str, Any],
          tol: Tolerance = DEFAULT) -> list[Row]:
    """The rows of ``record`` that moved more than their tolerance from ``baseline_record``
    (``Row.reference`` is the saved value, ``Row.candidate`` the new one), each with its note
    set to "drift since baseline" (followed by the comparison's own note, e.g. "missing", when
    it had one). A failed fit on either side gives no rows, and neither does a quantity whose
    value is the same in both (its tolerance may not be formed: fixed effects of a record
    without standard errors)."""
    comp = compare_with_baseline(baseline_record, record, tol)
    return [replace(r, note=DRIFT_NOTE if not r.note else f"{DRIFT_NOTE}: {r.note}")
            for r in comp.failures
            if r.reference is None or r.candidate is None or r.reference != r.candidate]
