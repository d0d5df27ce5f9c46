"""What a comparator is: one compared quantity, read from two FitRecords, with its tolerance
rule and the reason for it, giving rows of the parameter table.

A comparator is any object with ``name`` (the quantity, also the prefix of its row names),
``reason`` (why its tolerance is what it is, one or two sentences) and
``rows(reference, candidate, tol, notes) -> list[Row]``; optionally ``quantities``, the
prefixes of the row names it writes (default: ``name``), which the divergence registry accepts.
Register one in harness.core.comparators (built in) or return it from the pytest hook
``pytest_harness_comparators`` (harness.pytest_plugin.hookspecs) in your own plugin or conftest.

A plugin's own quantity travels in the record's open namespace ``record["extra"][name]``
(harness.core.record: any JSON value, written by the plugin's implementation or recording): its
comparator reads it with :func:`extra_value`, so a new quantity needs no change to the record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.core.tolerance import Tolerance

Record = Mapping[str, Any]


@dataclass
class Row:
    """One compared quantity. ``ok`` is None when it was not compared (not reported)."""

    name: str
    reference: float | None
    candidate: float | None
    difference: float | None
    allowed: float | None
    ok: bool | None
    note: str = ""


class Comparator(Protocol):
    """One quantity compared between a reference and a candidate record."""

    name: str
    reason: str

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        """The parameter table's rows for this quantity; ``notes`` collects remarks (names
        that differ, lengths that do not match)."""
        ...


def row(name: str, ref: float | None, cand: float | None, allowed: float | None) -> Row | None:
    """The row comparing ``cand`` with ``ref`` within ``allowed`` (None when neither has it):
    present only in the candidate is "not in reference" (a different model), absent from the
    candidate is "not reported" (not compared, never a failure by itself)."""
    if ref is None and cand is None:
        return None
    if ref is None:
        return Row(name, None, cand, None, None, False, "not in reference")
    if cand is None:
        return Row(name, ref, None, None, allowed, None, "not reported")
    diff = cand - ref
    ok = bool(allowed is not None and math.isfinite(diff) and abs(diff) <= allowed)
    return Row(name, ref, cand, diff, allowed, ok)


def extra_value(record: Record, name: str) -> Any:
    """The plugin quantity ``name`` from the record's open namespace (``record["extra"]``), or
    None when the record does not report it."""
    return (record.get("extra") or {}).get(name)


def nested(rows: Sequence[Mapping[str, Any]] | None, outer: str, inner: str
           ) -> dict[str, dict[str, Mapping[str, Any]]]:
    """A record's list field as {row[outer]: {row[inner]: row}} (e.g. confint by method, then
    by parameter), the keys as text."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in rows or ():
        out.setdefault(str(r[outer]), {})[str(r[inner])] = r
    return out


def rows_of(*maybe: Row | None) -> list[Row]:
    return [r for r in maybe if r is not None]


def missing(r: Row | None) -> Row | None:
    """The row of a quantity the reference has and the candidate omitted while reporting its
    kind (a fixed effect missing among reported fixed effects): a structural failure."""
    if r is not None:
        r.ok, r.note = False, "missing"
    return r
