"""``python -m harness divergences --measure``: the sizes of a registry's rows, measured.

Each registered row's cases are fitted with its implementation and compared with the reference
down the one road (:func:`harness.core.outcome.decide`: the runner's isolated fits, the judge, the
tolerance policy); a row's measured size is the largest |candidate - reference| among the
failing rows it matches (quantity and direction) over its cases, rounded up to two significant
digits. Without ``--write`` the command prints what would change (grown, shrunk, stopped
firing); with it, it writes the new sizes and measured values into the file's rows, leaving the
rest of the file (header, comments, order, findings' text) as it is.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from harness.core import yaml_text
from harness.core.divergences import GROWTH_FACTOR, Entry, Registry

#: statuses of a measured row, in the order they are printed
STATUSES = ("grown beyond 2x", "grown", "shrunk", "stopped firing", "unchanged", "no value")


def round_up(x: float, digits: int = 2) -> float:
    """``x`` > 0 rounded up to ``digits`` significant digits (0.0563558 -> 0.057)."""
    d = Decimal(repr(float(x)))
    quantum = Decimal(1).scaleb(d.adjusted() - digits + 1)
    return float((d / quantum).to_integral_value(rounding=ROUND_CEILING) * quantum)


@dataclass
class Measurement:
    """What one registered row measured over its cases. ``difference``: the signed
    candidate - reference of its largest firing row (None: it fired nowhere, or only on rows
    without a value); ``allowed``: that row's tolerance; ``stopped_on``: cases it did not fire
    on."""

    entry: Entry
    difference: float | None = None
    allowed: float | None = None
    fired_on: list[str] = field(default_factory=list)
    stopped_on: list[str] = field(default_factory=list)

    @property
    def size(self) -> float | None:
        """The measured size to register, or None when nothing with a value fired."""
        if self.difference is None or not math.isfinite(self.difference) \
                or self.difference == 0:
            return None
        return round_up(abs(self.difference))

    @property
    def status(self) -> str:
        if not self.fired_on:
            return "stopped firing"
        size = self.size
        if size is None:
            return "no value"
        if abs(self.difference or 0) > GROWTH_FACTOR * self.entry.size:
            return "grown beyond 2x"
        if size > self.entry.size:
            return "grown"
        return "shrunk" if size < self.entry.size else "unchanged"

    def line(self) -> str:
        e = self.entry
        text = f"{e.label()}: {self.status}"
        if self.size is not None:
            text += (f": measured {self.difference:+.6g} (allowed {self.allowed:.4g}), size "
                     f"{e.size:g} -> {self.size:g}")
        if self.stopped_on and self.fired_on:
            text += f"; stopped firing on {', '.join(self.stopped_on)}"
        return text


@dataclass
class Measured:
    """A measuring run: the rows measured, the failing rows no row registers, the items
    skipped (case, impl, why)."""

    rows: list[Measurement] = field(default_factory=list)
    unregistered: list[tuple[str, str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    def report(self) -> str:
        """One line per row that changed, then the unregistered rows and the skipped items."""
        lines = [m.line() for status in STATUSES for m in self.rows
                 if m.status == status and status != "unchanged"]
        same = sum(m.status == "unchanged" for m in self.rows)
        lines.append(f"{len(self.rows)} rows measured: {same} unchanged, "
                     f"{len(self.rows) - same} changed")
        lines += [f"unregistered: {case} [{impl}] {row.name} (candidate - reference "
                  f"{row.difference:+.6g}, allowed {row.allowed:.4g}): not written, add it to a "
                  "finding" for case, impl, row in self.unregistered]
        lines += [f"skipped {case} [{impl}]: {why}" for case, impl, why in self.skipped]
        return "\n".join(lines)

    @property
    def needs_attention(self) -> bool:
        """A row grew beyond twice its size or stopped firing, or a failing row is
        unregistered: a run of the harness would fail on it."""
        return bool(self.unregistered) or any(
            m.status in ("grown beyond 2x", "stopped firing") or m.stopped_on
            for m in self.rows)


def measure(registry: Registry, cases: Sequence[Any], reference: Any, *,
            impls: Iterable[str] | None = None,
            adapter_for: Callable[[str], Any] | None = None,
            decide: Callable[..., Any] | None = None) -> Measured:
    """Measure the rows of ``registry`` whose implementation is in ``impls`` (default all) on
    ``cases`` (the catalog's, already selected by ``-k``): every (case, implementation) pair a
    row names is decided once; an implementation that cannot run here is skipped with its
    reason. A certified case is judged against its exact truth, as in a pytest run, so its
    rows (``certified[...]``, ``nist[...]``) are measured on the quantities they name."""
    from harness.adapters import get_adapter
    from harness.adapters.certified import certified_reference
    from harness.core.outcome import decide as one_road
    from harness.core.runner import case_data

    adapter_for = adapter_for or get_adapter
    decide = decide or one_road
    wanted = None if impls is None else set(impls)
    entries = [e for e in registry.entries if wanted is None or e.impl in wanted]
    out = Measured()
    by_entry = {e.index: Measurement(e) for e in entries}
    pairs = [(case, impl) for case in cases
             for impl in dict.fromkeys(e.impl for e in entries if e.matches_case(case.id))]
    unavailable: dict[str, str] = {}
    for case, impl in pairs:
        row_entries = [e for e in entries if e.impl == impl and e.matches_case(case.id)]
        if impl not in unavailable:
            adapter = adapter_for(impl)
            unavailable[impl] = adapter.unavailable() or ""
        if unavailable[impl]:
            out.skipped.append((case.id, impl, f"not installed here: {unavailable[impl]}"))
            continue  # a case that could not be measured says nothing about its rows
        print(f"measuring {case.id} [{impl}]", file=sys.stderr, flush=True)
        judge_by = certified_reference(case) or reference
        d = decide(case, adapter_for(impl), judge_by, data=case_data(case))
        if d.comparison is None or d.outcome in ("skipped", "no-verdict", "error", "failed"):
            # a fit that failed (an error, a timeout) measured nothing: its rows did not stop
            out.skipped.append((case.id, impl, d.headline))
            continue
        judgement = registry.judge(case.id, impl, d.comparison.rows)
        out.unregistered += [(case.id, impl, row) for row in judgement.unregistered]
        for e in row_entries:
            _take(by_entry[e.index], case.id, d.comparison.rows)
    out.rows = [m for m in by_entry.values() if m.fired_on or m.stopped_on]
    return out


def _take(m: Measurement, case_id: str, rows: Sequence[Any]) -> None:
    """Add one case's compared rows to the row's measurement (the largest firing one)."""
    firing = [r for r in rows if r.ok is False and m.entry.matches_quantity(r.name)
              and m.entry.matches_direction(r.difference)]
    if not firing:
        m.stopped_on.append(case_id)
        return
    m.fired_on.append(case_id)
    for r in firing:
        d = r.difference
        if d is not None and math.isfinite(d) and (
                m.difference is None or abs(d) > abs(m.difference)):
            m.difference, m.allowed = d, r.allowed


# ---- writing ------------------------------------------------------------------------------

def yaml_number(x: float) -> str:
    """A number PyYAML reads back as a float (its resolver wants a dot: 1.0e-05, not 1e-05)."""
    text = repr(float(x))
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    if "e" in text and not re.search(r"e[-+]", text):
        text = text.replace("e", "e+")
    return text


_FINDING = re.compile(r"^\s*- id:\s*(\S+)\s*$")
_ROW = re.compile(r"^(?P<indent>\s*)- (?P<map>\{.*\})(?P<rest>\s*(#.*)?)$")
_SIZE = re.compile(r"(size:\s*)([^,}\s]+)")


def write_sizes(path: str | Path, measured: Measured) -> list[str]:
    """Write each measured row's new size (and its measured value, as the row's comment)
    into the registry file; rows whose status is unchanged, stopped firing or no value are
    left as they are. Returns the rows it could not write (not in the one-line form)."""
    path = Path(path)
    todo = {(m.entry.finding, m.entry.case, m.entry.quantity): m for m in measured.rows
            if m.size is not None and m.status != "unchanged"}
    if any(m.entry.finding is None for m in todo.values()):
        raise ValueError(f"{path}: rows of the flat 'divergences:' list cannot be written; "
                         "convert the file first (tools/findings_from_divergences.py)")
    lines = path.read_text().splitlines(keepends=True)
    finding = None
    for i, line in enumerate(lines):
        head = _FINDING.match(line)
        if head:
            finding = head.group(1)
            continue
        row = _ROW.match(line.rstrip("\n"))
        if not row or finding is None:
            continue
        mapping = yaml_text.safe_load(row.group("map"))
        m = todo.pop((finding, mapping.get("case"), mapping.get("quantity")), None)
        if m is None:
            continue
        new_map = _SIZE.sub(lambda g, m=m: g.group(1) + yaml_number(m.size), row.group("map"),
                            count=1)
        comment = f"  # measured {m.difference:+.6g}, allowed {m.allowed:.4g}"
        lines[i] = f"{row.group('indent')}- {new_map}{comment}\n"
    path.write_text("".join(lines))
    return [m.entry.label() for m in todo.values()]


def parse_interpreters(pairs: Sequence[str]) -> dict[str, str]:
    """``--impl-python NAME=PYTHON`` pairs as a mapping; ValueError naming a bad pair."""
    mapping = {}
    for pair in pairs:
        name, sep, python = pair.partition("=")
        if not sep or not name or not python:
            raise ValueError(f"--impl-python {pair!r}: give NAME=PYTHON")
        if not Path(python).is_file():
            raise ValueError(f"--impl-python {pair!r}: {python} is not an executable")
        mapping[name] = python
    return mapping
