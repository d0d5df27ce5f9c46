"""Bad input named (mixedref.frontend.resolution): a response whose spread float64 cannot hold at
its
level is warned about with the numbers; a response merely far from 0 is neither that nor
"reproduced exactly by the fixed effects"."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedref
from harness.core.datasets import load_dataset
from mixedref.errors import DegenerateResponseWarning
from mixedref.frontend.resolution import ResponseResolutionWarning, resolution_message

FORMULA = "Response ~ 1 + (1 | Treatment)"


def _warnings(data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mixedref.lmer(FORMULA, data)
    return caught


@pytest.mark.parametrize("name", ["SmLs07", "SmLs08", "SmLs09"])
def test_a_spread_of_0_1_at_1e12_is_named_with_its_numbers(name):
    """NIST's hardest sets: sd 0.1 at 1e12, where doubles are 1.2e-4 apart: ~3 digits held."""
    caught = _warnings(load_dataset(name))
    msgs = [str(w.message) for w in caught if w.category is ResponseResolutionWarning]
    assert len(msgs) == 1
    assert "level of 1e+12" in msgs[0] and "spaced 0.000122" in msgs[0]
    assert "3.0 significant digits" in msgs[0] or "3.1 significant digits" in msgs[0]


@pytest.mark.parametrize("name", ["SmLs06", "AtmWtAg", "SiRstv"])
def test_responses_float64_holds_well_are_not_warned_about(name):
    """SmLs06 (sd 0.1 at 1e6: 8.9 digits held) and the others: no warning of either kind."""
    caught = _warnings(load_dataset(name))
    assert not [w for w in caught if w.category in (ResponseResolutionWarning,
                                                     DegenerateResponseWarning)]


def test_a_far_response_is_not_called_degenerate():
    """SmLs07 varies (3 digits of its variation held); the old rule (residual below 1e-12 of
    the response's size) called it reproduced exactly by the fixed effects."""
    caught = _warnings(load_dataset("SmLs07"))
    assert not [w for w in caught if w.category is DegenerateResponseWarning]


def test_the_threshold_is_digits_of_the_spread_at_the_level():
    rng = np.random.default_rng(3)
    X = np.ones((200, 1))
    noise = rng.normal(size=200)
    assert resolution_message(1e3 + noise, X) is None  # ~16 digits held
    assert resolution_message(1e9 + noise, X) is None  # 6.7 digits: enough
    msg = resolution_message(1e12 + noise, X, "y")  # 3.9 digits
    assert msg is not None and "'y' varies by" in msg and "3.9 significant digits" in msg


@pytest.mark.parametrize("name", ["SmLs01", "SmLs07"])
def test_the_builds_residual_spares_a_second_least_squares(name, monkeypatch):
    """check_response reads the residual the model build computed (ModelFrame.
    response_resid_ss): a clearly resolved response (SmLs01) is passed without its own least
    squares; a coarse one (SmLs07) still gets resolution_message's text, from its own."""
    from mixedref.frontend import resolution
    from mixedref.frontend.design import build_model

    model = build_model(FORMULA, load_dataset(name))
    assert model.response_resid_ss is not None
    want = resolution_message(model.y, model.X, "Response")
    calls = []
    lstsq = np.linalg.lstsq
    monkeypatch.setattr(resolution.np.linalg, "lstsq",
                        lambda *a, **k: calls.append(1) or lstsq(*a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = resolution.check_response(model)
    assert got == want
    assert (want is None) == (not calls)
