"""How a ``-n N`` run hands its items to pytest-xdist's workers.

Work units: each catalog case's items form one unit (so the case's lme4 reference is fitted
once, on one worker), and every other test module is one unit (its module fixtures and
per-process caches are built once). With recorded durations (the ini option
``harness_durations``: a JSON object ``{node id: seconds}`` as pytest-split's
``--store-durations`` writes it) a worker that asks for work takes the heaviest unit left:
the longest-processing-time-first rule, so the minute-long units start at once on both workers
and the run ends on short ones on each, instead of one worker finishing a long unit alone.
Without durations units go out in collection order (xdist's ``--dist loadscope``).

Imported only on the xdist controller (xdist is optional).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

#: the ini option naming the recorded durations, relative to the rootdir
DURATIONS_INI = "harness_durations"


def load_durations(config: pytest.Config) -> dict[str, float] | None:
    """The recorded durations the ini option names, or None when it names none; a named file
    that is missing or not a JSON object of numbers is a usage error (a typo must not silently
    fall back to collection order)."""
    name = config.getini(DURATIONS_INI)
    if not name:
        return None
    path = Path(config.rootpath, name)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"{DURATIONS_INI} = {name}: cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or not all(isinstance(v, int | float) for v in doc.values()):
        raise pytest.UsageError(f"{DURATIONS_INI} = {name}: not an object of node id: seconds")
    return {str(k): float(v) for k, v in doc.items()}


def unit_of(nodeid: str) -> str:
    """The work unit of a node id: ``<catalog>::<case id>`` for a catalog item (its name is
    ``<case id>[<impl>-vs-<reference>]``), the module (or class) for any other test."""
    path, sep, name = nodeid.partition("::")
    if sep and Path(path).name.endswith((".yaml", ".yml")) and "[" in name:
        return f"{path}::{name.split('[', 1)[0]}"
    return nodeid.rsplit("::", 1)[0] if sep else nodeid


def case_scheduling(config: pytest.Config, log: Any,
                    durations: Mapping[str, float] | None = None) -> Any:
    """An xdist scheduler with the units above, heaviest first when ``durations`` are given
    (an item not among them counts as the median recorded item)."""
    from xdist.scheduler import LoadScopeScheduling

    default = statistics.median(durations.values()) if durations else 0.0

    class CaseScheduling(LoadScopeScheduling):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._weights: dict[str, float] = {}  # unit -> seconds, while it waits

        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

        def _weight(self, scope: str) -> float:
            if scope not in self._weights:
                unit = self.workqueue[scope]
                self._weights[scope] = sum(durations.get(n, default) for n in unit)
            return self._weights[scope]

        def _assign_work_unit(self, node: Any) -> None:
            # the base pops the first unit of its queue: put the heaviest one there
            if durations and self.workqueue:
                heaviest = max(self.workqueue, key=self._weight)
                self.workqueue.move_to_end(heaviest, last=False)
            super()._assign_work_unit(node)

        def remove_node(self, node: Any) -> str | None:
            # A worker died (e.g. its embedded R aborted): report the item it was running as
            # crashed and requeue only the rest of its work; re-running the item (xdist's
            # LoadScopeScheduling does) would kill worker after worker.
            workload = self.assigned_work.pop(node)
            pending = [(scope, nodeid) for scope, unit in workload.items()
                       for nodeid, done in unit.items() if not done]
            if not pending:
                return None
            scope, crashitem = pending[0]
            workload[scope][crashitem] = True
            for scope, unit in workload.items():
                if not all(unit.values()):
                    self.workqueue[scope] = unit
                    self._weights.pop(scope, None)
            for other in self.assigned_work:
                self._reschedule(other)
            return crashitem

    return CaseScheduling(config, log)
