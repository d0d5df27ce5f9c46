"""The stress grid (harness/commands/grid/): its cells, their data and truth, the recording of
lme4's
answers (harness/references/grid_lme4.json.gz) and the status map (harness/commands/report/
status_map.py). The grid itself runs only through ``./dev grid``, never in ``pytest tests`` or
``pytest harness``."""

from __future__ import annotations

import base64
import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from harness.commands import grid
from harness.commands.report import status_map

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def all_cells():
    return grid.cells()


@pytest.fixture(scope="module")
def hashes(all_cells):
    return {c.id: grid.data_sha256(grid.generate(c)[0]) for c in all_cells}


@pytest.fixture(scope="module")
def recording():
    if not grid.RECORDING.is_file():
        pytest.fail(f"no grid recording at {grid.RECORDING} (r_scripts/record_grid.R)")
    return grid.read_recording()


def sample(cells, every=47):
    """A few cells of every design (every 47th, plus each design's first and last)."""
    out = {c.id: c for c in cells[::every]}
    for d in grid.DESIGNS:
        mine = [c for c in cells if c.design == d]
        out.update({mine[0].id: mine[0], mine[-1].id: mine[-1]})
    return list(out.values())


def test_grid_has_at_least_1000_distinct_seeded_cells(all_cells):
    assert len(all_cells) >= 1000
    assert len({c.id for c in all_cells}) == len(all_cells)
    assert len({c.dataset for c in all_cells}) == len(all_cells)
    assert len({c.seed for c in all_cells}) == len(all_cells)
    for axis, levels in (("design", grid.DESIGNS), ("size", ("S", "M", "L")),
                         ("snr", grid.SNR), ("boundary", grid.BOUNDARY),
                         ("method", ("REML", "ML"))):
        assert {getattr(c, axis) for c in all_cells} == set(levels), axis
    for c in all_cells:
        assert grid.cell_of(c.id) == c
    assert grid.cell_of("sleepstudy-slopes-REML") is None


def test_regenerating_a_cell_gives_identical_data(all_cells):
    for c in sample(all_cells):
        a, ta = grid.generate(c)
        b, tb = grid.generate(c)
        assert grid.data_sha256(a) == grid.data_sha256(b), c.id
        assert ta == tb
    one = all_cells[0]
    other = grid.Cell(one.design, one.size, one.snr, one.boundary, one.method, one.rep + 1)
    assert grid.data_sha256(grid.generate(one)[0]) != grid.data_sha256(grid.generate(other)[0])


def test_every_cell_has_its_truth(all_cells):
    for c in sample(all_cells, every=13):
        df, tr = grid.generate(c)
        assert tr["beta"]["x"] == pytest.approx(c.slope)
        groups = {r["grp"] for r in tr["varcorr"]}
        assert set(df.columns) >= {"y", "x"}
        if c.design == "glmm":
            assert tr["family"] == "binomial" and "Residual" not in groups
            assert set(df["y"].unique()) <= {0.0, 1.0}
            assert tr["varcorr"][0]["vcov"] == pytest.approx(c.distance)
        else:
            assert tr["sigma"] == grid.SIGMA and "Residual" in groups
        if c.design == "slopes":
            (corr,) = [r["sdcor"] for r in tr["varcorr"] if r["var2"] is not None]
            assert abs(corr) == pytest.approx(1.0 - c.distance)
        elif c.design in ("intercept", "uncorrelated", "nested", "crossed"):
            varied = {"intercept": "g", "uncorrelated": "g.1", "nested": "b:a", "crossed": "b"}
            (row,) = [r for r in tr["varcorr"] if r["grp"] == varied[c.design]]
            assert row["vcov"] == pytest.approx(c.distance * grid.SIGMA ** 2)


def test_written_grid_loads_as_a_catalog(tmp_path, all_cells):
    from harness.core.catalog import load_catalog, load_data

    chosen = sample(all_cells, every=101)
    written = grid.write_grid(tmp_path, chosen)
    cases = load_catalog(tmp_path / "catalog.yaml")
    assert [c.id for c in cases] == [c.id for c in chosen]
    by_id = {c.id: c for c in chosen}
    for case in cases:
        cell = by_id[case.id]
        assert case.formula == cell.spec.formula and case.REML == (cell.method == "REML")
        assert (case.family == "binomial") == (cell.design == "glmm")
        data = load_data(case)
        assert grid.data_sha256(data) == written[case.id]
    manifest = json.loads((tmp_path / "cells.json").read_text())["cells"]
    assert set(manifest) == set(by_id)
    for cid, m in manifest.items():
        assert m["seed"] == by_id[cid].seed and m["sha256"] == written[cid]
        assert m["truth"] == grid.generate(by_id[cid])[1]


