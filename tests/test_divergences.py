"""The divergence registry on hand-made rows: covered, grown, unregistered, stale; its
validation (one test per kind of error, each naming the entry); and the shipped registry."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from harness.core.catalog import load_catalog
from harness.core.compare import Row
from harness.core.divergences import (
    QUANTITIES,
    Entry,
    Judgement,
    Registry,
    RegistryError,
    default_registry_path,
    load_registry,
)

CASES = ["sim_a-slopes-REML", "sim_a-slopes-ML", "sim_b-intercept-ML"]
REASON = "the candidate stops at an interior point above the boundary optimum"


def _write(tmp_path: Path, entries: list[dict] | None, **top: object) -> Path:
    doc: dict = dict(top)
    if entries is not None:
        doc["divergences"] = entries
    path = tmp_path / "divergences.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _entry(**changes: object) -> dict:
    e = {"case": "sim_a-slopes-REML", "impl": "cand", "quantity": "objective", "size": 1.0,
         "direction": "higher", "reason": REASON}
    e.update(changes)
    return {k: v for k, v in e.items() if v is not _DROP}


_DROP = object()


def _registry(tmp_path: Path, *entries: dict) -> Registry:
    return load_registry(_write(tmp_path, list(entries)), CASES)


def _row(name: str, difference: float | None, ok: bool | None = False,
         allowed: float | None = 0.01, note: str = "") -> Row:
    ref = 10.0
    cand = None if difference is None else ref + difference
    return Row(name, ref, cand, difference, allowed, ok, note)


# ---- judging ------------------------------------------------------------------------------


def test_failing_row_within_twice_its_size_is_covered(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(size=1.0))
    for diff in (0.3, 1.0, 2.0):  # 2.0 is exactly 2 x size: still covered
        j = reg.judge("sim_a-slopes-REML", "cand", [_row("objective", diff)])
        assert j.ok and j.registered, j.message()
        assert [(r.name, e.index) for r, e in j.covered] == [("objective", 0)]
        assert not (j.grown or j.unregistered or j.stale)
        assert j.message() == ""


def test_rows_within_tolerance_need_no_entry(tmp_path: Path) -> None:
    reg = _registry(tmp_path)
    rows = [_row("objective", 0.001, ok=True), _row("sigma", None, ok=None, note="not reported")]
    j = reg.judge("sim_a-slopes-REML", "cand", rows)
    assert j.ok and not j.registered  # nothing failed, nothing registered: a plain pass


def test_beyond_twice_the_size_has_grown(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(quantity="fixef_se[x]", size=0.0012))
    diff = 2 * 0.0012 * 1.01
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("fixef_se[x]", diff)])
    assert not j.ok and not j.registered
    assert [(r.name, e.index) for r, e in j.grown] == [("fixef_se[x]", 0)]
    assert not j.covered and not j.unregistered and not j.stale  # it fired, so not stale
    msg = j.message()
    assert msg.startswith("fixef_se[x]: registered divergence grew: |difference| ")
    assert f"> 2 x registered {0.0012:g}" in msg and REASON in msg


def test_direction_mismatch_is_unregistered_and_the_entry_is_stale(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(direction="higher"))
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("objective", -0.5)])
    assert [r.name for r in j.unregistered] == ["objective"]
    assert [e.index for e in j.stale] == [0] and not j.covered and not j.ok
    msg = j.message()
    assert "objective: unregistered disagreement (candidate - reference = -0.5" in msg
    assert "registers it higher" in msg


def test_lower_and_either_directions(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(quantity="loglik", direction="lower"),
                    _entry(quantity="sigma", direction="either"))
    rows = [_row("loglik", -0.5), _row("sigma", 0.5)]
    assert reg.judge("sim_a-slopes-REML", "cand", rows).registered
    rows = [_row("loglik", -0.5), _row("sigma", -0.5)]
    assert reg.judge("sim_a-slopes-REML", "cand", rows).registered
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("loglik", 0.5), _row("sigma", 0.5)])
    assert [r.name for r in j.unregistered] == ["loglik"] and [e.quantity for e in j.stale] == [
        "loglik"]


def test_a_row_without_a_difference_is_covered_only_by_either(tmp_path: Path) -> None:
    missing = _row("var[g,x]", None, note="missing")
    reg = _registry(tmp_path, _entry(quantity="var[g,x]", direction="higher"))
    j = reg.judge("sim_a-slopes-REML", "cand", [missing])
    assert j.unregistered == [missing] and len(j.stale) == 1
    assert "candidate - reference = none" in j.message() and "missing" in j.message()
    reg = _registry(tmp_path, _entry(quantity="var[g,x]", direction="either"))
    j = reg.judge("sim_a-slopes-REML", "cand", [missing])
    assert j.registered and j.covered[0][0] is missing


@pytest.mark.parametrize("difference", [0.0, float("nan")])
def test_a_difference_without_sign_is_covered_only_by_either(tmp_path: Path,
                                                             difference: float) -> None:
    # e.g. a fixed effect whose reference SE is missing has no allowed difference: it fails
    row = _row("fixef[x]", difference, allowed=None)
    for direction in ("higher", "lower"):
        reg = _registry(tmp_path, _entry(quantity="fixef[x]", direction=direction))
        assert reg.judge("sim_a-slopes-REML", "cand", [row]).unregistered == [row]
    reg = _registry(tmp_path, _entry(quantity="fixef[x]", direction="either"))
    assert reg.judge("sim_a-slopes-REML", "cand", [row]).registered


def test_failing_row_without_entry_is_unregistered(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(quantity="objective"))
    rows = [_row("objective", 0.5), _row("fixef[x]", 0.21, allowed=0.0023)]
    j = reg.judge("sim_a-slopes-REML", "cand", rows)
    assert [r.name for r in j.unregistered] == ["fixef[x]"] and len(j.covered) == 1
    assert not j.ok and not j.registered
    assert j.message() == ("fixef[x]: unregistered disagreement (candidate - reference = "
                           "+0.21, allowed 0.0023)")


def test_nothing_registered_for_another_impl_or_case(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry())
    for case, impl in (("sim_a-slopes-REML", "other"), ("sim_a-slopes-ML", "cand")):
        assert reg.entries_for(case, impl) == []
        j = reg.judge(case, impl, [_row("objective", 0.5)])
        assert len(j.unregistered) == 1 and not j.stale  # the entry is not for this item


def test_entry_that_matched_nothing_is_stale(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(quantity="objective"), _entry(quantity="sigma",
                                                                   direction="lower"))
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("objective", 0.5),
                                                _row("sigma", -0.3, ok=True)])
    assert [e.quantity for e in j.stale] == ["sigma"] and not j.ok and not j.registered
    assert j.message() == (f"entry 1 (sim_a-slopes-REML, cand, sigma) stopped firing: fixed? "
                           f"remove the entry from {tmp_path / 'divergences.yaml'}")
    # no failing rows at all: every entry is stale
    j = reg.judge("sim_a-slopes-REML", "cand", [])
    assert [e.index for e in j.stale] == [0, 1]


def test_case_glob_matches_several_cases(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(case="sim_a-slopes-*"))
    assert len(reg.entries_for("sim_a-slopes-REML", "cand")) == 1
    assert len(reg.entries_for("sim_a-slopes-ML", "cand")) == 1
    assert reg.entries_for("sim_b-intercept-ML", "cand") == []
    j = reg.judge("sim_a-slopes-ML", "cand", [])
    assert "entry 0 (sim_a-slopes-*, cand, objective) stopped firing on sim_a-slopes-ML" in (
        j.message())


def test_quantity_glob_with_literal_brackets(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(quantity="corr[*]", direction="either"),
                    _entry(quantity="fixef_se[x]"))
    rows = [_row("corr[g,(Intercept),x]", 0.2), _row("corr[h,(Intercept),z]", -0.1),
            _row("fixef_se[x]", 0.5)]
    j = reg.judge("sim_a-slopes-REML", "cand", rows)
    assert j.registered and [e.index for _, e in j.covered] == [0, 0, 1]
    # brackets are literal, not fnmatch character classes: fixef_se[x] is not "fixef_sex",
    # and does not match fixef_se[xz]
    for name in ("fixef_sex", "fixef_se[xz]", "fixef[x]"):
        j = reg.judge("sim_a-slopes-REML", "cand", [_row(name, 0.5)])
        assert [r.name for r in j.unregistered] == [name]


def test_every_matching_entry_fires_and_the_row_grows_past_all_of_them(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(quantity="theta[*]", size=0.1),
                    _entry(quantity="theta[0]", size=0.5))
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("theta[0]", 0.9)])
    assert not j.stale and not j.grown and [e.index for _, e in j.covered] == [1]
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("theta[0]", 2 * 0.5 + 0.01)])
    assert [e.index for _, e in j.grown] == [1]  # paired with the largest registered size


def test_judgement_travels_as_json(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _entry(), _entry(quantity="sigma"))
    j = reg.judge("sim_a-slopes-REML", "cand", [_row("objective", 0.5), _row("fixef[x]", 0.1)])
    d = json.loads(json.dumps(j.to_dict()))
    assert d["ok"] is False and d["registered"] is False and d["message"] == j.message()
    assert d["covered"][0]["row"]["name"] == "objective"
    assert d["covered"][0]["entry"]["index"] == 0 and d["covered"][0]["entry"]["size"] == 1.0
    assert [r["name"] for r in d["unregistered"]] == ["fixef[x]"]
    assert [e["quantity"] for e in d["stale"]] == ["sigma"] and d["grown"] == []


def test_judgement_defaults() -> None:
    j = Judgement("c", "i")
    assert j.ok and not j.registered and j.message() == ""


# ---- validation ---------------------------------------------------------------------------


def _error(tmp_path: Path, entries: list, match: str, **top: object) -> None:
    with pytest.raises(RegistryError, match=match):
        load_registry(_write(tmp_path, entries, **top), CASES)


def test_error_names_the_entry_for_an_unknown_case_glob(tmp_path: Path) -> None:
    _error(tmp_path, [_entry(), _entry(case="nosuch-*")],
           r"entry 1 \(case 'nosuch-\*', impl cand, quantity 'objective'\): matches no "
           r"catalog case")


def test_error_for_an_unknown_quantity(tmp_path: Path) -> None:
    _error(tmp_path, [_entry(quantity="fixed[x]")],
           r"entry 0 \(case 'sim_a-slopes-REML', impl cand, quantity 'fixed\[x\]'\): unknown "
           r"quantity 'fixed'")
    _error(tmp_path, [_entry(quantity="*")], r"entry 0 .*unknown quantity '\*'")
    _error(tmp_path, [_entry(quantity="fixef_se[x")], r"entry 0 .*bracket must be closed")
    _error(tmp_path, [_entry(quantity="fixef_se[]")], r"entry 0 .*bracket must be closed")


def test_every_listed_quantity_is_accepted(tmp_path: Path) -> None:
    names = [q if q in ("sigma", "loglik", "objective", "consistency.objective",
                        "consistency.loglik", "consistency.sigma") else f"{q}[*]"
             for q in QUANTITIES]
    reg = load_registry(_write(tmp_path, [_entry(quantity=n) for n in names]), CASES)
    assert [e.quantity for e in reg.entries] == names


def test_error_for_a_bad_direction(tmp_path: Path) -> None:
    _error(tmp_path, [_entry(direction="up")],
           r"entry 0 \(case 'sim_a-slopes-REML', impl cand, quantity 'objective'\): direction "
           r"'up' must be one of higher, lower, either")


def test_error_for_a_missing_or_empty_reason(tmp_path: Path) -> None:
    _error(tmp_path, [_entry(reason=_DROP)],
           r"entry 0 \(case 'sim_a-slopes-REML', .*\): missing required field\(s\) \['reason'\]")
    _error(tmp_path, [_entry(reason="   ")], r"entry 0 .*reason must be non-empty text")
    _error(tmp_path, [_entry(reason=3)], r"entry 0 .*reason must be non-empty text")


@pytest.mark.parametrize("size", [0, -0.5, float("inf"), "big", True])
def test_error_for_a_size_not_above_zero(tmp_path: Path, size: object) -> None:
    _error(tmp_path, [_entry(size=size)],
           r"entry 0 \(case 'sim_a-slopes-REML', impl cand, quantity 'objective'\): size ")


def test_error_for_an_unknown_key(tmp_path: Path) -> None:
    _error(tmp_path, [_entry(), _entry(quantity="sigma", tolerance=0.1)],
           r"entry 1 \(case 'sim_a-slopes-REML', impl cand, quantity 'sigma'\): unknown "
           r"key\(s\) \['tolerance'\]")
    _error(tmp_path, [_entry()], r"unknown top-level key\(s\) \['extra'\]", extra=1)


def test_error_for_other_malformed_entries(tmp_path: Path) -> None:
    _error(tmp_path, ["objective"], r"entry 0 \(str 'objective'\): an entry must be a mapping")
    _error(tmp_path, [_entry(impl="")], r"entry 0 .*impl must be non-empty text")
    _error(tmp_path, [_entry(), _entry()], r"entry 1 .*duplicates entry 0")
    _error(tmp_path, None, r"'divergences' must be a list", divergences={"a": 1})
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(tmp_path / "nosuch.yaml", CASES)
    bad = tmp_path / "bad.yaml"
    bad.write_text("divergences: [\n")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(bad, CASES)


def test_an_empty_or_missing_list_is_valid(tmp_path: Path) -> None:
    for text in ("", "divergences:\n", "divergences: []\n", "# only a comment\n"):
        path = tmp_path / "d.yaml"
        path.write_text(text)
        reg = load_registry(path, CASES)
        assert len(reg) == 0 and reg.entries_for("sim_a-slopes-REML", "cand") == []


def test_entries_carry_index_and_path(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(textwrap.dedent(f"""\
        divergences:
          - case: sim_b-intercept-ML
            impl: mypkg.fit:fit
            quantity: "var[g,(Intercept)]"
            size: 0.0015
            direction: higher
            reason: >-
              {REASON}
        """))
    (e,) = load_registry(path, CASES).entries
    assert e == Entry(0, str(path), "sim_b-intercept-ML", "mypkg.fit:fit", "var[g,(Intercept)]",
                      0.0015, "higher", REASON, row=0)
    assert e.label() == "entry 0 (sim_b-intercept-ML, mypkg.fit:fit, var[g,(Intercept)])"


# ---- the shipped registry -----------------------------------------------------------------


def test_shipped_registry_loads_against_the_shipped_catalog() -> None:
    assert default_registry_path().name == "divergences.yaml"
    ids = {c.id for c in load_catalog()}
    reg = load_registry(default_registry_path(), ids)
    assert len(reg) > 0
    certified = {c.id for c in load_catalog() if "certified" in c.tags}  # lme4 a candidate
    # Gamma and inverse Gaussian: lme4 judged against the best known
    # (harness.core.judge.scale_family)
    best_known = {c.id for c in load_catalog() if c.family in ("Gamma", "inverse.gaussian")}
    for e in reg.entries:
        assert e.case in ids, f"{e.label()}: not an existing case id"
        # the reference is not judged, except on a certified case (judged against the truth)
        # and on a case judged against the best known over lme4, glmmTMB and mixedref
        assert e.impl not in ("lme4", "lme4-recorded") or e.case in certified | best_known, \
            e.label()
        assert len(e.reason.split()) >= 10, f"{e.label()}: reason too thin"
    # a finding per cause: each with its evidence (numbers), each row knows its finding
    assert reg.findings and all(e.finding in reg.findings for e in reg.entries)
    for f in reg.findings.values():
        assert any(ch.isdigit() for ch in f.evidence), f"finding {f.id}: evidence without numbers"
    # the registry replaces the catalog's xfails: no case is both xfailed and registered
    xfailed = {(c.id, impl) for c in load_catalog() for impl in c.xfail}
    assert not xfailed & {(e.case, e.impl) for e in reg.entries}


def test_shipped_registry_covers_its_own_sizes() -> None:
    # each entry's own size, as a row, is covered by it (the rule applied to the file's data)
    ids = [c.id for c in load_catalog()]
    reg = load_registry(None, ids)
    for e in reg.entries:
        sign = -1.0 if e.direction == "lower" else 1.0
        j = reg.judge(e.case, e.impl, [_row(e.quantity, sign * e.size)])
        assert (_row(e.quantity, sign * e.size), e) in j.covered, e.label()


def test_a_plugin_comparators_quantity_can_be_registered(tmp_path: Path) -> None:
    path = _write(tmp_path, [_entry(quantity="mine[x]")])
    with pytest.raises(RegistryError, match="unknown quantity 'mine'"):
        load_registry(path, CASES)  # the built-in comparators do not write it
    reg = load_registry(path, CASES, quantities=("fixef", "mine"))
    assert [e.quantity for e in reg.entries] == ["mine[x]"]
