"""Convert a divergence registry from the flat format (``divergences:``, one entry per row with
its reason) to findings (``findings:``, one cause with the rows it explains; see
harness/core/divergences.py and docs/findings.md).

    python tools/findings_from_divergences.py harness/divergences.yaml [MORE.yaml ...] [--out F]

Reads every file (flat entries, findings, or both: a partly converted file) and writes the
first file (or ``--out``) with its header comment kept, its existing findings kept as they are
(ids, causes, rows, row comments), and the flat entries grouped into findings:

1. the same implementation and the same reason, up to whitespace: one finding;
2. reasons that state the same cause with case-specific numbers: merged when, with numbers,
   case ids and the name of the criterion (REML criterion, deviance) normalised, they share a
   clause of at least :data:`MIN_CLAUSE` characters that is not the measurement's boilerplate;
3. a reason that points at another row of its case ("see the objective entry of this case")
   joins that row's finding.

A flat entry that joins an existing finding (by rule 2 against the finding's cause and
evidence) is appended to its rows; one whose case, impl and quantity already are a row is
dropped. The measured-value comment after each entry's ``size`` travels with its row. A merged
finding's cause is its most frequent reason; the other reasons, with their cases, go into its
evidence. Read the printed groups: ids and causes are the converter's first draft."""

from __future__ import annotations

import argparse
import collections
import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.commands.divergences_measure import yaml_number
from harness.core import yaml_text

MIN_CLAUSE = 50
WIDTH = 96
STOPWORDS = frozenset(
    "a an the of its it is are on in at to by for and or with as from not that this these "
    "than where which whose s be only default".split())
MEASURED = ("Measured on {rows} row(s) of {cases} case(s): each case fitted by the harness's "
            "adapter for {impl} and compared with the reference's recorded answers under "
            "harness/core/tolerance.py; each size is the measured |difference| rounded up to two "
            "significant digits (the measured difference and its allowance in the row's "
            "comment).")
VARIANTS = (" Stated per case when registered (the cause as written is that of {cases}; "
            "\"[... as in the cause]\" ends a statement as the cause ends):")


@dataclass
class FlatRow:
    """One entry of the flat format, with the comment after its size."""

    case: str
    impl: str
    quantity: str
    size: float
    direction: str
    reason: str
    comment: str = ""


@dataclass
class Finding:
    """A finding being written: its fields and rows (``(row mapping, comment)`` pairs)."""

    id: str
    impl: str
    cause: str
    evidence: str
    rows: list[tuple[dict[str, Any], str]] = field(default_factory=list)


# ---- reading ------------------------------------------------------------------------------

def _size_comments(text: str, node: Any, key: str) -> list[str]:
    """The comment on the line of each ``size`` of the list under ``key`` of a composed
    document (per item of that list; a finding's rows are handled by the caller)."""
    lines = text.splitlines()
    out = []
    for item in node.value:
        comment = ""
        for k, v in getattr(item, "value", []):
            if getattr(k, "value", None) == "size":
                line = lines[v.end_mark.line] if v.end_mark.line < len(lines) else ""
                comment = line.split("#", 1)[1].strip() if "#" in line else ""
        out.append(comment)
    return out


def read(path: Path) -> tuple[str, list[Finding], list[FlatRow]]:
    """A registry file's header comment, its findings and its flat entries."""
    text = path.read_text()
    header = "".join(line + "\n" for line in _header_lines(text))
    doc = yaml_text.safe_load(text) or {}
    root = yaml.compose(text)
    nodes = {k.value: v for k, v in root.value} if root is not None else {}
    findings = []
    if doc.get("findings"):
        for raw, node in zip(doc["findings"], nodes["findings"].value, strict=True):
            rows_node = next(v for k, v in node.value if k.value == "rows")
            comments = _size_comments(text, rows_node, "rows")
            findings.append(Finding(raw["id"], raw["impl"], _words(raw["cause"]),
                                    _words(raw["evidence"]),
                                    [(dict(r), c) for r, c in zip(raw["rows"], comments,
                                                                  strict=True)]))
    flat = []
    if doc.get("divergences"):
        comments = _size_comments(text, nodes["divergences"], "divergences")
        for raw, comment in zip(doc["divergences"], comments, strict=True):
            flat.append(FlatRow(raw["case"], raw["impl"], raw["quantity"], raw["size"],
                                raw["direction"], _words(raw["reason"]), comment))
    return header, findings, flat


