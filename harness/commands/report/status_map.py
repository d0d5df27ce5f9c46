"""The status map: every case × implementation of a report as one coloured square, by verdict
(agree, registered divergence, candidate-better, fail, not run).

For the stress grid (harness/commands/grid/) the squares are laid out by the grid's axes: one panel
per implementation, a row per design and size, a column per distance from the boundary ×
signal-to-noise × method/replicate, so a region of trouble (say, correlations of ±1 at the
smallest size) shows as a patch. Any other report's cases are laid out in their order, row by
row. :func:`section` is the HTML the report page shows (harness/commands/report/html.py calls it
once).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

#: the map's verdicts, in the legend's order, with their colours
VERDICTS = ("agree", "registered divergence", "candidate-better", "fail", "not run")
COLOURS = {"agree": "#2da44e", "registered divergence": "#6f42c1",
           "candidate-better": "#d4a72c", "fail": "#cf222e", "not run": "#d0d7de"}
REFERENCES = ("lme4", "lme4-recorded")


def _registered(comp: Mapping[str, Any]) -> bool:
    """A disagreement the registry covers, as the run judged it (harness.core.outcome marks the
    comparison; the registry is not read again here)."""
    return bool(comp.get("registered") or comp.get("divergence"))


def verdict_of(case: Mapping[str, Any], impl: str) -> str:
    """The map's verdict of ``impl`` on one report case
    (harness.commands.report.build.build_case's)."""
    comp = (case.get("comparisons") or {}).get(impl)
    if comp:
        v = comp.get("verdict")
        if v == "agreed":
            return "agree"
        if v == "candidate-better":
            return "candidate-better"
        if v == "disagreed" and _registered(comp):
            return "registered divergence"
        return "fail"  # disagreed, failed, judges-disagree, incomplete, no reference
    if impl in (case.get("errors") or {}):
        return "fail"
    return "not run"  # skipped, not expressible, or never reached


def implementations(cases: Sequence[Mapping[str, Any]]) -> list[str]:
    """The candidates of the report's cases (the reference left out), in order of appearance."""
    seen: dict[str, None] = {}
    for c in cases:
        for key in ("comparisons", "skipped", "errors"):
            seen.update(dict.fromkeys(c.get(key) or {}))
        seen.update(dict.fromkeys(c.get("implementations") or ()))
    return [i for i in seen if i not in REFERENCES]


def statuses(cases: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """{case id: {impl: verdict}} for every case and candidate of a report's cases."""
    impls = implementations(cases)
    return {str(c["case"].get("id")): {i: verdict_of(c, i) for i in impls} for c in cases}


#: the harness summary's outcomes (harness/pytest_plugin/summary.py) as the map's verdicts
OUTCOMES = {"agreed": "agree", "xfail": "registered divergence",
            "candidate-better": "candidate-better", "skipped": "not run"}


def statuses_from_entries(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """{case id: {impl: verdict}} from the plugin's summary entries (outcome per item: an
    ``xfail`` there is a registered divergence); a missing item is "not run"."""
    table: dict[str, dict[str, str]] = {}
    impls: dict[str, None] = {}
    for e in entries.values():
        if not e.get("outcome") or e.get("impl") in REFERENCES:
            continue
        impls[e["impl"]] = None
        table.setdefault(str(e["case"]), {})[e["impl"]] = OUTCOMES.get(e["outcome"], "fail")
    for row in table.values():
        for i in impls:
            row.setdefault(i, "not run")
    return table


def _layout(case_ids: Sequence[str], width: int = 40
            ) -> tuple[dict[str, tuple[int, int]], list[str], list[tuple[float, str]]]:
    """(position (row, column) per case, row labels, column group labels (x, text))."""
    from harness.generate import grid_cells as grid

    parsed = {cid: grid.cell_of(cid) for cid in case_ids}
    if case_ids and all(parsed.values()):
        cells = grid.cells()
        rows = list(dict.fromkeys((c.design, c.size) for c in cells))
        inner = {d: list(dict.fromkeys((c.method, c.rep) for c in cells if c.design == d))
                 for d in grid.DESIGNS}  # per design: its (method, replicate) pairs
        n_inner = max(len(v) for v in inner.values())
        snrs, bnds = list(grid.SNR), list(grid.BOUNDARY)
        pos = {}
        for cid, c in parsed.items():
            k = inner[c.design].index((c.method, c.rep))
            col = (bnds.index(c.boundary) * len(snrs) + snrs.index(c.snr)) * n_inner + k
            pos[cid] = (rows.index((c.design, c.size)), col)
        labels = [f"{d} {s}" for d, s in rows]
        groups = [((b * len(snrs) + s + 0.5) * n_inner - 0.5, f"{snrs[s]}\n{bnds[b]}" if s == 1
                   else snrs[s]) for b in range(len(bnds)) for s in range(len(snrs))]
        return pos, labels, groups
    pos = {cid: divmod(i, width) for i, cid in enumerate(case_ids)}
    n_rows = (len(case_ids) + width - 1) // width
    return pos, [f"cases {r * width + 1}-{min((r + 1) * width, len(case_ids))}"
                 for r in range(n_rows)], []


def figure(cases: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, str]],
           png: bool = False) -> str | bytes | None:
    """The status map of a report's cases (or of a table {case id: {impl: verdict}}) as a
    base64 PNG, or the PNG's bytes with ``png``; None when there is nothing to map."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from harness.commands.report.figures import _png, plt

    table = dict(cases) if isinstance(cases, Mapping) else statuses(cases)
    impls = list(dict.fromkeys(i for row in table.values() for i in row))
    if not table or not impls:
        return None
    pos, row_labels, groups = _layout(list(table))
    n_rows = len(row_labels)
    n_cols = max(c for _, c in pos.values()) + 1
    cmap = ListedColormap([COLOURS[v] for v in VERDICTS] + ["#ffffff"])
    height = 0.16 * n_rows + 1.1
    fig, axes = plt.subplots(len(impls), 1, figsize=(min(13.0, 2.0 + 0.13 * n_cols),
                                                     height * len(impls) + 0.6), squeeze=False)
    for ax, impl in zip(axes[:, 0], impls, strict=True):
        grid = np.full((n_rows, n_cols), len(VERDICTS), dtype=float)  # white: no such cell
        counts = Counter()
        for cid, (r, c) in pos.items():
            v = table[cid][impl]
            grid[r, c] = VERDICTS.index(v)
            counts[v] += 1
        ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(VERDICTS) + 0.5, aspect="auto",
                  interpolation="nearest")
        ax.set_yticks(range(n_rows))
        ax.set_yticklabels(row_labels, fontsize=6)
        if groups:
            ax.set_xticks([x for x, _ in groups])
            ax.set_xticklabels([t for _, t in groups], fontsize=6)
            step = n_cols / (len(groups) or 1)
            for k in range(1, len(groups)):
                ax.axvline(k * step - 0.5, color="white", lw=0.6 if k % 3 else 1.8)
            for r in range(1, n_rows):
                if row_labels[r].split()[0] != row_labels[r - 1].split()[0]:
                    ax.axhline(r - 0.5, color="white", lw=1.8)
        else:
            ax.set_xticks([])
        summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
        ax.set_title(f"{impl}: {summary}", fontsize=8, loc="left")
    if groups:
        axes[-1, 0].set_xlabel("signal-to-noise (lo, mid, hi) within distance from the boundary "
                               "(b0 on it ... b4 far); within each, method x replicate",
                               fontsize=7)
    fig.legend(handles=[Patch(color=COLOURS[v], label=v) for v in VERDICTS], loc="upper center",
               ncol=len(VERDICTS), fontsize=7, frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    b64 = _png(fig)
    return base64.b64decode(b64) if png else b64


def section(report: Mapping[str, Any]) -> str:
    """The report page's status-map section: heading, the figure and the counts ('' when the
    report has nothing to map)."""
    return table_html(statuses(report.get("cases") or []))


def table_html(table: Mapping[str, Mapping[str, str]]) -> str:
    """The status map of ``table`` ({case id: {impl: verdict}}) as an HTML section."""
    b64 = figure(table)
    if not b64:
        return ""
    impls = list(dict.fromkeys(i for row in table.values() for i in row))
    rows = "".join(
        "<tr><td>" + escape(i) + "</td>" + "".join(
            f'<td class="num">{sum(1 for s in table.values() if s.get(i) == v)}</td>'
            for v in VERDICTS) + "</tr>" for i in impls)
    head = "".join(f"<th>{escape(v)}</th>" for v in VERDICTS)
    return ("<h2>Status map</h2><p>Every case &times; implementation, coloured by verdict"
            + (" (the stress grid's cells by design and size, distance from the boundary and "
               "signal-to-noise)" if _is_grid(table) else "") + ".</p>"
            f'<img class="plot" data-plot="status-map" alt="status map" '
            f'src="data:image/png;base64,{b64}">'
            f"<table><tr><th>implementation</th>{head}</tr>{rows}</table>")


def counts(table: Mapping[str, Mapping[str, str]]) -> dict[str, Counter]:
    """Per implementation, the number of cases of each verdict."""
    out: dict[str, Counter] = {}
    for row in table.values():
        for impl, v in row.items():
            out.setdefault(impl, Counter())[v] += 1
    return out


def _is_grid(table: Mapping[str, Any]) -> bool:
    from harness.generate import grid_cells as grid

    return bool(table) and all(grid.cell_of(cid) for cid in table)
