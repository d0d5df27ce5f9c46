"""The league's version axis: releases found, one environment per (peer, release), and what
changed between consecutive releases, on synthetic inputs (no environment is built, no peer
runs: the installer and the runs are fakes, the records written by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.adapters.peers import REQUIREMENTS
from harness.commands import ecosystem, release_diff, release_league, releases
from harness.core import baseline

PIP_OUTPUT = """WARNING: pip index is currently an experimental command.
glmm (0.6.2)
Available versions: 0.6.2, 0.6.1, 0.6.0, 0.5.0
  INSTALLED: 0.6.2
"""


def test_pips_list_of_versions_is_read_newest_first_and_the_last_n_oldest_first() -> None:
    found = releases.parse_index_versions(PIP_OUTPUT)
    assert found == ["0.6.2", "0.6.1", "0.6.0", "0.5.0"]
    assert releases.last_releases(found, 3) == ["0.6.0", "0.6.1", "0.6.2"]
    assert releases.last_releases(["1.0"], 3) == ["1.0"]  # a peer with one release
    assert releases.parse_index_versions("ERROR: No matching distribution found") == []
    with pytest.raises(ValueError, match="at least 1"):
        releases.last_releases(found, 0)


def test_a_release_moves_the_peers_pin_and_keeps_its_other_requirements() -> None:
    assert releases.release_requirements("glmm", "0.6.1") == ("glmm==0.6.1",)
    assert releases.release_requirements("pyreml", "0.5.3") == ("pyreml==0.5.3",
                                                                 *REQUIREMENTS["pyreml"][1:])
    assert releases.pinned_release("glmm") == REQUIREMENTS["glmm"][0].split("==")[1]
    with pytest.raises(KeyError, match="no peer named 'nope'"):
        releases.release_requirements("nope", "1.0")
    with pytest.raises(ValueError, match="not a release number"):
        releases.release_requirements("glmm", "0.6; rm -rf /")
    with pytest.raises(ValueError, match="pins no release"):
        releases.release_requirements("x", "1.0", {"x": ("x>=1",)})


def test_each_release_has_its_own_environment_folder(tmp_path: Path) -> None:
    pinned = releases.pinned_release("glmm")
    folder = ecosystem.env_folder("glmm", tmp_path)
    assert ecosystem.env_folder("glmm", tmp_path, pinned) == folder  # the pinned one: shared
    older = ecosystem.env_folder("glmm", tmp_path, "0.6.1")
    assert older != folder and older.name.startswith("glmm-0.6.1-")


def test_a_release_environment_installs_that_release(tmp_path: Path, monkeypatch) -> None:
    installs: list[tuple[str, ...]] = []

    class Fake:
        def describe(self) -> str:
            return "fake"

        def create(self, folder: Path) -> str:
            (folder / "bin").mkdir(parents=True)
            (folder / "bin" / "python").symlink_to("/bin/true")
            return str(folder / "bin" / "python")

        def install(self, python, requirements, what) -> None:
            installs.append(tuple(requirements))

        def freeze(self, python) -> list[str]:
            return ["glmm==0.6.1"]

    monkeypatch.setattr(ecosystem, "_Installer", Fake)
    manifest = ecosystem.peer_environment("glmm", tmp_path, version="0.6.1")
    assert installs[0] == ("glmm==0.6.1",) and manifest["requirements"] == ["glmm==0.6.1"]


def test_the_axis_passes_over_releases_that_do_not_build(monkeypatch) -> None:
    built = []

    def fake_env(peer, root=None, *, rebuild=False, version=None):
        if version == "0.6.1":
            raise ecosystem.EnvBuildError("installing glmm failed (exit code 1): uv pip ...\n"
                                          "Could not resolve host: index.crates.io")
        built.append(version)
        return {"python": "/x"}

    monkeypatch.setattr(ecosystem, "peer_environment", fake_env)
    chosen, failed = release_league.select_releases(
        "glmm", ["0.6.2", "0.6.1", "0.6.0", "0.5.0", "0.3.2"], 3)
    assert chosen == ["0.5.0", "0.6.0", "0.6.2"] and built == ["0.6.2", "0.6.0", "0.5.0"]
    assert list(failed) == ["0.6.1"] and "index.crates.io" in failed["0.6.1"]
    built.clear()  # at most LOOKBACK * n releases are tried
    chosen, failed = release_league.select_releases("glmm", ["0.6.1", "0.6.1", "0.5"], 1)
    assert chosen == [] and built == [] and len(failed) == 1


@pytest.mark.parametrize(("old", "new", "drifted", "moved", "change"), [
    ("disagreed", "agreed", False, True, "fixed"),
    ("failed", "candidate_better", None, None, "fixed"),
    ("agreed", "failed", None, None, "regressed"),
    ("candidate_better", "disagreed", True, True, "regressed"),
    ("not_expressible", "agreed", None, None, "newly expressible"),
    ("agreed", "not_expressible", None, None, "no longer expressible"),
    ("agreed", "agreed", True, True, "moved beyond tolerance"),
    ("disagreed", "disagreed", False, True, "moved within tolerance"),
    ("agreed", "candidate_better", False, False, "changed verdict"),
    ("failed", "disagreed", False, True, "changed verdict"),
    ("agreed", "agreed", False, False, "unchanged"),
    ("agreed", "agreed", None, None, "same verdict"),
    ("not_expressible", "not_expressible", None, None, None),
    ("agreed", None, None, None, None),
])
def test_each_case_gets_one_change(old, new, drifted, moved, change) -> None:
    assert release_diff.classify(old, new, drifted=drifted, moved=moved) == change


def _record(case: str, intercept: float, version: str, error: str | None = None) -> dict:
    return {"impl": "glmm", "case_id": case, "fixef": {"(Intercept)": intercept, "x": 2.0},
            "fixef_se": {"(Intercept)": 0.5, "x": 0.1}, "sigma": 1.0,
            "varcorr": [{"grp": "g", "var1": "(Intercept)", "var2": None, "vcov": 4.0,
                         "sdcor": 2.0},
                        {"grp": "Residual", "var1": None, "var2": None, "vcov": 1.0,
                         "sdcor": 1.0}],
            "theta": [2.0], "loglik": -100.0, "objective": 200.0, "REML": True,
            "nobs": 100, "ngroups": {"g": 10}, "converged": True, "singular": False,
            "messages": [], "seconds": 0.01, "nfev": 10, "versions": {"glmm": version},
            "error": error}


def _release_run(root: Path, version: str, verdicts: dict[str, str],
                 intercepts: dict[str, float]) -> None:
    """A release's run folder as ecosystem.run and --save-baseline leave it."""
    folder = root / "glmm" / version
    folder.mkdir(parents=True)
    baseline.write_manifest(folder / "records", "cafe", "catalog.yaml")
    for case, b0 in intercepts.items():
        baseline.save_record(folder / "records", _record(case, b0, version))
    counts = {c: list(verdicts.values()).count(c) for c in ecosystem.COLUMNS}
    league = {"implementations": [{"name": "glmm", "version": version, **counts,
                                   "registered": 0, "median_time_ratio_to_lme4": 0.5}],
              "cases": {case: {"glmm": v} for case, v in verdicts.items()},
              "wall_seconds": 12.0,
              "environments": {"glmm": {"requirements": [f"glmm=={version}"]}}}
    (folder / "league.json").write_text(json.dumps(league))


