"""BLAS threads chosen per operation by its size, so a small fit never pays for threads.

OpenBLAS's default (one thread per core) makes a tiny factorization wait for threads that a
loaded machine schedules late; a large Cholesky still wants them all. :func:`threads_for` maps
an operation's flop count to a number of threads and :func:`limit` applies it for a block of
code. threadpoolctl's own ``threadpool_limits`` re-inspects every loaded library on each entry
(about 2.5 ms here, more than a small fit's evaluation); :func:`limit` keeps the library
controllers found once and only calls ``set_num_threads`` when the count differs (microseconds).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Below this many floating-point operations an operation runs on one thread.
SMALL_FLOPS = 5e7

_cached: list[Any] | None = None


#: the variables by which a user (or the harness's worker) caps BLAS and OpenMP threads
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def max_threads() -> int:
    """The threads this process may use: its CPU affinity (or the cores), at most what
    THREAD_VARIABLES set (a user's OPENBLAS_NUM_THREADS=1 holds for large operations too), at
    least 1."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = max(1, os.cpu_count() or 1)
    for name in THREAD_VARIABLES:
        try:
            cores = min(cores, int(os.environ[name]))
        except (KeyError, ValueError):  # unset, or not a number (the libraries ignore it too)
            continue
    return max(1, cores)


def free_cores() -> int:
    """Cores not busy with other work, from the 1-minute load average less this process's own
    thread (at least 1): on a loaded machine OpenBLAS's threads wait for cores and a
    two-thread Cholesky runs many times slower than one thread (measured: 3.9 s vs 0.37 s for
    order 2,000 at load 11 on 2 cores)."""
    cores = max_threads()
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not available
        return cores
    return max(1, min(cores, int(math.floor(cores - max(0.0, load - 1.0) + 0.5))))


def threads_for(flops: float) -> int:
    """Threads for an operation of ``flops`` floating-point operations: 1 when it is small,
    else one per free core (:func:`free_cores`). Decided once per fit (per objective)."""
    return 1 if flops < SMALL_FLOPS else free_cores()


def controllers() -> list[Any]:
    """threadpoolctl's controllers of the loaded BLAS and OpenMP libraries, found once
    (:func:`rescan` after loading another one, e.g. CHOLMOD's BLAS)."""
    global _cached
    if _cached is None:
        try:
            from threadpoolctl import ThreadpoolController
            _cached = list(ThreadpoolController().lib_controllers)
        except Exception:  # pragma: no cover - threadpoolctl missing or failing
            _cached = []
    return _cached


@contextmanager
def limit(nthreads: int) -> Iterator[None]:
    """Run the block with every loaded BLAS/OpenMP library limited to ``nthreads`` threads,
    restoring each library's previous count after; libraries already at it are not touched."""
    changed = []
    for lib in controllers():
        try:
            cur = lib.num_threads
            if cur != nthreads:
                lib.set_num_threads(nthreads)
                changed.append((lib, cur))
        except Exception:  # pragma: no cover - a library refusing the call
            continue
    try:
        yield
    finally:
        for lib, cur in changed:
            lib.set_num_threads(cur)


def rescan() -> None:
    """Forget the controllers found, so that the next :func:`limit` looks again."""
    global _cached
    _cached = None