def test_recording_matches_the_grid(recording, hashes):
    assert grid.recording_problems(recording, hashes) == []
    assert recording["versions"]["lme4"] == "1.1.31"
    records = recording["records"]
    assert set(records) == set(hashes)
    failed = [cid for cid, r in records.items() if r.get("error")]
    assert len(failed) < 0.01 * len(records), failed[:5]
    for cid, r in records.items():
        assert r["case_id"] == cid
        assert r.get("error") or math.isfinite(r["objective"])


@pytest.fixture(scope="module")
def tight():
    if not grid.TIGHT_RECORDING.is_file():
        pytest.fail(f"no tight recording at {grid.TIGHT_RECORDING} "
                    "(Rscript r_scripts/record_grid.R --tight)")
    return grid.read_recording(grid.TIGHT_RECORDING)


def test_tight_recording_covers_the_glmm_cells_and_the_registered_lmm_cells(
        tight, hashes, all_cells):
    """record_grid.R --tight: every GLMM cell, and the LMM cells the grid's registry names."""
    from harness.core.divergences import rows_of

    named = {e["case"] for e in rows_of(grid.DIVERGENCES)}
    wanted = {c.id: hashes[c.id] for c in all_cells if c.design == "glmm" or c.id in named}
    assert grid.recording_problems(tight, wanted) == []
    assert set(tight["records"]) == set(wanted)
    assert tight["settings"]["tolPwrss"] == 1e-12


def test_registered_grid_divergences_are_where_lme4s_defaults_stop_short(
        tmp_path, recording, tight, all_cells):
    """Each cell of harness/grid_divergences.yaml is one where lme4's tightly converged glmer or
    lmer (record_grid.R --tight) reaches a criterion no higher than its default's, and mixedref
    agrees with that fit on every quantity: who is right, settled by lme4 itself."""
    from harness.adapters.mixedref_impl import Mixedref
    from harness.core.catalog import load_catalog, load_data
    from harness.core.compare import compare_records
    from harness.core.divergences import rows_of

    entries = rows_of(grid.DIVERGENCES)
    ids = sorted({e["case"] for e in entries})
    assert ids and {e["impl"] for e in entries} == {"mixedref"}
    grid.write_grid(tmp_path, [c for c in all_cells if c.id in ids])
    for case in load_catalog(tmp_path / "catalog.yaml"):
        default, converged = recording["records"][case.id], tight["records"][case.id]
        assert converged["objective"] <= default["objective"] + 1e-6, case.id
        fitted = Mixedref().fit(case, load_data(case))
        assert compare_records(default, fitted, case).failures, f"{case.id}: no longer diverges"
        comp = compare_records(converged, fitted, case)
        assert not comp.failures, f"{case.id}: " + comp.format_table(only_failures=True)


def test_a_stale_recording_is_refused(tmp_path, recording, hashes, all_cells):
    from harness.adapters import Lme4Recorded
    from harness.core.catalog import load_catalog

    cid = next(iter(hashes))
    other = dict(hashes, **{cid: "0" * 64})  # the data changed since the recording
    assert any("stale" in p and cid in p for p in grid.recording_problems(recording, other))
    extra = {**recording, "cases": {**recording["cases"], "grid_old-grid-ML": {}}}
    assert any("not in the grid" in p for p in grid.recording_problems(extra, hashes))
    fewer = {**recording, "records": {k: v for k, v in recording["records"].items()
                                      if k != cid}}
    assert any("not recorded" in p for p in grid.recording_problems(fewer, hashes))
    # the plugin's own per-case check (what was fitted) sees a changed formula
    chosen = [c for c in all_cells if c.id == cid]
    grid.write_grid(tmp_path, chosen)
    (case,) = load_catalog(tmp_path / "catalog.yaml")
    doc = {k: recording[k] for k in ("versions", "date")}
    doc["records"] = {cid: recording["records"][cid]}
    doc["cases"] = {cid: dict(recording["cases"][cid])}
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(doc))
    assert Lme4Recorded(path).supports(case) is None
    doc = copy.deepcopy(doc)
    doc["cases"][cid]["formula"] = "y ~ 1 + (1 | g)"
    path.write_text(json.dumps(doc))
    assert "stale" in Lme4Recorded(path).supports(case)


