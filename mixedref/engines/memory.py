"""What a fit would cost on each PLS engine, and the memory it may use: the engine choice
(:func:`mixedref.engines.factory.plan_engine`) reads these estimates (flops per evaluation, peak
bytes, fit seconds) and refuses a plan whose bytes exceed :func:`memory_limit` before anything
large is allocated.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from mixedref.errors import MixedrefError
from mixedref.frontend.design import ModelFrame

#: Rough rates of this kind of machine (one core): flops per second of the factorizations and
#: seconds per entry of building the dense engine's Schur operator (scalar / vector first term).
_FLOP_RATE = 2e9
_BUILD_SECONDS = (5e-8, 6e-7)
#: Evaluations a fit takes: with the dense engine's exact gradient (L-BFGS-B), without (BOBYQA).
_EVALS = (20, 30)


@dataclass(frozen=True)
class EnginePlan:
    """Which engine a fit uses, and why: each engine's estimated flops per evaluation and
    peak bytes (None where not estimated), and the memory limit they were held against."""

    engine: str  # "dense" or "sparse"
    reason: str
    limit: float  # bytes
    dense_flops: float | None = None  # per evaluation
    dense_bytes: float | None = None
    sparse_flops: float | None = None
    sparse_bytes: float | None = None
    symbolic: object | None = None  # mixedref.engines.sparse.Symbolic of the sparse analysis
    dense_seconds: float | None = None  # estimated fit time: build + evaluations
    sparse_seconds: float | None = None

    @property
    def bytes(self) -> float:
        """The chosen engine's memory estimate."""
        return float(self.dense_bytes if self.engine == "dense" else self.sparse_bytes)


def _parse_bytes(text: str) -> float:
    """'4G', '512M', '1.5e9' -> bytes."""
    text = text.strip().upper().removesuffix("B")
    mult = {"K": 2.0**10, "M": 2.0**20, "G": 2.0**30, "T": 2.0**40}.get(text[-1:], 1.0)
    return float(text[:-1] if mult != 1.0 else text) * mult


#: A plan needing at most this many bytes is not held against the machine's memory (reading
#: /proc/meminfo and the cgroup's files cost more than a small fit's evaluations).
UNCHECKED_BYTES = 256.0 * 2**20


def memory_limit(needed: float | None = None) -> float:
    """Bytes a fit may allocate: ``MIXEDREF_MEMORY_LIMIT`` (e.g. "4G") if set, else 90 % of
    what the machine has available (MemAvailable), or of the cgroup's remaining limit; +inf
    (nothing read) when the plan ``needed`` at most UNCHECKED_BYTES."""
    env = os.environ.get("MIXEDREF_MEMORY_LIMIT")
    if env:
        try:
            return _parse_bytes(env)
        except ValueError as exc:
            raise MixedrefError(f"MIXEDREF_MEMORY_LIMIT={env!r} is not a size like 4G") from exc
    if needed is not None and needed <= UNCHECKED_BYTES:
        return math.inf
    avail = math.inf
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = float(line.split()[1]) * 1024.0
    except OSError:  # pragma: no cover - not Linux
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            cap = f.read().strip()
        if cap != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                avail = min(avail, float(cap) - float(f.read()))
    except OSError:
        pass
    return 0.9 * avail if math.isfinite(avail) else 2.0**40


def _dense_pairs(model: ModelFrame) -> float:
    """The number of entries of the dense engine's Schur operator M, from the distinct levels
    of the later terms met by each level of the first term (X and y counted as dense)."""
    t1 = model.reterms[0]
    m1 = t1.nlevels
    codes1 = np.asarray(t1.codes, np.int64)
    K = np.full(m1, float(model.p + 1))
    for t in model.reterms[1:]:
        K += t.q * _distinct_per_level(codes1, np.asarray(t.codes, np.int64), m1, t.nlevels)
    return float(t1.q**2 * np.sum(K * (K + 1.0) / 2.0))


