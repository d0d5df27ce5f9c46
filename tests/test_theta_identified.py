"""θ is compared only where it is identified (issue 22): below a zero pivot of a term's relative
Cholesky factor Λ, rotations of the later columns leave Σ = σ²ΛΛᵀ unchanged, so those entries
of θ say nothing about the fit; Σ (the varcorr rows) is still compared in full.

Checked on lme4's recorded kb07-like maximal fit (its subj term has a zero pivot at theta[4]):
a candidate whose later columns are rotated has the same Σ and agrees, with the rotated entries
shown as not identified; an identified entry that moves still fails; a pivot is zero relative
to its own column's scale, so a genuine 7.7e-5 on a column of scale 1e-4 is kept."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from harness.core.comparators.theta import ZERO_PIVOT_REL, Theta, unidentified
from harness.core.compare import AGREED, DISAGREED, compare_records
from harness.core.judge.theta import layout_from_varcorr
from harness.core.tolerance import DEFAULT
from mixedref.frontend.reterm import TermShape, split_theta

ROOT = Path(__file__).resolve().parents[1]
KB07 = "sim_kb07_maximal-maximal-ML"


def _recorded(case_id: str) -> dict:
    doc = json.loads((ROOT / "harness" / "references" / "lme4.json").read_text())
    return doc["records"][case_id]


def _rotated(record: dict, angle: float) -> dict:
    """The record with its first term's columns after the zero pivot theta[4] rotated (in the
    plane of columns 1 and 2, kept lower triangular): the same Σ, another θ."""
    layout = layout_from_varcorr(record["varcorr"])
    pieces = split_theta(np.asarray(record["theta"]), layout)
    T = layout[0].template(pieces[0])
    assert T[1, 1] == 0  # the zero pivot: column 1's rows 2, 3 and columns 2, 3 are free
    c, s = np.cos(angle), np.sin(angle)
    R = np.eye(4)
    R[1:3, 1:3] = [[c, -s], [s, c]]
    T2 = T @ R
    assert abs(T2[1, 2]) < 1e-15  # still lower triangular (column 1 is zero above row 2)
    assert np.allclose(T2 @ T2.T, T @ T.T, rtol=0, atol=1e-14)
    out = copy.deepcopy(record)
    out["impl"] = "rotated"
    out["theta"] = [*layout[0].theta_of(T2), *np.concatenate(pieces[1:])]
    return out


def _theta_rows(reference: dict, candidate: dict) -> dict:
    notes: list[str] = []
    return {r.name: r for r in Theta().rows(reference, candidate, DEFAULT, notes)}


def test_a_rotation_below_the_zero_pivot_is_not_a_disagreement() -> None:
    ref = _recorded(KB07)
    cand = _rotated(ref, 0.7)
    assert max(abs(a - b) for a, b in zip(ref["theta"], cand["theta"], strict=True)) > 0.05
    comp = compare_records(ref, cand)
    assert comp.verdict == AGREED, comp.format_table()
    rows = _theta_rows(ref, cand)
    hidden = [n for n, r in rows.items() if r.ok is None]
    assert hidden == [f"theta[{i}]" for i in range(5, 10)]
    for name in hidden:
        assert rows[name].note == "not identified: below the zero pivot theta[4] of both"
        assert rows[name].allowed is None and rows[name].reference is not None
    # everything else is compared, the pivot itself and the second term included
    assert all(rows[f"theta[{i}]"].ok for i in [*range(0, 5), *range(10, 20)])


def test_an_identified_entry_that_moves_still_fails() -> None:
    ref = _recorded(KB07)
    cand = _rotated(ref, 0.7)
    cand["theta"][2] += 0.05  # column 0 is above the pivot: identified
    rows = _theta_rows(ref, cand)
    assert rows["theta[2]"].ok is False
    assert compare_records(ref, cand).verdict == DISAGREED


def test_only_one_side_at_the_boundary_is_enough() -> None:
    ref = _recorded(KB07)
    cand = copy.deepcopy(ref)
    cand["impl"] = "cand"
    cand["theta"][4] = 1e-3  # the candidate's pivot is not zero, the reference's is
    rows = _theta_rows(ref, cand)
    assert rows["theta[6]"].note == "not identified: below the zero pivot theta[4] of the reference"
    rows = _theta_rows(cand, ref)
    assert rows["theta[6]"].note == "not identified: below the zero pivot theta[4] of the candidate"


def test_a_zero_pivot_is_relative_to_its_own_columns_scale() -> None:
    # sim_badscale3's optimum (best_known.json): columns on scales 1, 1e4 and 1e-4; the last
    # pivot, 7.7e-5, is genuine (its row's norm is 1.07e-4), next to a variance of 7.9e7
    term = [TermShape("g", ("(Intercept)", "x1", "x2"))]
    best = [0.9486, 3805.93, -4.851e-05, 8028.35, 5.573e-05, 7.711e-05]
    assert unidentified(best, term) == {}
    # lme4's own fit there has theta[5] = 0: the last column, nothing below it
    lme4 = _recorded("sim_badscale3-corr3-REML")["theta"]
    assert unidentified(lme4, term) == {}
    # a pivot a little below the threshold relative to its row is zero; a little above is not
    # (θ's order for q = 3: (0,0) (1,0) (2,0) (1,1) (2,1) (2,2); the pivot (1,1) is theta[3],
    # its row (0.3, pivot) has norm 0.3 to ~1e-9)
    assert unidentified([1.0, 0.3, 0.2, 0.9 * ZERO_PIVOT_REL * 0.3, 0.4, 1.0], term) == {
        4: 3, 5: 3}
    assert unidentified([1.0, 0.3, 0.2, 1.1 * ZERO_PIVOT_REL * 0.3, 0.4, 1.0], term) == {}
    # a pivot of 2e-7, far below lme4's absolute 1e-4, on a column of SD 3.6e-7 is genuine
    assert unidentified([1.0, 3e-7, 0.2, 2e-7, 0.4, 1.0], term) == {}


def test_the_first_zero_pivot_hides_its_column_below_it_and_every_later_column() -> None:
    term = [TermShape("g", ("a", "b", "c", "d"))]
    # theta order: (0,0) (1,0) (2,0) (3,0) | (1,1) (2,1) (3,1) | (2,2) (3,2) | (3,3)
    theta = [0.0, 0.5, 0.2, 0.1, 0.3, 0.1, 0.2, 0.4, 0.1, 0.5]
    assert unidentified(theta, term) == {k: 0 for k in range(1, 10)}
    theta = [1.0, 0.5, 0.2, 0.1, 0.3, 0.1, 0.2, 0.0, 0.1, 0.5]  # pivot at (2,2) = theta[7]
    assert unidentified(theta, term) == {8: 7, 9: 7}
    # two terms: indices are θ's, the second term's offset by the first's length
    two = [TermShape("g", ("a", "b")), TermShape("h", ("a", "b"))]
    assert unidentified([1.0, 0.5, 0.0, 0.0, 0.5, 0.2], two) == {4: 3, 5: 3}


def _drop_terms(varcorr: list) -> list:
    return [r for r in varcorr if r["grp"] != "item"]  # one term: 10 of θ's 20 entries


@pytest.mark.parametrize("change", [lambda vc: None, _drop_terms])
def test_without_a_layout_that_fits_theta_every_entry_is_compared(change) -> None:
    """No varcorr on either side, or one whose terms do not add up to θ's length: nothing to
    locate a pivot with, so every entry is compared (as before this rule)."""
    ref, cand = _recorded(KB07), _rotated(_recorded(KB07), 0.7)
    ref["varcorr"], cand["varcorr"] = change(ref["varcorr"]), change(cand["varcorr"])
    rows = _theta_rows(ref, cand)
    assert all(r.ok is not None for r in rows.values())
    assert rows["theta[7]"].ok is False