def test_consecutive_releases_are_compared_case_by_case(tmp_path: Path) -> None:
    # intercept SE 0.5: the fixed effects' tolerance is a fraction of it, so 1e-6 is within
    # and 1.0 (two SEs) beyond
    _release_run(tmp_path, "0.6.0",
                 {"a": "disagreed", "b": "agreed", "c": "agreed", "d": "agreed",
                  "e": "not_expressible", "f": "agreed"},
                 {"a": 10.0, "b": 10.0, "c": 10.0, "d": 10.0, "f": 10.0})
    _release_run(tmp_path, "0.6.1",
                 {"a": "agreed", "b": "agreed", "c": "agreed", "d": "failed",
                  "e": "agreed", "g": "agreed"},
                 {"a": 10.0, "b": 10.0 + 1e-6, "c": 11.0, "d": 10.0, "e": 10.0, "g": 1.0})
    found = {"glmm": ["0.6.0", "0.6.1"]}
    summary = release_league.write_summary(tmp_path, found, keyword="x")
    (change,) = summary["peers"]["glmm"]["changes"]
    by_case = {c["case"]: c for c in change["cases"]}
    assert {c: by_case[c]["change"] for c in by_case} == {
        "a": "fixed", "b": "moved within tolerance", "c": "moved beyond tolerance",
        "d": "regressed", "e": "newly expressible"}
    assert change["only_in_one"] == ["f", "g"]
    (moved,) = [m for m in by_case["c"]["moved"] if m["name"] == "fixef[(Intercept)]"]
    assert (moved["old"], moved["new"]) == (10.0, 11.0)
    assert 0 < by_case["b"]["largest_move"]["share"] < 1 < by_case["c"]["largest_move"]["share"]
    assert change["counts"] == {"fixed": 1, "regressed": 1, "newly expressible": 1,
                                "moved beyond tolerance": 1, "moved within tolerance": 1}
    assert summary["cases"]["a"] == {"glmm 0.6.0": "disagreed", "glmm 0.6.1": "agreed"}
    saved = json.loads((tmp_path / "versions.json").read_text())
    assert saved["peers"]["glmm"]["runs"]["0.6.1"]["kept_records"] is True
    page = (tmp_path / "index.html").read_text()
    assert "glmm 0.6.0 &rarr; 0.6.1" in page and "regressed" in page
    assert "Cases x releases" in page
    table = release_league.releases_markdown(summary)
    assert "| glmm | 0.6.1 | 5 | 0 (0) | 0 | 1 | 0 | 1 fixed, 1 regressed" in table