def _fake_case(cid, verdicts):
    comparisons, skipped, errors = {}, {}, {}
    for impl, v in verdicts.items():
        if v == "skipped":
            skipped[impl] = "not expressible"
        elif v == "error":
            errors[impl] = {"outcome": "error", "headline": "boom"}
        else:
            comparisons[impl] = {"verdict": v, "rows": [], "notes": []}
    return {"case": {"id": cid}, "implementations": ["lme4-recorded", *comparisons],
            "comparisons": comparisons, "skipped": skipped, "errors": errors}


def test_status_map_renders_for_a_small_fake_result_set(all_cells):
    ids = [c.id for c in all_cells[:6]]
    kinds = ["agreed", "disagreed", "candidate-better", "failed", "skipped", "error"]
    cases = [_fake_case(cid, {"mixedref": k, "statsmodels": kinds[-1 - i]})
             for i, (cid, k) in enumerate(zip(ids, kinds, strict=True))]
    table = status_map.statuses(cases)
    assert table[ids[0]]["mixedref"] == "agree"
    assert table[ids[1]]["mixedref"] == "fail"
    assert table[ids[2]]["mixedref"] == "candidate-better"
    assert table[ids[4]]["mixedref"] == "not run"
    assert table[ids[5]]["mixedref"] == "fail"
    assert set(status_map.implementations(cases)) == {"mixedref", "statsmodels"}
    png = status_map.figure(cases, png=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    html = status_map.section({"cases": cases})
    assert 'data-plot="status-map"' in html and "stress grid" in html
    b64 = html.split("base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(b64)[:4] == b"\x89PNG"
    # any other catalog's cases: laid out in order, no grid wording
    other = [_fake_case(f"case{i}-x-REML", {"mixedref": "agreed"}) for i in range(3)]
    html = status_map.section({"cases": other})
    assert 'data-plot="status-map"' in html and "stress grid" not in html
    assert status_map.section({"cases": []}) == ""


def test_status_map_from_plugin_entries_knows_registered_divergences():
    entries = {
        "a": {"case": "c1-x-ML", "impl": "mixedref", "outcome": "agreed"},
        "b": {"case": "c1-x-ML", "impl": "statsmodels", "outcome": "xfail"},
        "c": {"case": "c2-x-ML", "impl": "mixedref", "outcome": "disagreed"},
        "d": {"case": "c2-x-ML", "impl": "lme4", "outcome": "agreed"},  # live vs recorded
    }
    table = status_map.statuses_from_entries(entries)
    assert table == {"c1-x-ML": {"mixedref": "agree", "statsmodels": "registered divergence"},
                     "c2-x-ML": {"mixedref": "fail", "statsmodels": "not run"}}
    assert status_map.figure(table)


def test_report_page_shows_the_status_map():
    from harness.commands.report import html

    cases = [_fake_case("c1-x-ML", {"mixedref": "agreed"})]
    for c in cases:
        c.update(disagreement=False, verdict="agreed", seconds={}, crosseval={})
    page = html.render({"cases": cases, "counts": {"agreed": 1}})
    assert page.count('data-plot="status-map"') == 1


def test_default_runs_do_not_collect_the_grid():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--reference=recorded", "harness", "tests/test_grid.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "sleepstudy-slopes-REML" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert "grid_intercept" not in out.stdout


def test_status_map_reads_the_registry_s_judgement_from_the_comparison():
    """The one road (harness.core.outcome) marks a registered comparison; the map does not read
    the registry again."""
    cases = [_fake_case(cid, {"mixedref": "disagreed"}) for cid in ("c1-x-ML", "c2-x-ML")]
    cases[0]["comparisons"]["mixedref"]["registered"] = True
    assert status_map.statuses(cases) == {"c1-x-ML": {"mixedref": "registered divergence"},
                                          "c2-x-ML": {"mixedref": "fail"}}
