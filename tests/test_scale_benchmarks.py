"""The scale benchmarks' own measurements (harness/scale_benchmarks.py): the peak memory a
spawned fit reports is its own, not its parent's."""

from __future__ import annotations

import multiprocessing as mp
import sys

import numpy as np
import pytest

from harness.scale_benchmarks import peak_rss


def _child_peak(queue) -> None:
    queue.put(peak_rss())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_spawned_child_reports_its_own_peak_not_its_parents() -> None:
    fat = np.ones(int(6e8 / 8))  # the parent touches 600 MB, as the embedded R holds data
    assert peak_rss() > 6e8
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_peak, args=(queue,))
    proc.start()
    child = queue.get(timeout=120)
    proc.join()
    assert child < 4e8, child  # an interpreter with numpy and pandas: ~100-200 MB
    del fat
