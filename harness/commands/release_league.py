"""The league's version axis: each PyPI peer at its last few releases, and what changed.

``python -m harness ecosystem --releases N --out DIR`` finds each peer's last ``N`` releases
installable here (harness.commands.releases), runs the harness on each (peer, release) in an
environment of its own (harness.commands.ecosystem.run, one run at a time, each keeping its records
with ``--save-baseline``) into ``DIR/<peer>/<release>/``, and writes ``DIR/versions.json``
and ``DIR/index.html``: per peer and release the league's counts, the cases x releases matrix
of verdicts, and per pair of consecutive releases what changed case by case
(harness.commands.release_diff). ``--older-only`` runs every release but the pinned one, whose
verdicts are then taken from the committed league (harness/references/league/league.json,
which keeps no records: those pairs compare verdicts only). ``--compare-releases DIR``
rewrites the summary from the runs already in ``DIR`` without running anything.
"""

from __future__ import annotations

import html
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.commands import release_diff
from harness.commands.release_table import counts_text as _counts_text
from harness.commands.release_table import releases_table_html
from harness.commands.release_table import short as _short
from harness.core.baseline import BaselineError, open_baseline

SUMMARY = "versions.json"
RECORDS = "records"
#: the per-run league's columns, as the summary keeps them
COUNTS = ("agreed", "disagreed", "registered", "candidate_better", "failed", "not_expressible")
PINNED_RUN = "the committed league"
#: how far back (in multiples of the releases wanted) the axis looks for releases that install
LOOKBACK = 2