def _header_lines(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            lines.append(line)
        else:
            break
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _words(text: Any) -> str:
    return " ".join(str(text).split())


# ---- grouping -----------------------------------------------------------------------------

def normalise(text: str, case_ids: Sequence[str]) -> str:
    """The reason with case ids, the criterion's name and numbers made alike, lower case."""
    text = _words(text)
    for case in sorted(case_ids, key=len, reverse=True):
        text = text.replace(case, "CASE")
    text = text.lower()
    text = re.sub(r"reml criterion|laplace -2 log-likelihood|-2 log-likelihood|deviance",
                  "CRIT", text)
    text = text.replace("statsmodels mixedlm", "mixedlm").replace(" about ", " ")
    return re.sub(r"\d[\d.e]*", "N", text)


def clauses(normalised: str) -> set[str]:
    """The clauses of a normalised reason long enough to name a cause, without the
    measurement's boilerplate (the criterion under lme4's devfun, cross-references)."""
    parts = re.split(r": |; |, |\. |\(|\)", normalised)
    return {p.strip().rstrip(".;:, ") for p in parts
            if len(p.strip()) >= MIN_CLAUSE
            and not re.search(r"devfun|mixedref's objective|\bsee\b|entr(y|ies) of this case",
                              p)}


class _Union:
    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # an existing finding stays the root, so that rows join it
            if isinstance(rb, tuple) and rb[0] == "finding":
                self.parent[ra] = rb
            else:
                self.parent[rb] = ra


def group(findings: list[Finding], flat: list[FlatRow], case_ids: Sequence[str]
          ) -> list[Finding]:
    """The findings with the flat entries added: joined to existing findings or grouped into
    new ones (rules 1-3 of the module docstring), in file order."""
    uf = _Union()
    existing_keys = {(r["case"], f.impl, r["quantity"]) for f in findings for r, _ in f.rows}
    for i, f in enumerate(findings):
        node = ("finding", i)
        uf.find(node)
        for c in clauses(normalise(f.cause + " " + _statements(f.evidence), case_ids)):
            uf.union(node, ("clause", f.impl, c))
    kept = [row for row in flat if (row.case, row.impl, row.quantity) not in existing_keys]
    if len(kept) < len(flat):
        print(f"{len(flat) - len(kept)} flat entries already registered as rows: dropped",
              file=sys.stderr)
    for j, row in enumerate(kept):
        node = ("row", j)
        norm = normalise(row.reason, case_ids)
        uf.union(node, ("reason", row.impl, norm))
        for c in clauses(norm):
            uf.union(node, ("clause", row.impl, c))
    for j, row in enumerate(kept):  # rule 3: "see the objective entry of this case"
        for target in re.findall(r"see (?:the|its) (\w+) entr(?:y|ies)", row.reason):
            for k, other in enumerate(kept):
                if (k != j and other.case == row.case and other.impl == row.impl
                        and other.quantity.split("[")[0] == target):
                    uf.union(("row", j), ("row", k))
                    break
    by_root: dict[Any, list[FlatRow]] = collections.defaultdict(list)
    for j, row in enumerate(kept):
        by_root[uf.find(("row", j))].append(row)
    out = list(findings)
    ids = {f.id for f in findings}
    for root, rows in by_root.items():
        if isinstance(root, tuple) and root[0] == "finding":
            _append(findings[root[1]], rows)
        else:
            new = new_finding(rows, ids)
            ids.add(new.id)
            out.append(new)
    return out


def _statements(evidence: str) -> str:
    """A finding's evidence without the converter's own sentences (shared by every finding of
    an implementation, they must not join findings)."""
    text = re.sub(r"Measured on \d+ row\(s\) of .*?row's comment\)\.", " ", evidence)
    return re.sub(r"Stated per case when registered \(.*?as the cause ends\):", " ", text)


def _row_mapping(row: FlatRow) -> dict[str, Any]:
    return {"case": row.case, "quantity": row.quantity, "size": row.size,
            "direction": row.direction}


def _variants(rows: list[FlatRow], cause: str, already: str = "") -> str:
    """The reasons other than the cause, each with its cases; a reason that is a reason
    already written with other numbers is written as those numbers only."""
    cases: dict[str, list[str]] = {}
    for r in rows:
        if r.reason != cause and r.reason not in already:
            cases.setdefault(r.reason, [])
            if r.case not in cases[r.reason]:
                cases[r.reason].append(r.case)
    written = {_template(cause): cause}
    out = []
    for reason, cs in cases.items():
        like = written.get(_template(reason))
        if like is None:
            written[_template(reason)] = reason
            out.append(f" [{', '.join(cs)}] {_shortened(reason, cause)}")
            continue
        changed = [f"{new} for {old}" for old, new in zip(NUMBER.findall(like),
                                                         NUMBER.findall(reason), strict=True)
                   if old != new]
        out.append(f" [{', '.join(cs)}] the same as \"{like[:40]}...\" with "
                   + ", ".join(changed) + ".")
    return "".join(out)


def _shortened(reason: str, cause: str, least: int = 60) -> str:
    """The reason with the ending it shares with the cause (when long) written as "[...]"."""
    n = 0
    while n < min(len(reason), len(cause)) and reason[-1 - n] == cause[-1 - n]:
        n += 1
    if n < least:
        return reason
    cut = reason.find(" ", len(reason) - n)
    return reason if cut < 0 else reason[:cut] + " [... as in the cause]"


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _template(reason: str) -> str:
    return NUMBER.sub("N", reason)


def new_finding(rows: list[FlatRow], ids: set[str], cause: str | None = None,
                fid: str | None = None) -> Finding:
    """A finding of grouped flat rows. Its cause (unless given): the most frequent of the
    reasons whose subject is the implementation (starting with its name), else of all."""
    impl = rows[0].impl
    counts = collections.Counter(r.reason for r in rows)
    lead = impl.lower().split("-")[0]
    if cause is None:
        cause = max(counts, key=lambda r: (r.lower().startswith(lead), counts[r]))
    evidence = MEASURED.format(rows=len(rows), cases=len({r.case for r in rows}), impl=impl)
    variants = _variants(rows, cause)
    if variants:
        own = sorted({r.case for r in rows if r.reason == cause})
        evidence += VARIANTS.format(cases=", ".join(own) or "no row") + variants
    return Finding(fid or slug(impl, cause, ids), impl, cause, evidence,
                   [(_row_mapping(r), r.comment) for r in rows])


def _append(finding: Finding, rows: list[FlatRow]) -> None:
    variants = _variants(rows, finding.cause, finding.evidence)
    if variants:
        if "Stated per case when registered" not in finding.evidence:
            finding.evidence += VARIANTS.format(cases=", ".join(
                sorted({r["case"] for r, _ in finding.rows})))
        finding.evidence += variants
    finding.rows.extend((_row_mapping(r), r.comment) for r in rows)
    cases = len({r["case"] for r, _ in finding.rows})
    finding.evidence = re.sub(r"^Measured on \d+ row\(s\) of \d+ case\(s\)",
                              f"Measured on {len(finding.rows)} row(s) of {cases} case(s)",
                              finding.evidence)


def slug(impl: str, cause: str, taken: set[str]) -> str:
    """A short id: the implementation and the first words of the cause's first clause."""
    first = re.split(r"[:;,(]", cause, maxsplit=1)[0].lower()
    impl_words = set(re.findall(r"[a-z0-9]+", impl.lower()))
    words = [w for w in re.findall(r"[a-z][a-z0-9]*", first)
             if w not in STOPWORDS and w not in impl_words and len(w) > 1]
    base = "-".join([re.sub(r"[^a-z0-9]+", "-", impl.lower()).strip("-"), *words[:4]])
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


# ---- writing ------------------------------------------------------------------------------

def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def row_line(row: dict[str, Any], comment: str, indent: str = "      ") -> str:
    """One row as a one-line flow mapping, its comment after it."""
    line = (f"{indent}- {{case: {_quoted(row['case'])}, quantity: {_quoted(row['quantity'])}, "
            f"size: {yaml_number(row['size'])}, direction: {row['direction']}}}")
    return line + (f"  # {comment}" if comment else "")


def _folded(key: str, text: str) -> list[str]:
    wrapped = textwrap.wrap(text, WIDTH - 6, break_long_words=False, break_on_hyphens=False)
    return [f"    {key}: >-", *(f"      {w}" for w in wrapped)]


def render(header: str, findings: list[Finding]) -> str:
    """The registry file: the header comment, then ``findings:``."""
    lines = [header.rstrip("\n"), ""] if header.strip() else []
    lines.append("findings:")
    for f in findings:
        lines += [f"  - id: {f.id}", f"    impl: {_quoted(f.impl)}",
                  *_folded("cause", f.cause), *_folded("evidence", f.evidence), "    rows:"]
        lines += [row_line(r, c) for r, c in f.rows]
    return "\n".join(lines) + "\n"


def convert(paths: Sequence[Path], case_ids: Sequence[str]) -> tuple[str, list[Finding], int]:
    """The converted text of ``paths`` (the first one's header), its findings and the number
    of flat entries read."""
    header, findings, flat = read(paths[0])
    for path in paths[1:]:
        _, more_findings, more_flat = read(path)
        findings += more_findings
        flat += more_flat
    out = group(findings, flat, case_ids)
    return render(header, out), out, len(flat)


def summary(findings: list[Finding], entries: int) -> str:
    """entries -> findings, the biggest finding, findings per implementation."""
    rows = sum(len(f.rows) for f in findings)
    biggest = max(findings, key=lambda f: len(f.rows))
    per_impl = collections.Counter(f.impl for f in findings)
    rows_impl = collections.Counter()
    for f in findings:
        rows_impl[f.impl] += len(f.rows)
    lines = [f"{entries} flat entries -> {len(findings)} findings ({rows} rows); biggest: "
             f"{biggest.id} ({len(biggest.rows)} rows)",
             "findings per implementation: " + ", ".join(
                 f"{impl} {n} ({rows_impl[impl]} rows)" for impl, n in per_impl.most_common())]
    lines += [f"  {f.id}: {len(f.rows)} rows, {len({r['case'] for r, _ in f.rows})} cases"
              for f in findings]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path,
                        help="registry files; the first is written (unless --out)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead")
    parser.add_argument("--catalog", default=None,
                        help="catalog whose case ids are normalised (default: the shipped one)")
    args = parser.parse_args(argv)
    from harness.core.catalog import load_catalog
    from harness.core.divergences import rows_of

    ids = [c.id for c in load_catalog(args.catalog)]
    for path in args.files:  # a registry of another catalog (the grid) names its own cases
        ids += [row["case"] for row in rows_of(path)]
    text, findings, entries = convert(args.files, ids)
    out = args.out or args.files[0]
    out.write_text(text)
    print(summary(findings, entries))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
