"""One typed fit record: the dataclass, the JSON Schema written from it (harness/
record.schema.json), and both languages validating against that one file."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from harness import record
from harness.adapters import Lme4Recorded
from harness.catalog import load_catalog

ROOT = Path(__file__).resolve().parent.parent


def test_the_schema_file_is_the_one_written_from_the_dataclass() -> None:
    assert json.loads(record.SCHEMA_PATH.read_text()) == record.json_schema(), \
        "regenerate it: python -m harness.record"
    assert list(record.FIELDS) == record.json_schema()["required"]


def test_every_recorded_lme4_answer_follows_the_schema() -> None:
    for case in load_catalog():
        rec = Lme4Recorded().fit(case, None)
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
    assert lines[1] == "record.sigma: expected number or null, got character"


@pytest.mark.parametrize("raw, words", [
    ({"fixef": [1.0, 2.0]}, "record field 'fixef' is a list, expected a mapping"),
    ({"varcorr": {"grp": "g"}}, "record field 'varcorr' is a dict, expected a list of rows"),
    ([1, 2], "the fit returned a list, not a mapping"),
])
def test_a_malformed_record_is_refused_in_one_line_naming_the_field(raw, words) -> None:
    with pytest.raises(record.MalformedRecord, match=words.replace("(", r"\(")):
        record.normalize_record(raw, "x", "c")
