"""Registered divergences: known, explained disagreements with the reference, and their size.

A candidate that disagrees with lme4 for a cause someone has understood (a wrong optimum of
the candidate, a different SE formula next to a zero variance, ...) is registered in a YAML
file (default: harness/divergences.yaml, whose header documents the schema) as a *finding*:
one cause (who is right and why), the evidence (how it was measured), and the rows it explains,
each a case, compared quantity, size and direction as measured (``python -m harness divergences
--measure --write`` writes the sizes). The loader flattens the findings into per-row entries,
each knowing its finding; the older flat format (``divergences:``, one entry per row with its
reason) is still read, each entry its own unnamed finding. :meth:`Registry.judge` then holds a
run to the registry:

- a quantity outside tolerance (a ``Row`` with ``ok is False``) must be *covered* by an entry
  for its case and implementation whose quantity pattern matches the row's name, whose
  direction matches the sign of candidate - reference, and whose size it does not exceed more
  than twice (``|difference| <= 2 * size``);
- a row matched by an entry but beyond twice its size has *grown* (the divergence got worse);
- a failing row matched by no entry is *unregistered* (a direction mismatch is unregistered:
  a divergence that changed sign is a different divergence);
- an entry for the case and implementation that matched no failing row is *stale*: it stopped
  firing (fixed? remove the entry).

A judgement is ``ok`` when nothing grew, nothing is unregistered and nothing is stale.

Patterns. ``case`` is an :mod:`fnmatch` glob over case ids (``*``, ``?``, ``[seq]``).
``quantity`` is a glob over a compared quantity's row name (as in the parameter table) in which
only ``*`` and ``?`` are wildcards: brackets are literal, so ``fixef_se[x]`` means the row
``fixef_se[x]`` and ``corr[*]`` every correlation row. The part before ``[`` must be one of
:data:`QUANTITIES`.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.resources
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.core import yaml_text
from harness.core.comparators import BUILTIN, quantities_of
from harness.core.compare import Row

# The compared quantities, by the part of a row's name before "[": what the comparators write
# (harness.core.comparators.quantities_of: fixef, fixef_se, var, cov, corr, loglik, ranef, ...) and
# the judge's consistency checks. A plugin's comparators add theirs (load_registry's quantities).
CONSISTENCY: tuple[str, ...] = (
    "consistency.objective",
    "consistency.loglik",
    "consistency.fixef",
    "consistency.sigma",
    "best_known.criterion",  # Gamma, inverse Gaussian: against the best known (judge.scale_family)
)
QUANTITIES: tuple[str, ...] = quantities_of(BUILTIN) + CONSISTENCY
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "either")
REQUIRED_KEYS: tuple[str, ...] = ("case", "impl", "quantity", "size", "direction", "reason")
FINDING_KEYS: tuple[str, ...] = ("id", "impl", "cause", "evidence", "rows")
ROW_KEYS: tuple[str, ...] = ("case", "quantity", "size", "direction")
FINDING_ID = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
GROWTH_FACTOR = 2.0  # a registered divergence may be up to this many times its size


class RegistryError(Exception):
    """The divergence registry is malformed: the message names the entry and the problem."""


def default_registry_path() -> Path:
    """The registry that travels with the harness package (harness/divergences.yaml)."""
    return Path(str(importlib.resources.files("harness") / "divergences.yaml"))


def registry_for(catalog: str | Path | None) -> Path | None:
    """The registry a run of ``catalog`` (None: the shipped one) is held to by default: the
    shipped registry is about the shipped catalog; a user's catalog brings its own (None)."""
    from harness.core.catalog import default_catalog_path

    shipped = default_catalog_path().resolve()
    if catalog is not None and Path(catalog).resolve() != shipped:
        return None
    return default_registry_path()


def _quantity_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


