"""NIST StRD one-way ANOVA sets and the exact truth of ``Response ~ 1 + (1 | Treatment)`` on them.

The 11 sets (AtmWtAg, SiRstv, SmLs01-09; public domain, shipped verbatim as
harness/data/nist_anova/<name>.dat.gz) are balanced one-way layouts: k groups of n. For them
REML and ML have closed forms in the sums of squares (docs/certified.md derives them), so the
answer is known without any fitting program:

- *certified*: from NIST's certified mean squares (15 digits), the truth of the decimal data;
- *limit of the input*: the same closed forms computed exactly (fractions.Fraction) from the
  float64 values the harness's loader gives every implementation. On the hardest sets
  (y ~ 1e12 + 0.x) float64 cannot hold the data, so this is the best any program can do.

The criterion's logarithms are taken with :mod:`decimal` at 40 digits; everything else is exact.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

NIST_SETS = ("AtmWtAg", "SiRstv", "SmLs01", "SmLs02", "SmLs03", "SmLs04", "SmLs05", "SmLs06",
             "SmLs07", "SmLs08", "SmLs09")
#: the model every certified case fits, in the columns of the shipped CSV files
FORMULA = "Response ~ 1 + (1 | Treatment)"
#: significant digits of NIST's certified values (and so the most an LRE against them can show)
CERTIFIED_DIGITS = 15
_DIGITS = 40  # working precision of the logarithms in the criterion


def nist_dir() -> Path:
    """The folder of the shipped NIST files (and their CSV copies the catalog loads)."""
    return Path(str(importlib.resources.files("harness") / "data" / "nist_anova"))


@dataclass(frozen=True)
class NistSet:
    """One NIST set as published: per observation its group label and response text, and the
    certified ANOVA table (between/within df, sums of squares, mean squares; residual SD)."""

    name: str
    groups: tuple[str, ...]
    responses: tuple[str, ...]  # the decimal text, exactly as NIST prints it
    df_between: int
    df_within: int
    ss_between: Fraction
    ss_within: Fraction
    ms_between: Fraction
    ms_within: Fraction
    residual_sd: Fraction


_ROW = re.compile(r"^(Between|Within) \S+\s+(\d+)\s+(\S+)\s+(\S+)")
_NUMBER = re.compile(r"^\s*(\d+)\s+(-?[0-9.]+)\s*$")


def read_nist(name: str) -> NistSet:
    """Parse the shipped NIST file of set ``name`` (its certified table and its data)."""
    if name not in NIST_SETS:
        raise ValueError(f"unknown NIST ANOVA set {name!r}; the sets: {', '.join(NIST_SETS)}")
    text = gzip.decompress((nist_dir() / f"{name}.dat.gz").read_bytes()).decode("ascii")
    lines = text.splitlines()
    table: dict[str, tuple[int, Fraction, Fraction]] = {}
    residual_sd = None
    groups: list[str] = []
    responses: list[str] = []
    in_data = False
    for i, line in enumerate(lines):
        m = _ROW.match(line)
        if m and not in_data:
            table[m.group(1)] = (int(m.group(2)), Fraction(m.group(3)), Fraction(m.group(4)))
        elif "Standard Deviation" in line and not in_data:
            residual_sd = Fraction(line.split()[-1])
        elif line.startswith("Data:") and i > 50:
            in_data = True
        elif in_data and (d := _NUMBER.match(line)):
            groups.append(d.group(1))
            responses.append(d.group(2))
    if set(table) != {"Between", "Within"} or residual_sd is None or not responses:
        raise ValueError(f"{name}: the certified table or the data could not be read")
    (dfb, ssb, msb), (dfw, ssw, msw) = table["Between"], table["Within"]
    return NistSet(name, tuple(groups), tuple(responses), dfb, dfw, ssb, ssw, msb, msw,
                   residual_sd)


@dataclass(frozen=True)
class OneWaySums:
    """The sufficient statistics of a balanced one-way layout, exact: k groups of n, the grand
    mean and the between/within sums of squares."""

    k: int
    n: int
    mean: Fraction
    ss_between: Fraction
    ss_within: Fraction

    @property
    def N(self) -> int:
        return self.k * self.n

    @property
    def ms_between(self) -> Fraction:
        return self.ss_between / (self.k - 1)

    @property
    def ms_within(self) -> Fraction:
        return self.ss_within / (self.N - self.k)


def one_way_sums(groups: Sequence[object], values: Sequence[Fraction]) -> OneWaySums:
    """Exact sums of squares of ``values`` (Fractions) grouped by ``groups``; the layout must
    be balanced (every group the same size, at least two groups of at least two)."""
    by: dict[object, list[Fraction]] = {}
    for g, v in zip(groups, values, strict=True):
        by.setdefault(g, []).append(v)
    sizes = {len(v) for v in by.values()}
    if len(by) < 2 or len(sizes) != 1 or min(sizes) < 2:
        raise ValueError(f"not a balanced one-way layout: group sizes {sorted(sizes)}, "
                         f"{len(by)} groups")
    n, k = sizes.pop(), len(by)
    means = {g: sum(v, Fraction(0)) / n for g, v in by.items()}
    grand = sum(means.values(), Fraction(0)) / k
    ssb = n * sum(((m - grand) ** 2 for m in means.values()), Fraction(0))
    ssw = sum((sum(((x - means[g]) ** 2 for x in v), Fraction(0)) for g, v in by.items()),
              Fraction(0))
    return OneWaySums(k, n, grand, ssb, ssw)


@dataclass(frozen=True)
class Truth:
    """The estimates of ``y ~ 1 + (1 | g)`` at the optimum: intercept, σ², var(g) (exact
    Fractions) and the criterion (REML criterion or deviance, 40-digit Decimal); ``boundary``
    when var(g) = 0 is the optimum."""

    REML: bool
    intercept: Fraction | None
    sigma2: Fraction
    var_g: Fraction
    criterion: Decimal
    boundary: bool

    def as_floats(self) -> dict[str, float | None]:
        """The four certified quantities as float64 (the nearest double to each)."""
        return {"intercept": None if self.intercept is None else float(self.intercept),
                "sigma2": float(self.sigma2), "var_g": float(self.var_g),
                "criterion": float(self.criterion)}


def _ln(x: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        return (Decimal(x.numerator) / Decimal(x.denominator)).ln()


@functools.cache
def _log_2pi() -> Decimal:
    # π to 50 digits (enough for a 40-digit log)
    pi = Fraction("3.14159265358979323846264338327950288419716939937510")
    return _ln(2 * pi)


def closed_form(k: int, n: int, ss_between: Fraction, ss_within: Fraction, REML: bool,
                mean: Fraction | None = None) -> Truth:
    """REML or ML estimates and criterion of the balanced one-way random-intercept model from
    its sums of squares (docs/certified.md derives each line). With λ = σ² + n·var(g):

    - REML, interior (MSB > MSW): σ² = MSW, λ = MSB; boundary: var(g) = 0, σ² = SST/(N − 1);
      criterion (N−1) log 2π + (N−k) log σ² + (k−1) log λ + log N + SSW/σ² + SSB/λ.
    - ML, interior (SSB/k > MSW): σ² = MSW, λ = SSB/k; boundary: var(g) = 0, σ² = SST/N;
      deviance N log 2π + (N−k) log σ² + k log λ + SSW/σ² + SSB/λ.
    """
    N = k * n
    msw = ss_within / (N - k)
    lam = ss_between / (k - 1) if REML else ss_between / k
    boundary = not lam > msw
    if boundary:
        sigma2 = (ss_between + ss_within) / (N - 1 if REML else N)
        lam = sigma2
    else:
        sigma2 = msw
    var_g = (lam - sigma2) / n
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        quad = ss_within / sigma2 + ss_between / lam
        quad_d = Decimal(quad.numerator) / Decimal(quad.denominator)
        if REML:
            crit = ((N - 1) * _log_2pi() + (N - k) * _ln(sigma2) + (k - 1) * _ln(lam)
                    + _ln(Fraction(N)) + quad_d)
        else:
            crit = N * _log_2pi() + (N - k) * _ln(sigma2) + k * _ln(lam) + quad_d
    return Truth(REML, mean, sigma2, var_g, +crit, boundary)


def exact_values(values: Sequence[float | str]) -> list[Fraction]:
    """Each value exactly: a float64 as the binary fraction it is, a text as its decimal."""
    return [Fraction(v) for v in values]


def certified_truth(s: NistSet, REML: bool) -> Truth:
    """The truth from NIST's certified mean squares (σ², var(g), criterion) and, for the
    intercept, the exact mean of NIST's decimal data (NIST certifies no mean)."""
    k, n = s.df_between + 1, (s.df_between + 1 + s.df_within) // (s.df_between + 1)
    mean = sum(exact_values(s.responses), Fraction(0)) / len(s.responses)
    ssb = s.ms_between * s.df_between
    ssw = s.ms_within * s.df_within
    return closed_form(k, n, ssb, ssw, REML, mean)


