"""Discrepancy reports: report.json (everything), report.md (the CI summary) and index.html (one
static page with tables and figures), written from the harness's per-case results.

Both ``pytest harness --report DIR`` (the plugin) and ``python -m harness report`` call
:func:`write_report` with a list of {"case": Case, "records": {impl: record},
"comparisons": {impl: Comparison}} (optionally "data": the case's DataFrame).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.commands.report import html, markdown
from harness.commands.report.build import build_report


def _default_loader(case: Any) -> Any:
    from harness.core.catalog import load_data

    return load_data(case)


def write_report(results: Sequence[Mapping[str, Any]], out_dir: str | Path, *,
                 progress: bool = False, completeness: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> dict[str, Path]:
    """Cross-evaluate every case, diagnose the disagreements and write the three files into
    ``out_dir``; returns their paths by kind.

    The files are built into a temporary folder next to ``out_dir`` and moved into place
    whole (harness.core.journal.replace_dir): ``out_dir`` afterwards holds this report's files and
    nothing else, and an interrupted write leaves the previous report as it was.
    ``completeness`` (harness.core.journal.completeness) is shown at the top of every format.

    Keyword arguments go to :func:`harness.commands.report.build.build_case` (``data_loader``,
    ``objective_factory``, ``allfit``) and ``environment`` to :func:`build_report`.
    """
    from harness.core.journal import replace_dir

    kwargs.setdefault("data_loader", _default_loader)
    report = build_report(results, progress=progress, completeness=completeness, **kwargs)

    def write(out: Path) -> dict[str, Path]:
        paths = {"json": out / "report.json", "md": out / "report.md",
                 "html": out / "index.html"}
        paths["json"].write_text(json.dumps(report, indent=1, allow_nan=False) + "\n",
                                 encoding="utf-8")
        paths["md"].write_text(markdown.render(report), encoding="utf-8")
        paths["html"].write_text(html.render(report), encoding="utf-8")
        return paths

    return replace_dir(out_dir, write)


__all__ = ["build_report", "write_report"]
