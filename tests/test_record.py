"""One typed fit record: the dataclass, the JSON Schema written from it (harness/
record.schema.json), and both languages validating against that one file."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from harness.adapters import Lme4Recorded
from harness.core import record
from harness.core.catalog import load_catalog

ROOT = Path(__file__).resolve().parent.parent


def test_the_schema_file_is_the_one_written_from_the_dataclass() -> None:
    assert json.loads(record.SCHEMA_PATH.read_text()) == record.json_schema(), \
        "regenerate it: python -m harness.core.record"
    assert list(record.FIELDS) == record.json_schema()["required"]


def test_every_recorded_lme4_answer_follows_the_schema() -> None:
    recorded = Lme4Recorded()  # one parse of the file for every case
    for case in load_catalog():
        rec = recorded.fit(case, None)
        assert record.validate(rec) == [], case.id


def test_the_validator_names_what_is_wrong() -> None:
    rec = record.empty_record("x", "c")
    rec.update(sigma="big", bogus=1, varcorr=[{"grp": "g"}])
    problems = record.validate(rec)
    assert "record.sigma: expected number or null, got str" in problems
    assert "record: unknown field 'bogus'" in problems
    assert "record.varcorr[0]: missing field 'vcov'" in problems


def test_an_undefined_correlation_is_null_as_lme4s_nan() -> None:
    # lme4: as.data.frame(VarCorr(m)) gives sdcor NaN for the covariance of two zero SDs
    rows = record.varcorr_rows([("g", ["(Intercept)", "x"], [[0.0, 0.0], [0.0, 0.0]])], 1.0)
    assert rows[2] == {"grp": "g", "var1": "(Intercept)", "var2": "x", "vcov": 0.0,
                       "sdcor": None}
    raw = {"varcorr": [dict(rows[2], sdcor=math.nan)]}
    rec = record.normalize_record(raw, "x", "c")
    assert rec["error"] is None and rec["varcorr"][0]["sdcor"] is None


@pytest.mark.needs_r
def test_the_r_side_validates_its_records_against_the_same_file(tmp_path: Path) -> None:
    script = tmp_path / "check.R"
    script.write_text('''
suppressMessages(library(lme4))
source("r_scripts/record_schema.R"); source("r_scripts/lmer_record.R")
rec <- lmer_record(sleepstudy, "Reaction ~ Days + (Days | Subject)", TRUE, "s")
cat(length(validate_record(rec)), "\\n")
rec$extra <- list(icc = 0.5, parts = list(1, "a"))
cat(length(validate_record(rec)), "\\n")
rec$bogus <- 1
rec$sigma <- "a"
cat(validate_record(rec), sep = "\\n")
''')
    try:
        out = subprocess.run(["Rscript", str(script)], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("Rscript not installed")
    lines = out.stdout.splitlines()
    assert lines[0].strip() == "0", out.stderr
    assert lines[1].strip() == "0", "a plugin quantity under extra is part of the record"
    assert lines[2:] == ["record.sigma: expected number or null, got character",
                         "record: unknown field 'bogus'"]


@pytest.mark.parametrize("raw, words", [
    ({"fixef": [1.0, 2.0]}, "record field 'fixef' is a list, expected a mapping"),
    ({"varcorr": {"grp": "g"}}, "record field 'varcorr' is a dict, expected a list of rows"),
    ([1, 2], "the fit returned a list, not a mapping"),
])
def test_a_malformed_record_is_refused_in_one_line_naming_the_field(raw, words) -> None:
    with pytest.raises(record.MalformedRecord, match=words.replace("(", r"\(")):
        record.normalize_record(raw, "x", "c")


def test_plugin_quantities_live_under_extra_and_unknown_top_level_fields_are_refused() -> None:
    """The record's open namespace: any JSON under ``extra`` (numpy values made plain), while
    a field the record does not define is still refused, by the normalizer and the schema."""
    import numpy as np

    raw = {"sigma": 1.0, "extra": {"icc": np.float64(0.25), "curve": np.arange(3.0),
                                   "nested": {"a": [1, None]}}}
    rec = record.normalize_record(raw, "x", "c")
    assert rec["error"] is None
    assert rec["extra"] == {"icc": 0.25, "curve": [0.0, 1.0, 2.0], "nested": {"a": [1, None]}}
    assert record.validate(rec) == []
    assert record.normalize_record({}, "x", "c")["extra"] == {}
    with pytest.raises(record.MalformedRecord, match="unknown fields \\['icc'\\]"):
        record.normalize_record({"icc": 0.25}, "x", "c")
    assert "record: unknown field 'icc'" in record.validate(dict(rec, icc=0.25))
    with pytest.raises(record.MalformedRecord, match="record field 'extra' is a list"):
        record.normalize_record({"extra": [0.25]}, "x", "c")


def test_a_plugin_quantity_that_is_not_json_is_named() -> None:
    rec = record.normalize_record({"extra": {"icc": float("nan"), "fit": object()}}, "x", "c")
    assert rec["error"].startswith("non-finite values returned: extra['icc']=nan")
    assert "extra['fit']=<object" in rec["error"] and rec["extra"] == {}
