"""The Python mixed-model ecosystem under the harness: a league table.

``python -m harness ecosystem --out DIR [-k EXPR]`` runs the catalog through lme4 and every
installed implementation (mixedref, statsmodels and the PyPI peers of harness.adapters.peers)
by running the harness itself under pytest (``python -m pytest --pyargs harness -n 2 --impl
...``), so every fit is isolated, judged under lme4's devfun and mixedref's objective and held
to the divergence registry exactly as in any harness run. This module is also loaded into that
pytest run as a plugin (``-p harness.commands.ecosystem``), where it keeps each item's outcome, the
plugin's comparison (with the judge's criterion values) and the fit times, and writes them to
``DIR/results.json``. From those it writes ``DIR/league.json`` and ``DIR/index.html``.

Each PyPI peer runs in a virtual environment of its own (``--impl-python``, see
harness.core.isolation), holding its pinned release as its users install it
(harness.adapters.peers.REQUIREMENTS) and then what the harness's worker needs there
(harness.adapters.peers.HARNESS_REQUIREMENTS), so that no package of the harness's environment
(scikit-sparse, statsmodels, another peer) changes what the peer does. The environments are
built with uv when it is installed (else ``python -m venv`` and pip), once per (peer,
requirements, Python) under ``$XDG_CACHE_HOME/mixedref-harness/envs/`` or ``--env-dir``, and
what each holds (``pip freeze``) goes into the league. lme4 (the reference), mixedref and
statsmodels run in the harness's own environment.

``--readme`` rewrites the block between ``<!-- ecosystem:start -->`` and
``<!-- ecosystem:end -->`` in README.md from the committed table
(harness/references/league/league.json), or from the table just written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import html
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import HOME
from harness.adapters import PYTHON_CANDIDATES
from harness.commands.certified_report import LME4, certified_column, lme4_failures
from harness.commands.certified_report import cell as certified_cell

HERE = HOME
LEAGUE_DIR = HERE / "references" / "league"
README = HERE.parent / "README.md"
#: the committed league's folder as the README names it (its reproducers are in repro/ there)
LEAGUE_PATH = "harness/references/league"
START, END = "<!-- ecosystem:start -->", "<!-- ecosystem:end -->"

#: the league, in the order it is listed: mixedref, statsmodels, then the PyPI peers
#: (harness.adapters.PYTHON_CANDIDATES, derived from harness.adapters.peers.PEERS)
LEAGUE = PYTHON_CANDIDATES
#: per-candidate time limit of the run: the catalog's default (its large cases allow lme4
#: 600 s; a candidate gets the default, so one slow package cannot stall the league)
CASE_TIMEOUT = 60.0

# league column <- harness summary outcome
_COLUMN = {"agreed": "agreed", "disagreed": "disagreed", "xfail": "disagreed",
           "candidate-better": "candidate_better", "failed": "failed", "error": "failed",
           "judges-disagree": "failed", "no-verdict": "failed", "xpass": "failed",
           "drift": "failed", "skipped": "not_expressible"}
COLUMNS = ("agreed", "disagreed", "candidate_better", "failed", "not_expressible")
COLOURS = {"agreed": "#cdeccd", "disagreed": "#f6c6c6", "candidate_better": "#c6dcf6",
           "failed": "#e0b0e8", "not_expressible": "#eeeeee"}


# ----------------------------------------------------------------------------- pytest plugin


def pytest_addoption(parser: Any) -> None:
    parser.getgroup("mixedref-harness").addoption(
        "--ecosystem-results", default=None, metavar="FILE",
        help="(harness ecosystem) write every harness item's outcome, comparison and times "
             "to FILE")


_items: dict[str, dict[str, Any]] = {}


def pytest_runtest_logreport(report: Any) -> None:
    """Keep each harness item's outcome (on the xdist controller: from user_properties)."""
    props = dict(report.user_properties or ())
    item = props.get("harness-item")
    if item is None:
        return
    from harness.pytest_plugin import summary

    entries: dict[str, dict[str, Any]] = {}
    prev = _items.get(report.nodeid)
    if prev is not None:
        entries[report.nodeid] = prev
    summary.record_report(entries, report, props)
    entry = entries[report.nodeid]
    data = props.get("harness") or {}
    if data.get("comparison") is not None:
        entry["comparison"] = data["comparison"]
        entry["seconds"] = (data.get("record") or {}).get("seconds")
        entry["reference_seconds"] = (data.get("reference_record") or {}).get("seconds")
        entry["versions"] = (data.get("record") or {}).get("versions") or {}
        entry["divergence"] = data.get("divergence")
        # what the distance from the truth needs (harness.core.truth): both sides' estimates
        entry["estimate"] = _estimate(data.get("record"))
        entry["reference_estimate"] = _estimate(data.get("reference_record"))
    if getattr(report, "wasxfail", None):
        entry["xfail_reason"] = str(report.wasxfail)
    entry.pop("data", None)
    _items[report.nodeid] = entry