def find_releases(peers: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({peer: its releases on this machine's indexes, newest first}, {peer: why none})."""
    from harness.commands.releases import ReleaseLookupError, available_releases

    found, missing = {}, {}
    for peer in peers:
        try:
            found[peer] = available_releases(peer)
        except ReleaseLookupError as exc:
            missing[peer] = str(exc)
    return found, missing


def select_releases(peer: str, available: Sequence[str], n: int,
                    env_dir: str | Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The newest ``n`` of ``available`` (newest first) whose environment builds here, oldest
    first, and {release: why its environment could not be built} for those passed over (e.g.
    an sdist whose build needs the network): installable here means built here. At most the
    newest ``LOOKBACK * n`` releases are tried (an old release is no longer worth a build)."""
    from harness.commands.ecosystem import EnvBuildError, peer_environment

    chosen: list[str] = []
    failed: dict[str, str] = {}
    for version in list(available)[:LOOKBACK * n]:
        if len(chosen) == n:
            break
        try:
            peer_environment(peer, env_dir, version=version)
        except (EnvBuildError, OSError) as exc:
            failed[version] = _build_failure(str(exc))
            continue
        chosen.append(version)
    return list(reversed(chosen)), failed


def _build_failure(text: str) -> str:
    """Why a build failed, shortly: its first line up to the command, the lines that say
    why (an unreachable host, an unsatisfiable requirement), and whether it was building an
    sdist (no wheel of the release installs here)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "the build failed, saying nothing"
    why = [line for line in lines[1:] if re.search(
        r"could not resolve host|no solution found|unsatisfiable|requires-python|not found",
        line, re.IGNORECASE)]
    out = lines[0].split(": ")[0] + ": " + ("; ".join(dict.fromkeys(why[-2:])) or lines[-1])
    if any("build-wheel" in line or "building wheel" in line.lower() for line in lines):
        out += " (no wheel of this release installs here; building its sdist failed)"
    return _short(out, 400)


def run_axis(out: str | Path, releases: Mapping[str, Sequence[str]], keyword: str | None = None,
             *, skip: Mapping[str, str] | None = None, env_dir: str | Path | None = None,
             workers: int = 1, reference: str = "recorded",
             summary_extra: Mapping[str, Any] | None = None) -> None:
    """Run each (peer, release) of ``releases`` (but ``skip``'s {peer: release}) into
    ``out/<peer>/<release>/``, one at a time, each keeping its records; the summary is
    rewritten after each run, so an interrupted axis keeps what it finished."""
    from harness.commands import ecosystem
    from harness.commands.ecosystem import EnvBuildError, peer_environment

    out = Path(out)
    for peer, versions in releases.items():
        for version in versions:
            if (skip or {}).get(peer) == version:
                continue
            folder = out / peer / version
            t0 = time.perf_counter()
            try:
                peer_environment(peer, env_dir, version=version)  # else run() runs defaults
                ecosystem.run(folder, keyword, [peer], workers=workers, env_dir=env_dir,
                              versions={peer: version},
                              pytest_args=["--save-baseline", str(folder / RECORDS),
                                           "--reference", reference])
            except (EnvBuildError, RuntimeError, OSError, ValueError) as exc:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "error.txt").write_text(f"{exc}\n")
            print(f"harness ecosystem: {peer} {version} took {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
            write_summary(out, releases, keyword=keyword, **(summary_extra or {}))


def _run_view(peer: str, version: str, folder: Path) -> dict[str, Any] | None:
    """What one release's run gave: its row's counts, verdicts and records (None: not run)."""
    path = folder / "league.json"
    if not path.is_file():
        error = folder / "error.txt"
        return {"version": version, "error": error.read_text().strip()} if error.is_file() \
            else None
    league = json.loads(path.read_text())
    view = league_view(peer, version, league)
    records = None
    if (folder / RECORDS / "manifest.json").is_file():
        manifest = json.loads((folder / RECORDS / "manifest.json").read_text())
        try:
            records = open_baseline(folder / RECORDS, str(manifest.get("catalog_version")))
        except BaselineError:
            records = None
    view["records"] = records
    return view


def league_view(peer: str, version: str, league: Mapping[str, Any],
                source: str | None = None) -> dict[str, Any]:
    """One release of ``peer`` as the axis keeps it, from a league table (a release's run, or
    the committed league for the pinned release): counts, per-case verdicts, environment."""
    row = next((r for r in league.get("implementations") or [] if r["name"] == peer), None)
    cases = {case: verdicts[peer] for case, verdicts in (league.get("cases") or {}).items()
             if peer in verdicts}
    env = (league.get("environments") or {}).get(peer)
    view: dict[str, Any] = {
        "version": version, "reported_version": (row or {}).get("version"),
        "counts": {c: (row or {}).get(c, 0) for c in COUNTS}, "cases": cases,
        "median_time_ratio_to_lme4": (row or {}).get("median_time_ratio_to_lme4"),
        "wall_seconds": league.get("wall_seconds"),
        "environment": env if isinstance(env, Mapping) else None,
        "left_out": (league.get("left_out") or {}).get(peer)}
    if source:
        view["source"] = source
    return view


def _saved_change(saved: Mapping[str, Any] | None, peer: str, a: Mapping[str, Any],
                  b: Mapping[str, Any]) -> dict[str, Any] | None:
    """The comparison of releases ``a`` -> ``b`` as the saved summary has it, where it was made
    from both runs' records and those are no longer here (a committed axis keeps each run's
    league.json, not its records): neither run changes, so neither does their comparison.
    None where it must be made again: a side has records, or is the pinned release read from
    the league (which a new league run replaces)."""
    if saved is None or a.get("records") is not None or b.get("records") is not None \
            or PINNED_RUN in (a.get("source"), b.get("source")):
        return None
    entry = (saved.get("peers") or {}).get(peer) or {}
    runs = entry.get("runs") or {}
    if not all((runs.get(v["version"]) or {}).get("kept_records") for v in (a, b)):
        return None
    return next((c for c in entry.get("changes") or []
                 if (c["from"], c["to"]) == (a["version"], b["version"])), None)


def build_summary(views: Mapping[str, Sequence[Mapping[str, Any]]],
                  keyword: str | None = None,
                  saved: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The axis from each peer's release views (oldest first): runs, the cases x releases
    matrix, and the changes between consecutive releases that both ran (``saved``: an earlier
    summary of the same axis, whose record-based comparisons stand where the records are
    gone)."""
    peers: dict[str, Any] = {}
    matrix: dict[str, dict[str, str]] = {}
    for peer, runs in views.items():
        ran = [v for v in runs if "cases" in v]
        changes = [_saved_change(saved, peer, a, b) or release_diff.compare_releases(peer, a, b)
                   for a, b in zip(ran[:-1], ran[1:], strict=True)]
        for v in ran:
            for case, verdict in v["cases"].items():
                matrix.setdefault(case, {})[f"{peer} {v['version']}"] = verdict
        peers[peer] = {
            "releases": [v["version"] for v in runs],
            "runs": {v["version"]: {k: val for k, val in v.items()
                                    if k not in ("records", "cases", "version")}
                     | {"kept_records": v.get("records") is not None
                        or _kept_before(saved, peer, v)}
                     for v in runs},
            "changes": changes}
    return {"keyword": keyword, "peers": peers, "cases": matrix}


def _kept_before(saved: Mapping[str, Any] | None, peer: str, view: Mapping[str, Any]) -> bool:
    """Whether the saved summary's run of this release kept its records (a run, not the
    pinned release read from the league)."""
    if saved is None or view.get("source") == PINNED_RUN:
        return False
    run = (((saved.get("peers") or {}).get(peer) or {}).get("runs") or {}).get(view["version"])
    return bool((run or {}).get("kept_records"))


def collect(out: str | Path, releases: Mapping[str, Sequence[str]],
            pinned_league: Mapping[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each peer's release views from the runs in ``out`` (a release not run there, when it is
    the peer's pinned one and ``pinned_league`` is given, from that league)."""
    from harness.commands.releases import pinned_release

    out = Path(out)
    views: dict[str, list[dict[str, Any]]] = {}
    for peer, versions in releases.items():
        views[peer] = []
        for version in versions:
            view = _run_view(peer, version, out / peer / version)
            if view is None and pinned_league is not None and version == pinned_release(peer):
                view = league_view(peer, version, pinned_league, source=PINNED_RUN)
                view["records"] = None
            if view is not None:
                views[peer].append(view)
    return views


def write_summary(out: str | Path, releases: Mapping[str, Sequence[str]], *,
                  keyword: str | None = None, pinned_league: Mapping[str, Any] | None = None,
                  missing: Mapping[str, str] | None = None,
                  not_installable: Mapping[str, Mapping[str, str]] | None = None
                  ) -> dict[str, Any]:
    """Collect the runs in ``out`` and write ``versions.json`` and ``index.html`` there;
    ``missing``: {peer: why no release was found}; ``not_installable``: {peer: {release: why
    its environment could not be built}}."""
    out = Path(out)
    saved = json.loads((out / SUMMARY).read_text()) if (out / SUMMARY).is_file() else None
    summary = build_summary(collect(out, releases, pinned_league), keyword, saved)
    summary["releases_found"] = {p: list(v) for p, v in releases.items()}
    if missing:
        summary["releases_not_found"] = dict(missing)
    if not_installable:
        summary["not_installable"] = {p: dict(v) for p, v in not_installable.items() if v}
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    (out / "index.html").write_text(render_html(summary))
    _refresh_league_page(out)
    return summary


def _refresh_league_page(out: Path) -> None:
    """When ``out`` is a league folder's ``versions/``, rewrite that league's page so that it
    shows the releases (harness.commands.ecosystem.write_league reads the axis)."""
    from harness.commands.ecosystem import VERSIONS_DIR, write_league

    league_json = out.parent / "league.json"
    if out.name == VERSIONS_DIR and league_json.is_file():
        write_league(json.loads(league_json.read_text()), out.parent)


# ----------------------------------------------------------------------------- renderings


def releases_markdown(summary: Mapping[str, Any]) -> str:
    """One row per (peer, release): the league's counts, then what changed since the release
    before it."""
    lines = ["| implementation | release | agreed | disagreed (registered) | candidate better "
             "| failed | not expressible | since the release before |", "|" + "---|" * 8]
    for peer, p in summary["peers"].items():
        since = {c["to"]: c["counts"] for c in p["changes"]}
        for version in p["releases"]:
            run = p["runs"][version]
            if run.get("error"):
                lines.append(f"| {peer} | {version} | run failed: "
                             f"{_short(run['error'], 80)} | | | | | |")
                continue
            c = run["counts"]
            lines.append(f"| {peer} | {version} | {c['agreed']} | {c['disagreed']} "
                         f"({c['registered']}) | {c['candidate_better']} | {c['failed']} | "
                         f"{c['not_expressible']} | {_counts_text(since.get(version))} |")
    return "\n".join(lines)


def render_html(summary: Mapping[str, Any]) -> str:
    """One page: releases x counts, the cases x releases matrix coloured by verdict (which
    release is right on what), and each pair of consecutive releases' changes."""
    from harness.commands.ecosystem import COLOURS, COLUMNS

    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>mixedref harness: the "
           "peers' releases</title><style>body{font-family:sans-serif;margin:2em}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
           "padding:3px 6px;font-size:13px}th{background:#f4f4f4}td.n{text-align:right}"
           "</style></head><body><h1>The peers' releases against lme4</h1>"]
    if summary.get("keyword"):
        out.append(f"<p>Cases run: those matching <code>-k {e(summary['keyword'])}</code>.</p>")
    out.append("<h2>Releases</h2>" + releases_table_html(summary, COLUMNS, COLOURS))
    columns = [f"{peer} {v}" for peer, p in summary["peers"].items() for v in p["releases"]
               if "error" not in p["runs"][v]]
    out.append("<h2>Cases x releases</h2><table><tr><th>case</th>"
               + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>")
    for case, row in summary["cases"].items():
        cells = "".join(
            f"<td style='background:{COLOURS.get(row[c], '#fff')}'>"
            f"{e(row[c].replace('_', ' '))}</td>" if c in row else "<td></td>"
            for c in columns)
        out.append(f"<tr><td>{e(case)}</td>{cells}</tr>")
    out.append("</table><h2>What changed between consecutive releases</h2>")
    for peer, p in summary["peers"].items():
        for ch in p["changes"]:
            shown = [c for c in ch["cases"] if c["change"] not in ("unchanged", "same verdict")]
            out.append(f"<h3>{e(peer)} {e(ch['from'])} &rarr; {e(ch['to'])}: "
                       f"{e(_counts_text(ch['counts']))}</h3>")
            if not shown:
                continue
            out.append("<table><tr><th>case</th><th>change</th><th>before</th><th>after</th>"
                       "<th>moved most (before &rarr; after, share of its tolerance)</th>"
                       "<th>moved beyond tolerance (before &rarr; after, allowed)</th></tr>")
            for c in shown:
                moved = "; ".join(f"{e(m['name'])}: {_num(m['old'])} &rarr; {_num(m['new'])} "
                                  f"({_num(m['allowed'])})" for m in c.get("moved") or [])
                top = c.get("largest_move")
                most = (f"{e(top['name'])}: {_num(top['old'])} &rarr; {_num(top['new'])} "
                        f"({top['share']:.2g})" if top else "")
                out.append(f"<tr><td>{e(c['case'])}</td><td>{e(c['change'])}</td>"
                           f"<td>{e(str(c['old']))}</td><td>{e(str(c['new']))}</td>"
                           f"<td>{most}</td><td>{moved}</td></tr>")
            out.append("</table>")
    if summary.get("not_installable"):
        out.append("<h2>Releases passed over: their environment could not be built here</h2>"
                   "<ul>" + "".join(f"<li>{e(p)} {e(v)}: {e(why)}</li>"
                                    for p, vs in summary["not_installable"].items()
                                    for v, why in vs.items()) + "</ul>")
    if summary.get("releases_not_found"):
        out.append("<h2>Releases not found</h2><ul>" + "".join(
            f"<li>{e(k)}: {e(v)}</li>" for k, v in summary["releases_not_found"].items())
            + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _num(x: Any) -> str:
    return "-" if x is None else html.escape(f"{x:.6g}" if isinstance(x, float) else str(x))


# ----------------------------------------------------------------------------- command line


def main(out: str, n: int, keyword: str | None = None, peers: Sequence[str] | None = None, *,
         older_only: bool = False, env_dir: str | None = None, run: bool = True) -> int:
    """The ``ecosystem --releases N`` command (``run=False``: ``--compare-releases``, the
    summary from the runs already in ``out``)."""
    from harness.adapters.peers import PEERS
    from harness.commands.ecosystem import LEAGUE_DIR
    from harness.commands.releases import pinned_release

    wanted = list(peers or PEERS)
    unknown = [p for p in wanted if p not in PEERS]
    if unknown:
        print(f"harness ecosystem: --impl {', '.join(unknown)}: not a PyPI peer (the peers: "
              f"{', '.join(PEERS)})", file=sys.stderr)
        return 2
    saved = Path(out) / SUMMARY
    not_installable: dict[str, dict[str, str]] = {}
    missing: dict[str, str] = {}
    if not run and saved.is_file():  # the releases the axis ran, without building anything
        before = json.loads(saved.read_text())
        releases = {p: v for p, v in before["releases_found"].items() if p in wanted}
        not_installable = {p: v for p, v in (before.get("not_installable") or {}).items()
                           if p in wanted}
        missing = {p: v for p, v in (before.get("releases_not_found") or {}).items()
                   if p in wanted}
    else:
        available, missing = find_releases(wanted)
        releases = {}
        for peer, versions in available.items():
            releases[peer], not_installable[peer] = select_releases(peer, versions, n, env_dir)
    pinned_league = None
    if older_only:
        path = LEAGUE_DIR / "league.json"
        pinned_league = json.loads(path.read_text()) if path.is_file() else None
    skip = {p: pinned_release(p) for p in releases} if older_only else None
    extra = {"pinned_league": pinned_league, "missing": missing,
             "not_installable": not_installable}
    if run:
        run_axis(out, releases, keyword, skip=skip, env_dir=env_dir, summary_extra=extra)
    summary = write_summary(out, releases, keyword=keyword, **extra)
    print(releases_markdown(summary))
    return 0
