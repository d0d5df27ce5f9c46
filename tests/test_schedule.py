"""The -n N scheduler (harness/pytest_plugin/schedule.py): its work units, and the heaviest unit
first to whichever worker asks, driven here as pytest-xdist's controller drives it (add the
nodes and their collections, schedule, mark items complete) with stand-in workers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("xdist")

from harness.pytest_plugin.schedule import case_scheduling, load_durations, unit_of  # noqa: E402

CAT = "harness/catalog.yaml"


class Worker:
    """What the scheduler calls on an xdist worker controller: the items sent, in order."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


class Config:
    """The options LoadScopeScheduling reads: two workers, no reordering of its own."""

    def __init__(self) -> None:
        self.option = SimpleNamespace(loadscopereorder=False)

    def getvalue(self, name: str) -> list[str]:
        assert name == "tx"
        return ["2*popen"]


def test_units_are_a_catalog_case_or_a_module() -> None:
    assert unit_of(f"{CAT}::Dyestuff-intercept-ML[mixedref-vs-lme4]") == \
        unit_of(f"{CAT}::Dyestuff-intercept-ML[lme4-vs-recorded]") == \
        f"{CAT}::Dyestuff-intercept-ML"
    assert unit_of(f"{CAT}::Dyestuff-intercept-REML[mixedref-vs-lme4]") != \
        unit_of(f"{CAT}::Dyestuff-intercept-ML[mixedref-vs-lme4]")
    assert unit_of("tests/test_a.py::test_x[1]") == unit_of("tests/test_a.py::test_y") == \
        "tests/test_a.py"
    assert unit_of("tests/test_a.py::TestK::test_x") == "tests/test_a.py::TestK"


def _run(collection: list[str], durations: dict[str, float] | None) -> list[list[str]]:
    """Schedule ``collection`` on two stand-in workers that finish their items one at a time
    in turn; the node ids each ran, in order."""
    sched = case_scheduling(Config(), None, durations)
    workers = [Worker("gw0"), Worker("gw1")]
    for w in workers:
        sched.add_node(w)
    for w in workers:
        sched.add_node_collection(w, collection)
    sched.schedule()
    done = {w: 0 for w in workers}
    while any(done[w] < len(w.sent) for w in workers):
        for w in workers:
            if done[w] < len(w.sent):
                sched.mark_test_complete(w, w.sent[done[w]])
                done[w] += 1
    return [[collection[i] for i in w.sent] for w in workers]


COLLECTION = ([f"tests/test_light{k}.py::test_{j}" for k in range(6) for j in range(3)]
              + [f"{CAT}::big-REML[mixedref-vs-lme4]", f"{CAT}::big-REML[lme4-vs-recorded]",
                 "tests/test_sessions.py::test_a", "tests/test_sessions.py::test_b"])
DURATIONS = {f"{CAT}::big-REML[mixedref-vs-lme4]": 30.0, f"{CAT}::big-REML[lme4-vs-recorded]": 5.0,
             "tests/test_sessions.py::test_a": 20.0, "tests/test_sessions.py::test_b": 12.0,
             **{n: 0.1 for n in COLLECTION if "light" in n}}


def test_the_two_heaviest_units_start_first_one_on_each_worker() -> None:
    ran = _run(COLLECTION, DURATIONS)
    assert sorted(n for r in ran for n in r) == sorted(COLLECTION)  # each item once
    firsts = {r[0] for r in ran}
    assert firsts == {f"{CAT}::big-REML[mixedref-vs-lme4]", "tests/test_sessions.py::test_a"}
    for r in ran:  # a unit stays whole on one worker, its items in collection order
        big = [n for n in r if "big-REML" in n]
        assert big in ([], [f"{CAT}::big-REML[mixedref-vs-lme4]",
                             f"{CAT}::big-REML[lme4-vs-recorded]"])
        sessions = [n for n in r if "test_sessions" in n]
        assert sessions in ([], ["tests/test_sessions.py::test_a",
                                 "tests/test_sessions.py::test_b"])


def test_without_durations_units_go_out_in_collection_order() -> None:
    ran = _run(COLLECTION, None)
    assert {r[0] for r in ran} == {"tests/test_light0.py::test_0", "tests/test_light1.py::test_0"}


def _config(tmp_path: Path, value: str) -> SimpleNamespace:
    return SimpleNamespace(rootpath=tmp_path, getini=lambda name: value)


def test_durations_file_is_read_and_a_bad_one_is_a_usage_error(tmp_path: Path) -> None:
    assert load_durations(_config(tmp_path, "")) is None
    (tmp_path / "d.json").write_text(json.dumps({"tests/test_a.py::test_x": 1.5}))
    assert load_durations(_config(tmp_path, "d.json")) == {"tests/test_a.py::test_x": 1.5}
    with pytest.raises(pytest.UsageError, match="cannot read"):
        load_durations(_config(tmp_path, "missing.json"))
    (tmp_path / "bad.json").write_text(json.dumps({"tests/test_a.py::test_x": "slow"}))
    with pytest.raises(pytest.UsageError, match="node id: seconds"):
        load_durations(_config(tmp_path, "bad.json"))


def test_the_suite_names_its_durations_file() -> None:
    """pyproject.toml's harness_durations names a file that exists and holds this suite's
    node ids (a rename of the file or of the tests would silently lose the order)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    ini = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    doc = json.loads((root / ini["harness_durations"]).read_text())
    assert any(k.startswith("tests/") for k in doc) and any(k.startswith(CAT) for k in doc)