@dataclass(frozen=True)
class Finding:
    """One cause of disagreement: who is right and why (``cause``), how it was measured
    (``evidence``), for one implementation; its rows are the registry's entries naming it."""

    id: str
    impl: str
    cause: str
    evidence: str
    path: str = ""


@dataclass(frozen=True)
class Entry:
    """One registered row: a case glob, implementation and quantity pattern with its size and
    direction. ``index``: its position among all the file's rows (flattened); ``finding`` and
    ``row``: the finding it belongs to and its position in the finding's ``rows`` (for an
    entry of the flat ``divergences:`` list: None and its position there). ``reason`` is the
    finding's cause (a flat entry's own reason)."""

    index: int
    path: str
    case: str
    impl: str
    quantity: str
    size: float
    direction: str
    reason: str
    finding: str | None = None
    row: int | None = None
    _regex: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def label(self) -> str:
        """``finding ID row N (case, impl, quantity)`` (``entry N (...)`` for a flat entry):
        how messages name the row."""
        where = (f"entry {self.row}" if self.finding is None
                 else f"finding {self.finding} row {self.row}")
        return f"{where} ({self.case}, {self.impl}, {self.quantity})"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("index", "path", *REQUIRED_KEYS, "finding", "row")}

    def matches_case(self, case_id: str) -> bool:
        return fnmatch.fnmatchcase(case_id, self.case)

    def matches_quantity(self, name: str) -> bool:
        regex = self._regex if self._regex is not None else _quantity_regex(self.quantity)
        return regex.match(name) is not None

    def matches_direction(self, difference: float | None) -> bool:
        """Whether the sign of candidate - reference is the registered one. A difference that
        is None, NaN or zero has no sign: only ``either`` matches it."""
        if self.direction == "either":
            return True
        if difference is None or not math.isfinite(difference) or difference == 0:
            return False
        return (difference > 0) == (self.direction == "higher")

    def within_size(self, difference: float | None) -> bool:
        """``|difference| <= 2 * size``; a difference without a value (None, NaN) has no size
        to exceed (it can only be matched by an ``either`` entry)."""
        if difference is None or not math.isfinite(difference):
            return True
        return abs(difference) <= GROWTH_FACTOR * self.size