def test_an_unchanged_record_is_unchanged(tmp_path: Path) -> None:
    _release_run(tmp_path, "1", {"a": "agreed"}, {"a": 10.0})
    _release_run(tmp_path, "2", {"a": "agreed"}, {"a": 10.0})
    summary = release_league.write_summary(tmp_path, {"glmm": ["1", "2"]})
    assert summary["peers"]["glmm"]["changes"][0]["counts"] == {"unchanged": 1}


def test_the_pinned_release_can_come_from_the_committed_league(tmp_path: Path) -> None:
    """--older-only: the pinned release's verdicts from the league, which kept no records."""
    pinned = releases.pinned_release("glmm")
    _release_run(tmp_path, "0.0.1", {"a": "agreed", "b": "failed"}, {"a": 10.0})
    league = {"implementations": [{"name": "glmm", "version": pinned, "agreed": 2}],
              "cases": {"a": {"glmm": "agreed", "mixedref": "agreed"},
                        "b": {"glmm": "agreed"}}}
    summary = release_league.write_summary(tmp_path, {"glmm": ["0.0.1", pinned]},
                                           pinned_league=league)
    run = summary["peers"]["glmm"]["runs"][pinned]
    assert run["source"] == release_league.PINNED_RUN and run["kept_records"] is False
    changes = {c["case"]: c["change"] for c in summary["peers"]["glmm"]["changes"][0]["cases"]}
    assert changes == {"a": "same verdict", "b": "fixed"}


def test_a_committed_axis_keeps_its_record_based_comparisons(tmp_path: Path) -> None:
    """Committed, an axis keeps each run's league.json but not its records: summarising it
    again (a new league run's pinned release, another peer's release added) keeps the older
    releases' comparison made from records, and makes the pinned release's one anew."""
    import shutil

    pinned = releases.pinned_release("glmm")
    _release_run(tmp_path, "0.0.1", {"a": "agreed", "b": "agreed"}, {"a": 10.0, "b": 10.0})
    _release_run(tmp_path, "0.0.2", {"a": "agreed", "b": "failed"}, {"a": 10.0 + 1e-6,
                                                                      "b": 10.0})
    old_league = {"implementations": [{"name": "glmm", "version": pinned, "agreed": 1}],
                  "cases": {"a": {"glmm": "agreed"}, "b": {"glmm": "failed"}}}
    found = {"glmm": ["0.0.1", "0.0.2", pinned]}
    first = release_league.write_summary(tmp_path, found, pinned_league=old_league)
    for version in ("0.0.1", "0.0.2"):  # committed: the records stay behind
        shutil.rmtree(tmp_path / "glmm" / version / "records")
    new_league = {"implementations": [{"name": "glmm", "version": pinned, "agreed": 2}],
                  "cases": {"a": {"glmm": "agreed"}, "b": {"glmm": "agreed"}}}
    again = release_league.write_summary(tmp_path, found, pinned_league=new_league)
    older, latest = again["peers"]["glmm"]["changes"]
    assert older == first["peers"]["glmm"]["changes"][0]
    assert older["counts"] == {"moved within tolerance": 1, "regressed": 1}
    assert again["peers"]["glmm"]["runs"]["0.0.2"]["kept_records"] is True
    assert {c["case"]: c["change"] for c in latest["cases"]} == {"a": "same verdict",
                                                                 "b": "fixed"}


