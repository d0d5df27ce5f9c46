"""The memory plan of a small fit reads nothing (mixedref.engines.memory.memory_limit): reading
/proc/meminfo and the cgroup's files cost more than such a fit's evaluations, and any machine
running Python has its few megabytes. Larger plans and MIXEDREF_MEMORY_LIMIT are as before."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pandas as pd

from mixedref.engines.factory import plan_engine
from mixedref.engines.memory import UNCHECKED_BYTES, memory_limit
from mixedref.frontend.design import build_model


def _opened(monkeypatch) -> list[str]:
    """The paths open() is called with from now on."""
    seen: list[str] = []
    real = builtins.open

    def spy(path, *args, **kwargs):
        seen.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    return seen


def test_a_small_plan_reads_no_memory_file_and_is_not_limited(monkeypatch) -> None:
    monkeypatch.delenv("MIXEDREF_MEMORY_LIMIT", raising=False)
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60),
                         "g": np.repeat(list("abcdef"), 10)})
    model = build_model("y ~ x + (1 | g)", data)
    opened = _opened(monkeypatch)
    plan = plan_engine(model)
    assert plan.engine == "dense" and plan.limit == math.inf and plan.dense_bytes < UNCHECKED_BYTES
    assert memory_limit(UNCHECKED_BYTES) == math.inf
    assert opened == []


def test_a_large_plan_and_the_environment_limit_are_read_as_before(monkeypatch) -> None:
    monkeypatch.delenv("MIXEDREF_MEMORY_LIMIT", raising=False)
    opened = _opened(monkeypatch)
    limit = memory_limit(2.0 * UNCHECKED_BYTES)
    assert "/proc/meminfo" in opened and 0 < limit < math.inf
    monkeypatch.setenv("MIXEDREF_MEMORY_LIMIT", "1M")
    assert memory_limit(10.0) == 2.0**20  # the user's limit holds for small plans too
