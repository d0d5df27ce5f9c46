"""The grid's pytest hook (``-p harness.pytest_plugin.grid_hook``, as ``python -m
harness.commands.grid run`` passes it):
the status map of the run's items, drawn after the run."""

from __future__ import annotations

from typing import Any

from harness.generate.grid_cells import GRID_DIR

STATUS_PAGE = GRID_DIR / "status_map.html"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """(``-p harness.pytest_plugin.grid_hook``, as ``run`` passes it) After the run: the status map
    of its items
    (an ``xfail`` is a registered divergence) as build/grid/status_map.png and .html."""
    from harness.commands.report import status_map
    from harness.pytest_plugin.plugin import session_entries

    entries = session_entries(config)
    if not entries:
        return
    table = status_map.statuses_from_entries(entries)
    png = status_map.figure(table, png=True)
    if not png:
        return
    STATUS_PAGE.parent.mkdir(parents=True, exist_ok=True)
    STATUS_PAGE.with_suffix(".png").write_bytes(png)  # type: ignore[arg-type]
    STATUS_PAGE.write_text("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
                           "<title>stress grid status map</title></head><body>"
                           + status_map.table_html(table) + "</body></html>\n")
    for impl, n in status_map.counts(table).items():
        terminalreporter.write_line(f"mixedref harness grid: {impl}: " + ", ".join(
            f"{n[v]} {v}" for v in status_map.VERDICTS if n[v]))
    terminalreporter.write_line(f"mixedref harness grid: status map written to {STATUS_PAGE} "
                                "(and .png)")