def _estimate(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a record the distance from the truth reads."""
    if not record or record.get("error"):
        return None
    return {k: record.get(k) for k in ("fixef", "fixef_se", "sigma", "varcorr")}


def pytest_sessionfinish(session: Any) -> None:
    path = session.config.getoption("ecosystem_results", None)
    if not path or getattr(session.config, "workerinput", None) is not None:
        return
    Path(path).write_text(json.dumps(list(_items.values()), indent=1, default=str) + "\n")


# ----------------------------------------------------------------------------- environments

#: the file in an environment's folder that says it is complete, and what it holds
MANIFEST = "mixedref-harness-env.json"


class EnvBuildError(RuntimeError):
    """A peer's environment could not be built (the command and its output in the message)."""


def env_root(folder: str | Path | None = None) -> Path:
    """Where the peers' environments are kept: ``folder``, else
    ``$XDG_CACHE_HOME/mixedref-harness/envs`` (``~/.cache/...`` when the variable is unset)."""
    if folder:
        return Path(folder).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mixedref-harness" / "envs"


def env_folder(name: str, root: Path, version: str | None = None) -> Path:
    """``<root>/<peer>-<version>-<hash>``: the hash covers the peer's requirements, the
    harness's, and the Python and platform the environment is built for, so a change of any
    of them builds a new one. ``version``: another release of the peer than the pinned one
    (the league's version axis)."""
    from harness.adapters.peers import HARNESS_REQUIREMENTS

    reqs = peer_requirements(name, version)
    key = json.dumps({"requirements": list(reqs), "harness": list(HARNESS_REQUIREMENTS),
                      "python": platform.python_version(), "machine": platform.machine(),
                      "platform": sys.platform}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return root / f"{name}-{_pinned(reqs[0]) or 'any'}-{digest}"


def peer_requirements(name: str, version: str | None = None) -> tuple[str, ...]:
    """What ``name``'s environment installs: its pinned requirements, or with ``version`` the
    same with the peer's own pin moved to that release (harness.commands.releases)."""
    from harness.adapters.peers import REQUIREMENTS

    if version is None:
        return tuple(REQUIREMENTS[name])
    from harness.commands.releases import release_requirements

    return release_requirements(name, version)


def _pinned(requirement: str) -> str | None:
    """The version a ``name[extras]==version`` requirement pins, or None."""
    m = re.fullmatch(r"\s*[A-Za-z0-9._-]+(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*", requirement)
    return m.group(1) if m else None


def _uv() -> str | None:
    """uv next to this interpreter (a venv's bin/) or on PATH, or None."""
    here = Path(sys.executable).parent / "uv"
    return str(here) if here.is_file() and os.access(here, os.X_OK) else shutil.which("uv")


def _uv_options() -> list[str]:
    """pip's configuration (files and PIP_* variables: find-links, constraints, indexes) as
    uv's options, which uv does not read from pip: the environment is resolved as pip would
    resolve it here (e.g. torch from a wheel on disk pinned by a constraints file)."""
    try:
        text = subprocess.run([sys.executable, "-m", "pip", "config", "list"], check=True,
                              capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return uv_options_from_pip(text)


def uv_options_from_pip(config: str) -> list[str]:
    """uv's options from the text of ``pip config list`` (``global.find-links='/opt/wheels'``,
    ``:env:.constraint='...'``; several values in one are separated by spaces). With more than
    one place to look, uv is told to pick the best version among all (pip's way; uv's default
    takes the first index that has the package)."""
    flags = {"find-links": "--find-links", "constraint": "--constraint",
             "index-url": "--index-url", "extra-index-url": "--extra-index-url"}
    values: dict[str, list[str]] = {}
    for line in config.splitlines():
        key, sep, value = line.partition("=")
        section, _, option = key.strip().rpartition(".")
        if not sep or option not in flags or section not in ("global", "install", ":env:"):
            continue
        for v in value.strip().strip("'\"").split():
            if v not in values.setdefault(option, []):
                values[option].append(v)
    out = [arg for option, vs in values.items() for v in vs for arg in (flags[option], v)]
    if values.get("extra-index-url") or values.get("find-links"):
        out += ["--index-strategy", "unsafe-best-match"]
    return out


def _run_step(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
        raise EnvBuildError(f"{what} failed (exit code {proc.returncode}): "
                                f"{' '.join(cmd)}\n{tail}")
    return proc.stdout


class _Installer:
    """uv (preferred) or ``python -m venv`` + pip: create, install, freeze."""

    def __init__(self) -> None:
        self.uv = _uv()
        self.options = _uv_options() if self.uv else []

    def describe(self) -> str:
        if self.uv:
            return _run_step([self.uv, "--version"], "uv --version").strip()
        return "venv + " + _run_step([sys.executable, "-m", "pip", "--version"],
                                     "pip --version").split(" from ")[0]

    def create(self, folder: Path) -> str:
        if self.uv:
            _run_step([self.uv, "venv", "-q", "--python", sys.executable, str(folder)],
                      "creating the environment")
        else:
            _run_step([sys.executable, "-m", "venv", str(folder)], "creating the environment")
        return str(folder / "bin" / "python")

    def install(self, python: str, requirements: Sequence[str], what: str) -> None:
        if self.uv:
            cmd = [self.uv, "pip", "install", "-q", "--python", python, "--compile-bytecode",
                   *self.options, *requirements]
        else:
            cmd = [python, "-m", "pip", "install", "-q", *requirements]
        _run_step(cmd, what)

    def freeze(self, python: str) -> list[str]:
        cmd = ([self.uv, "pip", "freeze", "--python", python] if self.uv
               else [python, "-m", "pip", "freeze"])
        return sorted((line.strip() for line in _run_step(cmd, "pip freeze").splitlines()
                       if line.strip() and not line.startswith("#")), key=str.lower)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold ``.<folder>.lock`` next to it (two runs never build one environment at once)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _name_of(line: str) -> str:
    return re.split(r"[=@<>!~ ]", line, maxsplit=1)[0].strip().lower().replace("_", "-")


def peer_environment(name: str, root: str | Path | None = None, *,
                     rebuild: bool = False, version: str | None = None) -> dict[str, Any]:
    """The environment of peer ``name`` (built when missing or ``rebuild``): its manifest,
    ``{"peer", "python", "folder", "requirements", "harness_requirements", "installer",
    "python_version", "installed": [pip freeze], "peer_installed": [pip freeze before the
    harness's requirements], "added_for_harness": [...], "changed_for_harness": [...]}``.
    ``version``: another release than the pinned one (its own environment). Raises
    EnvBuildError when it cannot be built."""
    from harness.adapters.peers import HARNESS_REQUIREMENTS

    requirements = peer_requirements(name, version)
    folder = env_folder(name, env_root(root), version)
    manifest_path = folder / MANIFEST
    with _locked(folder):
        if not rebuild and manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            if os.access(manifest.get("python", ""), os.X_OK):
                return manifest
        if folder.exists():
            shutil.rmtree(folder)
        print(f"harness ecosystem: building {name}'s environment in {folder}", file=sys.stderr,
              flush=True)
        installer = _Installer()
        try:
            python = installer.create(folder)
            installer.install(python, requirements, f"installing {name}")
            alone = installer.freeze(python)
            installer.install(python, HARNESS_REQUIREMENTS, "installing the harness's "
                              f"requirements into {name}'s environment")
            full = installer.freeze(python)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        before = {_name_of(line): line for line in alone}
        manifest = {
            "peer": name, "python": python, "folder": str(folder),
            "python_version": platform.python_version(), "installer": installer.describe(),
            "requirements": list(requirements),
            "harness_requirements": list(HARNESS_REQUIREMENTS),
            "installed": full, "peer_installed": alone,
            "added_for_harness": [line for line in full if _name_of(line) not in before],
            "changed_for_harness": [f"{before[_name_of(line)]} -> {line}" for line in full
                                    if _name_of(line) in before
                                    and before[_name_of(line)] != line],
        }
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
        return manifest


def environment_summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What the league states about a peer's environment (no machine-specific paths)."""
    return {key: manifest.get(key) for key in (
        "requirements", "python_version", "installer", "installed", "harness_requirements",
        "added_for_harness", "changed_for_harness")}


# ----------------------------------------------------------------------------- the run


def installed(names: Sequence[str] = LEAGUE) -> tuple[list[str], dict[str, str]]:
    """(the implementations that load here, {name: why not} for the others)."""
    from harness.adapters import get_adapter

    ok, missing = [], {}
    for name in names:
        why = get_adapter(name).unavailable()
        if why:
            missing[name] = why
        else:
            ok.append(name)
    return ok, missing


def environments(names: Sequence[str], root: str | Path | None = None, *,
                 rebuild: bool = False, versions: Mapping[str, str] | None = None
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """({peer: manifest} of the peers among ``names``, {peer: why its environment failed});
    ``versions``: {peer: release} for peers run at another release than the pinned one."""
    from harness.adapters.peers import PEERS

    envs, failed = {}, {}
    for name in names:
        if name not in PEERS:
            continue
        try:
            envs[name] = peer_environment(name, root, rebuild=rebuild,
                                          version=(versions or {}).get(name))
        except (EnvBuildError, OSError) as exc:
            failed[name] = f"its environment could not be built: {exc}"
    return envs, failed


def run(out: str | Path, keyword: str | None = None, impls: Sequence[str] | None = None,
        workers: int = 2, timeout: float = CASE_TIMEOUT, *, env_dir: str | Path | None = None,
        own_envs: bool = True, rebuild_envs: bool = False,
        versions: Mapping[str, str] | None = None,
        pytest_args: Sequence[str] = ()) -> dict[str, Any]:
    """Run the harness over the league under pytest; write results.json, league.json and
    index.html into ``out``; return the league. ``own_envs``: each peer in its environment
    (:func:`peer_environment`, under ``env_dir``); False: every implementation in this one.
    ``versions``: {peer: release} to run instead of the pinned releases (with ``own_envs``);
    ``pytest_args``: more options for the harness run (e.g. ``--save-baseline DIR``)."""
    from harness.adapters.peers import PEERS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = list(impls or LEAGUE)
    envs: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    if own_envs:
        envs, failed = (environments(wanted, env_dir, rebuild=rebuild_envs, versions=versions)
                        if versions else environments(wanted, env_dir, rebuild=rebuild_envs))
    elif versions:
        raise ValueError("versions other than the pinned ones need own_envs=True (one "
                         "environment per release)")
    names, missing = installed([n for n in wanted if n not in envs and n not in failed])
    names = [n for n in wanted if n in names or n in envs]
    missing = {**missing, **failed}
    for name, why in missing.items():
        print(f"harness ecosystem: {name} left out: {why}", file=sys.stderr)
    results = out / "results.json"
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "harness",
           "-p", "harness.commands.ecosystem",
           "-p", "no:cacheprovider", "-q", "--no-header", "-rN",
           "--ecosystem-results", str(results), "--case-timeout", str(timeout)]
    if workers > 1:
        cmd += ["-n", str(workers)]
    for name in names:
        cmd += ["--impl", name]
        if name in envs:
            cmd += ["--impl-python", f"{name}={envs[name]['python']}"]
    if keyword:
        cmd += ["-k", keyword]
    cmd += list(pytest_args)
    print("harness ecosystem: " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)
    wall = time.perf_counter() - t0
    if not results.is_file():
        raise RuntimeError(f"the harness run wrote no results (pytest exit code "
                           f"{proc.returncode})")
    items = json.loads(results.read_text())
    league = build_league(items, names, wall_seconds=wall, missing=missing)
    league["environments"] = {
        n: environment_summary(envs[n]) if n in envs else HARNESS_ENV
        for n in names}
    _versions_from_pins(league)
    league["harness_environment"] = _harness_environment(
        [n for n in names if n not in envs], shared_peers=[n for n in names
                                                          if n in PEERS and n not in envs])
    write_league(league, out)
    print(f"harness ecosystem: {len(items)} items in {wall:.0f} s (pytest exit code "
          f"{proc.returncode}); league written to {out}", file=sys.stderr)
    return league


def _versions_from_pins(league: dict[str, Any]) -> None:
    """A peer that fitted nothing (every case declined) reported no version: its release is
    the one its environment pins (the first requirement, the peer itself)."""
    for row in league["implementations"]:
        env = (league.get("environments") or {}).get(row["name"])
        if row.get("version") in (None, "?") and isinstance(env, Mapping):
            pins = [_pinned(r) for r in env.get("requirements") or []]
            row["version"] = pins[0] if pins and pins[0] else row.get("version")


#: a league's environment entry for an implementation run in the harness's own environment
HARNESS_ENV = "harness"


def _harness_environment(names: Sequence[str], shared_peers: Sequence[str]) -> dict[str, Any]:
    """What the league states about the harness's own environment: who ran there, and the
    versions of what can change a fit there (the numerical stack, scikit-sparse)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("numpy", "scipy", "pandas", "nlopt", "scikit-sparse", "statsmodels",
                 "threadpoolctl", "rpy2"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return {"implementations": ["lme4 (the reference)", *names], "python":
            platform.python_version(), "versions": versions,
            "peers_sharing_it": list(shared_peers)}


# ----------------------------------------------------------------------------- the table


def _verdict(item: Mapping[str, Any]) -> str:
    return _COLUMN.get(str(item.get("outcome")), "failed")


def _judged(comparison: Mapping[str, Any] | None) -> dict[str, Any]:
    """The judge's criterion values: who reaches the lower criterion under each judge."""
    j = (comparison or {}).get("judgement") or {}
    out: dict[str, Any] = {"criterion": j.get("criterion")}
    for judge in ("lme4", "mixedref"):
        ref = (((j.get("reference") or {}).get("by") or {}).get(judge) or {}).get("objective")
        cand = (((j.get("candidate") or {}).get("by") or {}).get(judge) or {}).get("objective")
        if ref is None or cand is None:
            continue
        out[judge] = {"lme4": ref, "candidate": cand, "candidate_minus_lme4": cand - ref,
                      "lower": "candidate" if cand < ref else "lme4"}
    return out


def build_league(items: Sequence[Mapping[str, Any]], impls: Sequence[str] | None = None, *,
                 wall_seconds: float | None = None,
                 missing: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The league from the plugin's per-item results (see :func:`pytest_runtest_logreport`).

    ``items``: dicts with case, impl, outcome (the harness summary's: agreed, disagreed, xfail,
    candidate-better, failed, error, judges-disagree, no-verdict, skipped, ...), headline, and
    where the item was judged: comparison (harness.core.compare.Comparison.to_dict()), seconds,
    reference_seconds, versions, divergence, xfail_reason."""
    order = list(impls or [])
    for it in items:
        if it["impl"] not in order and it["impl"] not in LME4:  # lme4: the reference
            order.append(it["impl"])
    cases: dict[str, dict[str, str]] = {}
    per: dict[str, dict[str, Any]] = {n: {"name": n, "version": None, **{c: 0 for c in COLUMNS},
                                          "registered": 0, "ratios": {}, "findings": []}
                                      for n in order}
    for it in items:
        impl, case = it["impl"], it["case"]
        if impl not in per:
            continue
        verdict = _verdict(it)
        cases.setdefault(case, {})[impl] = verdict
        row = per[impl]
        row[verdict] += 1
        if it.get("outcome") == "xfail":
            row["registered"] += 1
        versions = it.get("versions") or {}
        if row["version"] is None and versions:
            row["version"] = _version(impl, versions)
        sec, ref = it.get("seconds"), it.get("reference_seconds")
        if verdict in ("agreed", "disagreed", "candidate_better") and sec and ref:
            row["ratios"][case] = sec / ref
        if verdict != "agreed" and verdict != "not_expressible":
            row["findings"].append({
                "case": case, "verdict": verdict, "outcome": it.get("outcome"),
                "headline": " ".join(str(it.get("headline") or "").split())[:600],
                "registered": it.get("xfail_reason"),
                "judge": _judged(it.get("comparison")),
            })
        elif verdict == "not_expressible":
            row.setdefault("not_expressible_reasons", {})[case] = str(it.get("headline"))[:300]
    table = []
    for n in order:
        row = per[n]
        ratios = list(row["ratios"].values())
        row["median_time_ratio_to_lme4"] = statistics.median(ratios) if ratios else None
        row["time_ratio_to_lme4"] = row.pop("ratios")
        table.append(row)
    certified = certified_column(items)  # worst LRE against the certified truth
    for row in table:
        row["certified_worst_lre"] = (certified.get(row["name"]) or {}).get("worst_lre")
    league: dict[str, Any] = {"implementations": table,
                              "cases": {c: cases[c] for c in sorted(cases, key=_case_order(items))}}
    if certified:
        league["certified"] = certified
    truth = league_truth(items)
    if truth:
        league["truth"] = truth
    if wall_seconds is not None:
        league["wall_seconds"] = round(wall_seconds, 1)
    if missing:
        league["left_out"] = dict(missing)
    return league


def league_truth(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per simulated case with a truth: every implementation's distance from the truth next to
    its distance from lme4 (harness.core.truth.truth_table), and for a Gamma or inverse-Gaussian
    GLMM
    the best known over lme4, glmmTMB and mixedref its verdicts follow; in the report's shape
    (harness.commands.report.truth_section renders both)."""
    from harness.core.catalog import load_catalog
    from harness.core.judge import scale_family
    from harness.core.truth import truth_table

    by_case: dict[str, dict[str, Any]] = {}
    for it in items:
        if it.get("estimate") is None:
            continue
        recs = by_case.setdefault(it["case"], {})
        if it.get("reference_estimate") is not None and it["impl"] not in LME4:
            recs.setdefault("lme4", it["reference_estimate"])
        recs[it["impl"] if it["impl"] not in LME4 else f"{it['impl']} (live)"] = it["estimate"]
    try:
        catalog = {c.id: c for c in load_catalog(None)}
    except Exception:  # noqa: BLE001 - no catalog, no truth
        return []
    out = []
    for case_id, recs in by_case.items():
        case = catalog.get(case_id)
        if case is None or "lme4" not in recs:
            continue
        table = truth_table(case, recs)
        rule = None
        if case.family in scale_family.FAMILIES:
            entry = scale_family.recorded(case_id)
            rule = scale_family.summary_line(entry) if entry else None
        if table or rule:
            out.append({"case": {"id": case_id}, "truth": table, "best_known_rule": rule})
    return out


def _case_order(items: Sequence[Mapping[str, Any]]) -> Any:
    first = {}
    for i, it in enumerate(items):
        first.setdefault(it["case"], i)
    try:
        from harness.core.catalog import load_catalog

        ids = [c.id for c in load_catalog(None)]
        pos = {c: i for i, c in enumerate(ids)}
        return lambda c: (pos.get(c, len(pos) + first.get(c, 0)))
    except Exception:  # noqa: BLE001 - order of appearance then
        return lambda c: first.get(c, 0)


def _version(impl: str, versions: Mapping[str, str]) -> str:
    for key in (impl, impl.replace("-", "_"), impl.split("-")[0]):
        if key in versions:
            return str(versions[key])
    return str(next(iter(versions.values())))


#: where a league folder keeps its version axis (harness/commands/release_league.py), if it has one
VERSIONS_DIR = "versions"


def write_league(league: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``league.json`` and ``index.html`` into ``out``; the page shows the releases'
    table of ``out/versions/versions.json`` when the folder has a version axis."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "league.json", "html": out / "index.html"}
    paths["json"].write_text(json.dumps(league, indent=1, allow_nan=False) + "\n")
    axis = out / VERSIONS_DIR / "versions.json"
    releases = json.loads(axis.read_text()) if axis.is_file() else None
    paths["html"].write_text(render_html(league, releases))
    return paths


# ----------------------------------------------------------------------------- renderings


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def league_markdown(league: Mapping[str, Any]) -> str:
    """The league as a markdown table, one row per implementation."""
    certified = league.get("certified") or {}
    head = ("| implementation | version | agreed | disagreed (registered) | candidate better | "
            "failed | not expressible | median time / lme4 |"
            + (" worst certified LRE |" if certified else ""))
    lines = [head, "|" + "---|" * (9 if certified else 8)]
    for r in league["implementations"]:
        lines.append(f"| {r['name']} | {r.get('version') or '?'} | {r['agreed']} | "
                     f"{r['disagreed']} ({r.get('registered', 0)}) | {r['candidate_better']} | "
                     f"{r['failed']} | {r['not_expressible']} | "
                     f"{_ratio(r.get('median_time_ratio_to_lme4'))} |"
                     + (f" {certified_cell(certified.get(r['name']))} |" if certified else ""))
    if certified:  # the reference judged too: where lme4 itself fails the truth
        lme4 = next((certified[n] for n in LME4 if n in certified), None)
        failed = lme4_failures(certified)
        lines.append(f"| lme4 (against the truth) | | | | | | | | {certified_cell(lme4)}"
                     + (f"; fails {', '.join(failed)}" if failed else "") + " |")
    return "\n".join(lines)


def readme_block(league: Mapping[str, Any]) -> str:
    """The README section "What the harness found in the ecosystem", from the table."""
    n = len(league.get("cases") or {})
    wall = league.get("wall_seconds")
    lines = [START, "## What the harness found in the ecosystem", "",
             f"`python -m harness ecosystem --out DIR` runs the catalog ({n} cases) through lme4 "
             "and each implementation below under the harness (isolated fits, the judge, the "
             "registry)" + (f"; the committed run took {wall / 60:.0f} min with `-n 2`" if wall
                            else "") + ". The table and its page are in "
             "`harness/references/league/`; this section is generated from it "
             "(`python -m harness ecosystem --readme`). Registered disagreements are explained "
             "in `harness/divergences.yaml`; the time ratio is the median over the cases it "
             "fitted of its fit time / lme4's." + (f" {environments_text(league)}"
                                                    if environments_text(league) else ""),
             "", league_markdown(league), "",
             "Each implementation's disagreements, case by case with who reaches the lower "
             "criterion when re-evaluated, are on the league's page "
             "(`harness/references/league/index.html`); the findings that explain them:"]
    lines += findings_lines(league)
    lines.append(END)
    return "\n".join(lines)


def registry_findings(league: Mapping[str, Any],
                      path: str | Path | None = None) -> list[dict[str, Any]]:
    """The registry's findings (default harness/divergences.yaml) about the league's
    implementations, each with its rows, the cases they name and the league's items it
    covered (those whose registered reason names the finding)."""
    from harness.commands.repro_recipes import folder_of
    from harness.core.divergences import default_registry_path, read_document

    doc = read_document(Path(path) if path else default_registry_path())
    by_impl = {r["name"]: r for r in league["implementations"]}
    out = []
    cases = _catalog_cases()
    for f in doc.get("findings") or []:
        if f["impl"] not in by_impl:
            continue
        covered = [x["case"] for x in by_impl[f["impl"]].get("findings") or []
                   if f"finding {f['id']}:" in str(x.get("registered") or "")]
        out.append({"id": f["id"], "impl": f["impl"], "cause": " ".join(f["cause"].split()),
                    "rows": len(f["rows"]), "cases": len({r["case"] for r in f["rows"]}),
                    "covered": covered,
                    "reproducer": folder_of(f["id"], f["impl"], _first_case(f, cases))})
    return out


def _catalog_cases() -> list[Any]:
    """The shipped catalog's cases (none when it cannot be read: no reproducer is named)."""
    try:
        from harness.core.catalog import load_catalog

        return load_catalog(None)
    except Exception:  # noqa: BLE001 - the page is still written, without reproducers
        return []


def _first_case(finding: Mapping[str, Any], cases: Sequence[Any]) -> Any:
    """The first catalog case the finding's first row names (its reproducer's case)."""
    import fnmatch

    glob = str(finding["rows"][0]["case"])
    return next((c for c in cases if fnmatch.fnmatchcase(c.id, glob)), None)


def findings_lines(league: Mapping[str, Any], path: str | Path | None = None) -> list[str]:
    """The README's findings: one line per finding with its row count."""
    found = registry_findings(league, path)
    if not found:
        return []
    return ["", "Registered findings (`harness/divergences.yaml`: one cause each, with the "
            "rows it explains; `python -m harness divergences --measure` measures them; "
            "a finding about a Python package names its standalone reproducer, written by "
            f"`python -m harness repro --findings --out {LEAGUE_PATH}/repro`):", "",
            *(f"- `{f['id']}` [{f['impl']}]: {f['rows']} row{'s' * (f['rows'] != 1)} on "
              f"{f['cases']} case{'s' * (f['cases'] != 1)} — {_short(f['cause'], 160)}"
              + (f" Reproducer: `{LEAGUE_PATH}/{f['reproducer']}`." if f.get("reproducer")
               else "")
              for f in found)]


def findings_html(league: Mapping[str, Any], path: str | Path | None = None) -> str:
    """The page's findings: each with its cause, its row count and the cases it covered."""
    e = html.escape
    found = registry_findings(league, path)
    if not found:
        return ""
    rows = "".join(
        f"<tr><td><code>{e(f['id'])}</code></td><td>{e(f['impl'])}</td>"
        f"<td class=n>{f['rows']}</td><td class=n>{f['cases']}</td>"
        f"<td>{e(', '.join(f['covered']) or '-')}</td><td>{e(f['cause'])}</td>"
        + (f"<td><a href='{e(f['reproducer'])}'><code>{e(f['reproducer'])}</code></a></td>"
           if f.get("reproducer") else "<td>-</td>") + "</tr>"
        for f in found)
    return ("<h2>Registered findings</h2><p>A finding about a Python package links its "
            "standalone reproducer (the package's own call on the finding's first case, its "
            "answer next to lme4's), written beside this page by <code>python -m harness repro "
            "--findings --out DIR/repro</code>.</p><table><tr><th>finding</th>"
            "<th>implementation</th><th>rows</th><th>cases</th><th>items covered in this run"
            "</th><th>cause</th><th>reproducer</th></tr>" + rows + "</table>")


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def rewrite_readme(league: Mapping[str, Any], readme: str | Path = README) -> None:
    """Replace the block between the ecosystem markers of ``readme`` (which must exist)."""
    path = Path(readme)
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START} ... {END} block")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    path.write_text(pattern.sub(lambda _: readme_block(league), text, count=1))


def environments_text(league: Mapping[str, Any]) -> str | None:
    """One sentence: where the implementations ran (None for a league without the record)."""
    envs = league.get("environments")
    if not envs:
        return None
    own = [n for n, e in envs.items() if e != HARNESS_ENV]
    shared = [n for n, e in envs.items() if e == HARNESS_ENV]
    harness = league.get("harness_environment") or {}
    text = ""
    if own:
        needs = sorted({_name_of(r) for n in own
                        for r in envs[n].get("harness_requirements") or ()})
        who = own[0] if len(own) == 1 else "Each of " + ", ".join(own)
        text += (f"{who} ran in a virtual environment of its own: its pinned release as its "
                 "users install it, then what the harness's worker needs there ("
                 + ", ".join(needs) + "), so that nothing else of the harness's environment "
                 "reaches it. ")
    text += (f"lme4 (the reference){', ' if shared else ''}{', '.join(shared)} ran in the "
             "harness's own environment")
    versions = harness.get("versions") or {}
    if versions:
        text += " (" + ", ".join(f"{k} {v}" for k, v in versions.items()) + ")"
    return text + "."


def _environments_html(league: Mapping[str, Any]) -> list[str]:
    """The page's section on where each implementation ran and what its environment held."""
    text = environments_text(league)
    if text is None:
        return []
    e = html.escape
    out = [f"<h2>Environments</h2><p>{e(text)}</p><table><tr><th>implementation</th>"
           "<th>its requirements</th><th>installed there (pip freeze)</th><th>added for the "
           "harness's worker</th></tr>"]
    for name, env in league["environments"].items():
        if env == HARNESS_ENV:
            out.append(f"<tr><td>{e(name)}</td><td colspan=3>the harness's own environment"
                       "</td></tr>")
            continue
        changed = env.get("changed_for_harness") or []
        added = ", ".join(env.get("added_for_harness") or []) or "nothing"
        if changed:
            added += "; changed: " + ", ".join(changed)
        out.append(f"<tr><td>{e(name)}</td><td>{e(', '.join(env.get('requirements') or []))}"
                   f"</td><td>{e(', '.join(env.get('installed') or []))}</td>"
                   f"<td>{e(added)}</td></tr>")
    out.append("</table>")
    return out


def _releases_html(releases: Mapping[str, Any]) -> str:
    """The page's section on the version axis: each peer at its last releases."""
    from harness.commands.release_table import releases_table_html

    kw = releases.get("keyword")
    return ("<h2>Releases</h2><p>Each peer at its last releases that install here, one "
            "environment each (<code>python -m harness ecosystem --releases N</code>"
            + (f", cases matching <code>-k {html.escape(kw)}</code>" if kw else "")
            + "); which release is right on which case, and what changed between consecutive "
            "releases case by case: <a href='versions/index.html'>versions/index.html</a>.</p>"
            + releases_table_html(releases, COLUMNS, COLOURS))


def render_html(league: Mapping[str, Any], releases: Mapping[str, Any] | None = None) -> str:
    """One static page: the table, the cases x implementations matrix coloured by verdict,
    per implementation its disagreements with the judge's verdict, and its speed ratios;
    with ``releases`` (a version axis's versions.json, harness/commands/release_league.py), each
    peer's releases and what changed between them."""
    impls = [r["name"] for r in league["implementations"]]
    certified = league.get("certified") or {}
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>mixedref harness: the "
           "Python mixed-model ecosystem</title><style>body{font-family:sans-serif;margin:2em}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
           "padding:3px 6px;font-size:13px}th{background:#f4f4f4}td.n{text-align:right}"
           "</style></head><body><h1>The Python mixed-model ecosystem against lme4</h1>"]
    if league.get("wall_seconds") is not None:
        out.append(f"<p>Run wall time: {league['wall_seconds']:.0f} s.</p>")
    out.append("<h2>League</h2><table><tr><th>implementation</th><th>version</th>"
               + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in COLUMNS)
               + "<th>registered</th><th>median time / lme4</th>"
               + ("<th>worst certified LRE</th>" if certified else "") + "</tr>")
    for r in league["implementations"]:
        out.append(f"<tr><td>{e(r['name'])}</td><td>{e(str(r.get('version')))}</td>"
                   + "".join(f"<td class=n style='background:{COLOURS[c]}'>{r[c]}</td>"
                             for c in COLUMNS)
                   + f"<td class=n>{r.get('registered', 0)}</td>"
                   f"<td class=n>{_ratio(r.get('median_time_ratio_to_lme4'))}</td>"
                   + (f"<td>{e(certified_cell(certified.get(r['name'])))}</td>"
                      if certified else "") + "</tr>")
    out.append("</table>")
    if certified:
        failed = lme4_failures(certified)
        lme4 = next((certified[n] for n in LME4 if n in certified), None)
        out.append("<p>Certified cases (NIST StRD, judged against their exact truth, "
                   f"docs/certified.md): lme4's worst LRE {e(certified_cell(lme4))}"
                   + (f"; lme4 fails {e(', '.join(failed))}" if failed else "") + ".</p>")
    if releases:
        out.append(_releases_html(releases))
    out.extend(_environments_html(league))
    out.append("<h2>Cases x implementations</h2><table><tr><th>case</th>"
               + "".join(f"<th>{e(i)}</th>" for i in impls) + "</tr>")
    ratios = {r["name"]: r.get("time_ratio_to_lme4") or {} for r in league["implementations"]}
    for case, row in league["cases"].items():
        cells = []
        for i in impls:
            v = row.get(i)
            if v is None:
                cells.append("<td></td>")
                continue
            t = ratios[i].get(case)
            extra = f" ({t:.2f}x)" if t is not None else ""
            cells.append(f"<td style='background:{COLOURS.get(v, '#fff')}'>"
                         f"{e(v.replace('_', ' '))}{extra}</td>")
        out.append(f"<tr><td>{e(case)}</td>{''.join(cells)}</tr>")
    out.append("</table><p>In brackets: the candidate's fit time / lme4's fit time on the case."
               "</p><h2>Disagreements and failures, with the judge's verdict</h2>")
    for r in league["implementations"]:
        found = r.get("findings") or []
        out.append(f"<h3>{e(r['name'])} ({len(found)})</h3>")
        if not found:
            out.append("<p>none</p>")
            continue
        out.append("<table><tr><th>case</th><th>verdict</th><th>what</th><th>criterion "
                   "under lme4's devfun (candidate / lme4)</th><th>under mixedref's "
                   "objective</th><th>lower</th></tr>")
        for f in found:
            j = f.get("judge") or {}
            cols = []
            for judge in ("lme4", "mixedref"):
                v = j.get(judge)
                cols.append(f"{v['candidate']:.10g} / {v['lme4']:.10g} "
                            f"({v['candidate_minus_lme4']:+.3g})" if v else "-")
            lower = (j.get("lme4") or j.get("mixedref") or {}).get("lower", "-")
            what = f.get("registered") or f.get("headline") or ""
            out.append(f"<tr><td>{e(f['case'])}</td><td>{e(f['verdict'])}</td>"
                       f"<td>{e(_short(what, 400))}</td><td>{cols[0]}</td><td>{cols[1]}</td>"
                       f"<td>{e(lower)}</td></tr>")
        out.append("</table>")
    out.append(findings_html(league))
    if league.get("truth"):
        from harness.commands.report.truth_section import html_section

        out.append(html_section({"cases": league["truth"]}))
    if league.get("left_out"):
        out.append("<h2>Not installed</h2><ul>" + "".join(
            f"<li>{e(k)}: {e(v)}</li>" for k, v in league["left_out"].items()) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- command line


def main(out: str | None, keyword: str | None = None, impls: Sequence[str] | None = None,
         readme: bool = False, *, env_dir: str | None = None, own_envs: bool = True,
         rebuild_envs: bool = False) -> int:
    """The ``ecosystem`` command: run into ``out`` and/or rewrite the README's block."""
    league = None
    if out:
        league = run(out, keyword, impls, env_dir=env_dir, own_envs=own_envs,
                     rebuild_envs=rebuild_envs)
        print(league_markdown(league))
    if readme:
        if league is None:
            path = LEAGUE_DIR / "league.json"
            if not path.is_file():
                print(f"harness ecosystem: no league table at {path}; run with --out first",
                      file=sys.stderr)
                return 2
            league = json.loads(path.read_text())
        rewrite_readme(league)
        print(f"harness ecosystem: rewrote the ecosystem block of {README}", file=sys.stderr)
    if league is None:
        print("harness ecosystem: give --out DIR (run) and/or --readme", file=sys.stderr)
        return 2
    return 0
