"""Fixed effects, in units of the reference's standard error (what a user could ever notice)."""

from __future__ import annotations

from harness.core.comparators.base import Record, Row, missing, row, rows_of
from harness.core.tolerance import Tolerance


class FixedEffects:
    name = "fixef"
    reason = ("β depends smoothly on θ, which two correct optimizers agree on to ~1e-3 relative; "
              "judged in units of its standard error, 0.01 SE is far below what changes an "
              "inference")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref_b, cand_b = dict(reference.get("fixef") or {}), dict(candidate.get("fixef") or {})
        # GLMMs: in units of the RX-based SE (the Hessian-based default moves with PIRLS's
        # last digits; see harness.core.tolerance.GLMM)
        ref_se = dict(reference.get("fixef_se_rx") or reference.get("fixef_se") or {})
        if cand_b and set(cand_b) != set(ref_b):
            notes.append(f"fixed-effect names differ: reference {list(ref_b)}, "
                         f"candidate {list(cand_b)}")
        out: list[Row | None] = []
        for name, ref in ref_b.items():
            se = ref_se.get(name)
            r = row(f"fixef[{name}]", ref, cand_b.get(name),
                    tol.fixef_se_units * se if se is not None else None)
            out.append(missing(r) if cand_b and name not in cand_b else r)
        out += [row(f"fixef[{name}]", None, v, None) for name, v in cand_b.items()
                if name not in ref_b]
        return rows_of(*out)


class StandardErrors:
    name = "fixef_se"
    reason = ("SEs are σ²(X'V⁻¹X)⁻¹ at θ̂: relative, inheriting θ's ~1e-3 agreement between "
              "optimizers")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        cand_se = dict(candidate.get("fixef_se") or {})
        return rows_of(*(row(f"fixef_se[{name}]", ref, cand_se.get(name),
                             tol.fixef_se_rel * abs(ref))
                         for name, ref in dict(reference.get("fixef_se") or {}).items()))


class RXStandardErrors:
    name = "fixef_se_rx"
    reason = ("GLMMs: SEs from the RX factor (vcov(m, use.hessian = FALSE)) compared with the "
              "same kind only, relative as the LMM's SEs: they do not depend on PIRLS's "
              "truncation, unlike the Hessian-based default")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref_rx, cand_rx = reference.get("fixef_se_rx"), candidate.get("fixef_se_rx")
        if not ref_rx or not cand_rx:
            return []
        return rows_of(*(row(f"fixef_se_rx[{name}]", ref, cand_rx.get(name),
                             tol.fixef_se_rx_rel * abs(ref))
                         for name, ref in dict(ref_rx).items()))