def test_a_release_whose_run_failed_is_listed_with_why(tmp_path: Path) -> None:
    (tmp_path / "glmm" / "0.5.0").mkdir(parents=True)
    (tmp_path / "glmm" / "0.5.0" / "error.txt").write_text("the harness run wrote no results")
    _release_run(tmp_path, "0.6.0", {"a": "agreed"}, {"a": 10.0})
    summary = release_league.write_summary(
        tmp_path, {"glmm": ["0.5.0", "0.6.0"]},
        not_installable={"glmm": {"0.4.0": "installing glmm failed"}})
    assert summary["peers"]["glmm"]["changes"] == []  # one release ran: nothing to compare
    assert "run failed" in release_league.releases_markdown(summary)
    page = (tmp_path / "index.html").read_text()
    assert "glmm 0.4.0: installing glmm failed" in page and "run failed" in page


def test_the_league_page_shows_the_releases_of_its_version_axis(tmp_path: Path) -> None:
    league = {"implementations": [{"name": "glmm", "version": "0.6.1", "agreed": 1,
                                   "disagreed": 0, "candidate_better": 0, "failed": 0,
                                   "not_expressible": 0, "findings": []}],
              "cases": {"a": {"glmm": "agreed"}}}
    ecosystem.write_league(league, tmp_path)
    assert "Releases" not in (tmp_path / "index.html").read_text()  # no axis: no section
    before = (tmp_path / "league.json").read_text()
    axis = tmp_path / ecosystem.VERSIONS_DIR
    _release_run(axis, "0.6.0", {"a": "failed"}, {"a": 10.0})
    _release_run(axis, "0.6.1", {"a": "agreed"}, {"a": 10.0})
    release_league.write_summary(axis, {"glmm": ["0.6.0", "0.6.1"]})
    page = (tmp_path / "index.html").read_text()
    assert "<h2>Releases</h2>" in page and "versions/index.html" in page
    assert "1 fixed" in page
    assert (tmp_path / "league.json").read_text() == before  # the table itself is untouched


def test_a_failed_build_is_said_shortly() -> None:
    text = ("installing mixedlm failed (exit code 1): /venv/bin/uv pip install -q mixedlm==1.1.0"
            "\n\n  Caused by:\n    download of config.json failed\n  Caused by:\n    [6] Could "
            "not resolve hostname (Could not resolve host: index.crates.io)\n  Error: command "
            "['maturin', 'pep517', 'build-wheel'] returned non-zero exit status 1")
    why = release_league._build_failure(text)
    assert why.startswith("installing mixedlm failed (exit code 1): [6] Could not resolve")
    assert "index.crates.io" in why and "no wheel of this release installs here" in why
    assert "uv pip install" not in why


def test_a_fit_that_failed_on_either_side_leaves_the_verdicts(tmp_path: Path) -> None:
    old = baseline.Baseline(tmp_path / "old", {})
    new = baseline.Baseline(tmp_path / "new", {})
    baseline.save_record(old.directory, _record("a", 10.0, "1", error="IndexError: list"))
    baseline.save_record(new.directory, _record("a", 10.0, "2", error="IndexError: other"))
    found = release_diff.compare_case("a", "glmm", "failed", "failed", old, new)
    assert found == {"case": "a", "change": "same verdict", "old": "failed", "new": "failed"}
    summary = {"peers": {"p": {"releases": ["1", "2"], "changes": [
        {"to": "2", "counts": {}}], "runs": {v: {"counts": dict.fromkeys(
            release_league.COUNTS, 0)} for v in ("1", "2")}}}}
    assert "no case expressible in both" in release_league.releases_markdown(summary)
