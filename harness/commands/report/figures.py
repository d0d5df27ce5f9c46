"""The report's figures, drawn with matplotlib's Agg backend and returned as base64 PNG so the
HTML page is one self-contained file (no server, no network, no external files)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]
STYLES = ("-", "--", ":", "-.")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _color(impls: list[str], impl: str) -> str:
    return COLORS[impls.index(impl) % len(COLORS)] if impl in impls else "black"


def scaled_differences(comparisons: Mapping[str, Mapping | None]) -> str | None:
    """Per candidate, |difference| / allowed for every compared quantity (1 = the tolerance)."""
    comps = {k: c for k, c in comparisons.items() if c and c.get("rows")}
    if not comps:
        return None
    names = list(dict.fromkeys(r["name"] for c in comps.values() for r in c["rows"]))
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(names) * max(1, len(comps)) / 1.5 + 1.4))
    height = 0.8 / len(comps)
    impls = list(comps)
    for j, (impl, c) in enumerate(comps.items()):
        by = {r["name"]: r.get("scaled") for r in c["rows"]}
        ys = np.arange(len(names)) + j * height
        xs = [by.get(n) if by.get(n) else np.nan for n in names]  # zero: no bar
        ax.barh(ys, xs, height=height, color=_color(impls, impl), label=impl)
    ax.axvline(1.0, color="crimson", linestyle="--", linewidth=1, label="tolerance")
    ax.set_xscale("log")
    finite = [r["scaled"] for c in comps.values() for r in c["rows"] if r.get("scaled")]
    ax.set_xlim(max(min(finite, default=1e-3) / 3, 1e-6), max(max(finite, default=1.0) * 3, 3))
    ax.set_yticks(np.arange(len(names)) + 0.4 - height / 2)
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("|difference| / allowed  (log scale; > 1 fails; no bar: identical)")
    ax.set_title("Scaled differences from the reference", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def segment_profiles(segments: Mapping[str, Any], cross: Mapping[str, Any]) -> str | None:
    """Objective along the segment from the best estimate (t=0) to each other (t=1)."""
    if not segments:
        return None
    impls = list(cross["estimates"])
    best_obj = cross["estimates"][cross["best"]]["objective"]
    fig, axes = plt.subplots(1, len(segments), figsize=(4.2 * len(segments), 3.2),
                             squeeze=False)
    for ax, seg in zip(axes[0], segments.values(), strict=True):
        t = np.asarray(seg["t"], float)
        y = np.array([np.nan if v is None else v - best_obj for v in seg["objective"]], float)
        ax.plot(t, y, color="0.3", linewidth=1.2)
        for tt, who in ((0.0, seg["from"]), (1.0, seg["to"])):
            est = cross["estimates"][who]
            ax.plot([tt], [est["objective"] - best_obj], "o", color=_color(impls, who),
                    markersize=7, label=f"{who}")
        ax.set_xlabel(f"t  (θ = θ_{seg['from']} + t·(θ_{seg['to']} − θ_{seg['from']}))",
                      fontsize=8)
        ax.set_ylabel(f"{cross['criterion']} − best", fontsize=8)
        ax.set_title(f"{seg['from']} → {seg['to']}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def coordinate_profiles(coords: Mapping[str, list], cross: Mapping[str, Any]) -> str | None:
    """Objective along each θ coordinate around each estimate, the estimates marked."""
    if not coords:
        return None
    impls = list(cross["estimates"])
    names = cross["theta_names"]
    best_obj = cross["estimates"][cross["best"]]["objective"]
    ncol = min(3, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.0 * ncol, 3.0 * nrow), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // ncol][k % ncol]
        for impl, profs in coords.items():
            p = profs[k]
            y = np.array([np.nan if v is None else v - best_obj for v in p["objective"]])
            ax.plot(p["x"], y, color=_color(impls, impl), linewidth=1.3, label=impl,
                    linestyle=STYLES[impls.index(impl) % len(STYLES)])
            est = cross["estimates"][impl]
            ax.plot([p["at"]], [est["objective"] - best_obj], "o", color=_color(impls, impl))
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(f"{cross['criterion']} − best", fontsize=8)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    for k in range(len(names), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.tight_layout()
    return _png(fig)


def timings(seconds: Mapping[str, float | None], title: str = "Fit time") -> str | None:
    """Wall time of each implementation's fit (log scale)."""
    items = [(k, v) for k, v in seconds.items() if v is not None and v > 0]
    if not items:
        return None
    impls = [k for k, _ in items]
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(items) + 1.0))
    ax.barh(impls, [v for _, v in items], color=[_color(impls, k) for k in impls])
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v * 1000:.1f} ms" if v < 1 else f" {v:.2f} s", va="center",
                fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.invert_yaxis()
    ax.set_xlabel("seconds (log scale)")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def timing_overview(cases: list[Mapping[str, Any]]) -> str | None:
    """Every case's fit times, one marker per implementation (the run at a glance)."""
    rows = [(c["case"].get("id"), c["seconds"]) for c in cases if c.get("seconds")]
    impls = list(dict.fromkeys(k for _, s in rows for k in s))
    if not rows or not impls:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(rows) + 1.2))
    for impl in impls:
        ys = [i for i, (_, s) in enumerate(rows) if s.get(impl)]
        xs = [s[impl] for _, s in rows if s.get(impl)]
        ax.plot(xs, ys, "o", color=_color(impls, impl), label=impl)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("fit seconds (log scale)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def heatmaps(heat: Mapping[str, Any]) -> str | None:
    """The marginal covariance block Var(y_i) each implementation's estimate implies."""
    mats = heat.get("matrices") if heat else None
    if not mats:
        return None
    arrays = {k: np.asarray(v, float) for k, v in mats.items()}
    vmin = min(a.min() for a in arrays.values())
    vmax = max(a.max() for a in arrays.values())
    fig, axes = plt.subplots(1, len(arrays), figsize=(3.3 * len(arrays) + 0.8, 3.3),
                             squeeze=False)
    im = None
    for ax, (impl, a) in zip(axes[0], arrays.items(), strict=True):
        im = ax.imshow(a, cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_title(impl, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85)
    fig.suptitle(f"Var(y) for {heat['group']} = {heat['level']} "
                 f"({len(next(iter(arrays.values())))} observations)", fontsize=10)
    return _png(fig)


def caterpillar(records: Mapping[str, Mapping[str, Any]], max_terms: int = 3,
                max_levels: int = 40) -> str | None:
    """The conditional modes with their 95% intervals (±1.96 conditional SD), per term, as each
    implementation reports them, the levels ordered by the reference's modes (lme4's first)."""
    have = {k: r["ranef"] for k, r in records.items() if r.get("ranef")}
    if not have:
        return None
    ref = next((k for k in ("lme4", "lme4-recorded") if k in have), next(iter(have)))
    impls = [ref] + [k for k in have if k != ref]
    terms: list[tuple[str, str]] = []
    for row in have[ref]:
        key = (str(row["grp"]), str(row["term"]))
        if key not in terms:
            terms.append(key)
    terms = terms[:max_terms]
    fig, axes = plt.subplots(1, len(terms), figsize=(4.2 * len(terms), 5.0), squeeze=False)
    for ax, (grp, term) in zip(axes[0], terms, strict=True):
        ref_rows = [r for r in have[ref] if (r["grp"], r["term"]) == (grp, term)]
        ref_rows.sort(key=lambda r: r["condval"])
        if len(ref_rows) > max_levels:  # evenly spaced levels, the extremes kept
            idx = np.unique(np.linspace(0, len(ref_rows) - 1, max_levels).round().astype(int))
            ref_rows = [ref_rows[i] for i in idx]
        levels = [str(r["level"]) for r in ref_rows]
        pos = {lv: i for i, lv in enumerate(levels)}
        for j, impl in enumerate(impls):
            rows = [r for r in have[impl] if (r["grp"], r["term"]) == (grp, term)
                    and str(r["level"]) in pos]
            if not rows:
                continue
            y = np.array([pos[str(r["level"])] for r in rows]) + 0.25 * (j - (len(impls) - 1) / 2)
            x = np.array([r["condval"] for r in rows], dtype=float)
            sd = [r.get("condsd") for r in rows]
            err = None if any(s is None for s in sd) else 1.96 * np.asarray(sd, dtype=float)
            ax.errorbar(x, y, xerr=err, fmt="o", ms=3, lw=1, color=_color(impls, impl),
                        label=impl)
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(range(len(levels)))
        ax.set_yticklabels(levels, fontsize=6)
        ax.set_title(f"{term} | {grp}", fontsize=9)
        ax.set_xlabel("conditional mode ± 1.96 SD")
    axes[0][0].legend(fontsize=7)
    return _png(fig)
