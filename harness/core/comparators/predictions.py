"""Predictions (lme4's ``predict(m, newdata, re.form, allow.new.levels)``) on the data's first
rows, population level and conditional, at new grouping levels, and on the catalog's prediction
grid (new covariate values and levels): one row per kind, the row furthest off standing for the
rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.core.comparators.base import Record, Row, row
from harness.core.tolerance import Tolerance

KINDS = {("NA", False, False): "population", ("NULL", False, False): "conditional",
         ("NULL", True, False): "new levels", ("NA", False, True): "grid population",
         ("NULL", False, True): "grid conditional"}


def _by_kind(rows: Sequence[Mapping[str, Any]] | None) -> dict[str, dict[int, float | None]]:
    out: dict[str, dict[int, float | None]] = {}
    for r in rows or ():
        kind = KINDS.get((str(r["re_form"]), bool(r["new_levels"]), bool(r.get("grid"))))
        if kind is not None:
            out.setdefault(kind, {})[int(r["row"])] = r.get("value")
    return out


class Predictions:
    name = "predict"
    reason = ("a prediction is x'β + z'b: smooth in θ, which two correct optimizers agree on to "
              "~1e-3 relative, so it moves by a small fraction of σ: absolute, in units of the "
              "reference's σ")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref, cand = _by_kind(reference.get("predictions")), _by_kind(candidate.get("predictions"))
        if not ref:
            return []
        allowed = tol.predict_sigma_units * float(reference.get("sigma") or 1.0)
        out: list[Row] = []
        for kind, values in ref.items():
            theirs = cand.get(kind, {})
            worst: tuple[float, Row, int] | None = None
            for i, value in values.items():
                r = row(f"predict[{kind}]", value, theirs.get(i), allowed)
                if r is None:
                    continue
                badness = -1.0 if r.difference is None else abs(r.difference)
                if worst is None or badness > worst[0]:
                    worst = (badness, r, i)
            if worst is not None:
                worst[1].note = f"worst of {len(values)} rows: row {worst[2]}"
                out.append(worst[1])
        return out