def input_truth(groups: Sequence[object], values: Sequence[float], REML: bool) -> Truth:
    """The limit of the input: the closed form computed exactly from the float64 ``values``."""
    sums = one_way_sums(groups, exact_values([float(v) for v in values]))
    return closed_form(sums.k, sums.n, sums.ss_between, sums.ss_within, REML, sums.mean)


def dataset_entry(s: NistSet) -> dict[str, object]:
    """The datasets.yaml entry of set ``s`` (harness.core.datasets, r_scripts/catalog.R read it)."""
    levels = sorted(set(s.groups), key=int)
    return {"source": "NIST StRD",
            "description": (f"NIST StRD one-way ANOVA set {s.name} ({len(levels)} groups of "
                            f"{len(s.groups) // len(levels)}); the response text verbatim "
                            f"from {s.name}.dat.gz, whose certified values "
                            "harness.generate.certified "
                            "reads"),
            "file": f"{s.name}.csv.gz", "nrow": len(s.groups),
            "columns": [{"name": "Treatment", "type": "factor", "levels": levels},
                        {"name": "Response", "type": "numeric"}]}


def write_datasets(folder: Path | None = None) -> None:
    """Write each set's CSV (Treatment, Response as NIST's text) and the folder's
    datasets.yaml: what the catalog's certified cases load, in Python and in R."""
    import yaml

    folder = folder or nist_dir()
    entries = {}
    for name in NIST_SETS:
        s = read_nist(name)
        body = "Treatment,Response\n" + "".join(f"{g},{y}\n"
                                                for g, y in zip(s.groups, s.responses, strict=True))
        (folder / f"{name}.csv.gz").write_bytes(gzip.compress(body.encode("ascii"), mtime=0))
        entries[name] = dataset_entry(s)
    head = ("# NIST StRD one-way ANOVA sets (public domain), written by "
            "`python -m harness.generate.certified --write`\n"
            "# from the verbatim <name>.dat.gz files.\n")
    (folder / "datasets.yaml").write_text(
        head + yaml.safe_dump({"datasets": entries}, sort_keys=False, width=100))


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m harness.generate.certified --write")
    write_datasets()
