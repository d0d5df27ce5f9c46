"""The harness's own pytest hooks, for projects that extend it (added by
harness.pytest_plugin.plugin)."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_harness_comparators(config: Any) -> Any:
    """Return a list of extra comparators (harness/core/comparators/base.py says what one is): each
    adds its rows to every item's parameter table, with its own tolerance rule and reason."""