#: _distinct_per_level marks pairs in a boolean table up to this many cells (a few MB), beyond
#: it sorts them (np.unique): the table is a tenth of the sort's time at InstEval's size
PAIR_TABLE_MAX = 1 << 25


def _distinct_per_level(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> np.ndarray:
    """For each level of ``a`` (codes < na), the number of distinct levels of ``b`` (codes < nb)
    met with it."""
    if na * nb <= PAIR_TABLE_MAX:
        seen = np.zeros(na * nb, dtype=bool)
        seen[a * nb + b] = True
        return np.count_nonzero(seen.reshape(na, nb), axis=1)
    key = np.unique(a * nb + b)
    return np.bincount(key // nb, minlength=na)


def dense_estimate(model: ModelFrame) -> tuple[float, float, float]:
    """(flops per evaluation, peak bytes, estimated fit seconds) of the dense engine."""
    n, p = model.n, model.p
    t1 = model.reterms[0]
    r = sum(t.q * t.nlevels for t in model.reterms[1:]) + p + 1
    pairs = _dense_pairs(model)
    scalar = all(t.q == 1 for t in model.reterms)
    idx = 8 if r * r >= 2**31 - 1 or pairs >= 2**31 - 1 else 4
    if t1.q == 1:  # M (data, indices, negated data), and G of the gradient as large again
        op_bytes = pairs * (16 + idx) * (2.0 if scalar else 1.0)
    else:  # schur_operator's int64 temporaries over all k^2 pairs of each level
        op_bytes = pairs * 100.0
    width = sum(t.q for t in model.reterms)
    base = 24.0 * n * (p + 2 + 2 * width)
    flops = r**3 / 3.0 + 2.0 * pairs + 10.0 * t1.nlevels * t1.q**3
    seconds = pairs * _BUILD_SECONDS[t1.q > 1] + _EVALS[not scalar] * flops / _FLOP_RATE
    return flops, base + 32.0 * r * r + op_bytes, seconds


def sparse_estimate(model: ModelFrame, sym: object | None) -> tuple[float, float, float]:
    """(flops per evaluation, peak bytes, estimated fit seconds) of the sparse engine, from
    CHOLMOD's analysis (``sym``, a mixedref.engines.sparse.Symbolic, or None)."""
    n, p = model.n, model.p
    width = sum(t.q for t in model.reterms)
    nre = sum(t.q * t.nlevels for t in model.reterms)
    if sym is None:  # no symbolic counts: the dense factor bounds the sparse one
        nnz_L, fl = nre * (nre + 1) / 2.0, nre**3 / 3.0
    else:
        nnz_L, fl = sym.nnz_L, sym.flops
    base = 24.0 * n * (p + 2 + 2 * width) + 12.0 * n * width * 2.0
    ordering = 8.0 * n * width * width  # CHOLMOD's pattern of Ut Ut' for the ordering
    solves = 8.0 * nre * (p + 1) * 4.0 + 16.0 * nre * 256  # W, rhs; condVar's chunks
    flops = fl + n * width * (width + 1.0) + 4.0 * nnz_L * (p + 1)
    return flops, base + max(12.0 * nnz_L, ordering) + solves, _EVALS[1] * flops / _FLOP_RATE


def check_memory(plan: EnginePlan) -> None:
    """Refuse a plan whose memory estimate exceeds its limit, naming both."""
    if plan.bytes <= plan.limit:
        return
    other = ""
    alt = plan.sparse_bytes if plan.engine == "dense" else plan.dense_bytes
    if alt is not None:
        other = f"; the {'sparse' if plan.engine == 'dense' else 'dense'} engine would need " \
                f"{alt / 2**30:.2f} GiB"
    raise MixedrefError(
        f"this fit needs an estimated {plan.bytes / 2**30:.2f} GiB with the {plan.engine} "
        f"engine, more than the memory limit of {plan.limit / 2**30:.2f} GiB{other} "
        "(the limit is 90% of the available memory; set MIXEDREF_MEMORY_LIMIT, e.g. 8G, to "
        "change it)")