@dataclass
class Judgement:
    """How one (case, implementation)'s failing rows stand against the registry."""

    case_id: str
    impl: str
    covered: list[tuple[Row, Entry]] = field(default_factory=list)
    grown: list[tuple[Row, Entry]] = field(default_factory=list)
    unregistered: list[Row] = field(default_factory=list)
    stale: list[Entry] = field(default_factory=list)
    # entries whose pattern matched an unregistered row in the other direction (for messages)
    _other_direction: dict[int, list[Entry]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """Nothing grew, nothing is unregistered, no entry went stale."""
        return not (self.grown or self.unregistered or self.stale)

    @property
    def registered(self) -> bool:
        """ok, and at least one failing row was covered by an entry (a registered divergence:
        the item is an expected failure)."""
        return self.ok and bool(self.covered)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (e.g. to travel through pytest-xdist's user_properties)."""
        return {
            "case_id": self.case_id,
            "impl": self.impl,
            "ok": self.ok,
            "registered": self.registered,
            "covered": [{"row": asdict(r), "entry": e.to_dict()} for r, e in self.covered],
            "grown": [{"row": asdict(r), "entry": e.to_dict()} for r, e in self.grown],
            "unregistered": [asdict(r) for r in self.unregistered],
            "stale": [e.to_dict() for e in self.stale],
            "findings": self.findings(),
            "message": self.message(),
        }

    def message(self) -> str:
        """One line per problem (empty when ok)."""
        lines: list[str] = []
        for row, entry in self.grown:
            lines.append(
                f"{row.name}: registered divergence grew: |difference| {_g(abs(row.difference))}"
                f" > {_g(GROWTH_FACTOR)} x registered {entry.size:g} "
                f"(candidate - reference = {_signed(row.difference)}; {entry.label()}; "
                f"reason: {entry.reason})")
        for row in self.unregistered:
            line = (f"{row.name}: unregistered disagreement (candidate - reference = "
                    f"{_signed(row.difference)}, allowed {_g(row.allowed)}"
                    + (f", {row.note}" if row.note else "") + ")")
            others = self._other_direction.get(id(row))
            if others:
                line += "; " + ", ".join(f"{e.label()} registers it {e.direction}"
                                         for e in others)
            lines.append(line)
        for entry in self.stale:
            on = "" if entry.case == self.case_id else f" on {self.case_id}"
            what = "entry" if entry.finding is None else "row"
            lines.append(f"{entry.label()} stopped firing{on}: fixed? remove the {what} "
                         f"from {entry.path}")
        return "\n".join(lines)

    def findings(self) -> list[dict[str, Any]]:
        """The covered rows grouped by the finding that explains them, in order of first
        appearance: ``{"finding", "cause", "rows": [{"name", "difference", "size"}]}`` (a flat
        entry's finding is None)."""
        groups: dict[tuple[str | None, str], dict[str, Any]] = {}
        for row, entry in self.covered:
            group = groups.setdefault((entry.finding, entry.reason), {
                "finding": entry.finding, "cause": entry.reason, "rows": []})
            group["rows"].append({"name": row.name, "difference": row.difference,
                                  "size": entry.size})
        return list(groups.values())


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _signed(x: float | None) -> str:
    return "none" if x is None else f"{x:+.3g}"


@dataclass
class Registry:
    """The entries of one registry file (its findings' rows, flattened) and its findings."""

    entries: list[Entry] = field(default_factory=list)
    path: str | None = None
    findings: dict[str, Finding] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries)

    def entries_for(self, case_id: str, impl: str) -> list[Entry]:
        """The entries registered for this case and implementation, in file order."""
        return [e for e in self.entries if e.impl == impl and e.matches_case(case_id)]

    def judge(self, case_id: str, impl: str, rows: Sequence[Row]) -> Judgement:
        """Hold one comparison's rows (``harness.core.compare.Row``) to the registry (see the
        module's docstring for the rules). An entry fires on every failing row it matches
        (pattern and direction); a row is covered by the first firing entry within twice its
        size, and has grown when it fires entries but exceeds every one of them (it is paired
        with the largest)."""
        entries = self.entries_for(case_id, impl)
        judgement = Judgement(case_id, impl)
        fired: set[int] = set()
        for row in rows:
            if row.ok is not False:
                continue
            by_name = [e for e in entries if e.matches_quantity(row.name)]
            matching = [e for e in by_name if e.matches_direction(row.difference)]
            fired.update(e.index for e in matching)
            if not matching:
                judgement.unregistered.append(row)
                if by_name:
                    judgement._other_direction[id(row)] = by_name
                continue
            within = [e for e in matching if e.within_size(row.difference)]
            if within:
                judgement.covered.append((row, within[0]))
            else:
                judgement.grown.append((row, max(matching, key=lambda e: e.size)))
        judgement.stale = [e for e in entries if e.index not in fired]
        return judgement


def load_registry(path: str | Path | None, case_ids: Iterable[str],
                  quantities: Iterable[str] | None = None) -> Registry:
    """Read and validate a registry file (``None``: :func:`default_registry_path`) against the
    catalog's case ids and the compared quantities (default :data:`QUANTITIES`; the plugin
    passes its registered comparators'). Raises :class:`RegistryError` naming the finding and
    row (or the flat entry) and the problem."""
    known = QUANTITIES if quantities is None else tuple(quantities) + CONSISTENCY
    path = Path(path) if path is not None else default_registry_path()
    ids = list(case_ids)
    doc = read_document(path)
    entries: list[Entry] = []
    findings: dict[str, Finding] = {}
    seen: dict[tuple[str, str, str], str] = {}

    def add(entry: Entry, item: Any, fail: Any) -> None:
        key = (entry.case, entry.impl, entry.quantity)
        if key in seen:
            fail(f"duplicates {seen[key]} (same case, impl and quantity)")
        seen[key] = entry.label().split(" (")[0]
        entries.append(entry)

    for f_index, raw in enumerate(_list(path, doc, "findings")):
        finding = _finding(path, f_index, raw, findings)
        findings[finding.id] = finding
        for r_index, item in enumerate(raw["rows"]):
            fail = functools.partial(_fail_row, path, finding.id, r_index, item)
            entry = _row(fail, item, ROW_KEYS, ids, known, index=len(entries),
                         path=str(path), impl=finding.impl, reason=finding.cause,
                         finding=finding.id, row=r_index)
            add(entry, item, fail)
    for index, item in enumerate(_list(path, doc, "divergences")):
        fail_flat = functools.partial(_fail, path, index, item)
        entry = _row(fail_flat, item, REQUIRED_KEYS, ids, known, index=len(entries),
                     path=str(path), flat_index=index)
        add(entry, item, fail_flat)
    return Registry(entries, str(path), findings)


def read_document(path: Path) -> Mapping[str, Any]:
    """A registry file's top-level mapping (``findings:`` and/or the flat ``divergences:``;
    an empty file is an empty mapping), or :class:`RegistryError`."""
    if not path.is_file():
        raise RegistryError(f"divergence registry {path} does not exist")
    try:
        doc = yaml_text.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RegistryError(f"divergence registry {path}: not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise RegistryError(f"divergence registry {path}: expected a mapping with a "
                            f"'findings' list at the top, got {type(doc).__name__}")
    extra = sorted(map(str, set(doc) - {"findings", "divergences"}))
    if extra:
        raise RegistryError(f"divergence registry {path}: unknown top-level key(s) {extra}; "
                            "only 'findings' (and the older flat 'divergences')")
    return doc


def rows_of(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a registry file as a flat dict (case, impl, quantity, size, direction,
    reason, finding), unvalidated: for readers that need the rows, not a judgement."""
    doc = read_document(Path(path))
    out = [{**row, "impl": f.get("impl"), "reason": f.get("cause"), "finding": f.get("id")}
           for f in doc.get("findings") or [] for row in f.get("rows") or []]
    return out + [{**e, "finding": None} for e in doc.get("divergences") or []]


def _list(path: Path, doc: Mapping[str, Any], key: str) -> list[Any]:
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise RegistryError(f"divergence registry {path}: '{key}' must be a list, got "
                            f"{type(items).__name__}")
    return items


def _finding(path: Path, index: int, raw: Any, known: Mapping[str, Finding]) -> Finding:
    """Validate one finding's own fields (not its rows)."""
    name = raw.get("id") if isinstance(raw, Mapping) else None

    def fail(problem: str) -> None:
        who = f"finding {index}" + (f" ({name})" if isinstance(name, str) else "")
        raise RegistryError(f"divergence registry {path}: {who}: {problem}")

    if not isinstance(raw, Mapping):
        fail(f"a finding must be a mapping of {', '.join(FINDING_KEYS)}, got "
             f"{type(raw).__name__}")
    missing = [k for k in FINDING_KEYS if k not in raw]
    if missing:
        fail(f"missing required field(s) {missing}")
    unknown = sorted(map(str, set(raw) - set(FINDING_KEYS)))
    if unknown:
        fail(f"unknown key(s) {unknown}; allowed: {list(FINDING_KEYS)}")
    if not isinstance(name, str) or not FINDING_ID.match(name):
        fail(f"id {name!r} must be a short slug (lower-case letters, digits, '.', '_', '-')")
    if name in known:
        fail(f"id {name!r} is used by another finding")
    for key in ("impl", "cause", "evidence"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            fail(f"{key} must be non-empty text"
                 + {"impl": "", "cause": ": who is right, and why",
                    "evidence": ": how it was measured, with numbers"}[key])
    if not isinstance(raw["rows"], list) or not raw["rows"]:
        fail("rows must be a non-empty list of {case, quantity, size, direction}")
    return Finding(id=name, impl=raw["impl"], cause=" ".join(raw["cause"].split()),
                   evidence=" ".join(raw["evidence"].split()), path=str(path))


def _fail_row(path: Path, finding: str, index: int, item: Any, problem: str) -> None:
    if isinstance(item, Mapping):
        who = f"case {item.get('case')!r}, quantity {item.get('quantity')!r}"
    else:
        who = f"{type(item).__name__} {item!r}"
    raise RegistryError(f"divergence registry {path}: finding {finding} row {index} ({who}): "
                        f"{problem}")


def _fail(path: Path, index: int, item: Any, problem: str) -> None:
    if isinstance(item, Mapping):
        who = (f"case {item.get('case')!r}, impl {item.get('impl')}, "
               f"quantity {item.get('quantity')!r}")
    else:
        who = f"{type(item).__name__} {item!r}"
    raise RegistryError(f"divergence registry {path}: entry {index} ({who}): {problem}")


def _row(fail: Any, item: Any, keys: tuple[str, ...], case_ids: list[str],
         known: Sequence[str], *, index: int, path: str, impl: str | None = None,
         reason: str | None = None, finding: str | None = None, row: int | None = None,
         flat_index: int | None = None) -> Entry:
    """Validate one row (a finding's, with ``ROW_KEYS``; or a flat entry, with
    ``REQUIRED_KEYS``, its impl and reason its own) and make its :class:`Entry`."""
    if not isinstance(item, Mapping):
        fail(f"{'an entry' if flat_index is not None else 'a row'} must be a mapping of "
             f"{', '.join(keys)}")
    missing = [k for k in keys if k not in item]
    if missing:
        fail(f"missing required field(s) {missing}")
    unknown = sorted(map(str, set(item) - set(keys)))
    if unknown:
        fail(f"unknown key(s) {unknown}; allowed: {list(keys)}")

    impl = item["impl"] if impl is None else impl
    case, quantity = item["case"], item["quantity"]
    for key, value in (("case", case), ("impl", impl), ("quantity", quantity)):
        if not isinstance(value, str) or not value.strip():
            fail(f"{key} must be non-empty text, got {value!r}")
    if not any(fnmatch.fnmatchcase(c, case) for c in case_ids):
        fail("matches no catalog case")
    base, bracket, rest = quantity.partition("[")
    if base not in known:
        fail(f"unknown quantity {base!r}; known: {', '.join(known)}")
    if bracket and (not rest.endswith("]") or len(rest) < 2 or "[" in rest[:-1]):
        fail(f"quantity {quantity!r}: the bracket must be closed, as in 'fixef[x]'")

    size = item["size"]
    if isinstance(size, bool) or not isinstance(size, int | float):
        fail(f"size {size!r} must be a number (|candidate - reference| in the quantity's units)")
    if not (math.isfinite(size) and size > 0):
        fail(f"size {size!r} must be a finite number > 0")
    direction = item["direction"]
    if direction not in DIRECTIONS:
        fail(f"direction {direction!r} must be one of {', '.join(DIRECTIONS)} "
             "(the sign of candidate - reference)")
    if reason is None:
        reason = item["reason"]
        if not isinstance(reason, str) or not reason.strip():
            fail("reason must be non-empty text: why the candidate and the reference differ")
        reason = " ".join(reason.split())

    return Entry(index=index, path=path, case=case, impl=impl, quantity=quantity,
                 size=float(size), direction=direction, reason=reason, finding=finding,
                 row=row if flat_index is None else flat_index,
                 _regex=_quantity_regex(quantity))
