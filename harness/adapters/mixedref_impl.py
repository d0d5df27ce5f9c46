"""mixedref's two engines: ``mixedref.lmer`` (penalized least squares) and the dense oracle
``mixedref.literal`` (for small data; cases it cannot express are reported as unsupported)."""

from __future__ import annotations

from typing import Any

from harness.adapters.base import Adapter


class Mixedref(Adapter):
    """mixedref.lmer with its defaults; the record from LmerFit.to_record()."""

    name = "mixedref"

    def unavailable(self) -> str | None:
        try:
            import mixedref
        except Exception as exc:
            return f"mixedref import failed: {type(exc).__name__}: {exc}"
        if not hasattr(mixedref, "lmer"):
            return "mixedref.lmer is not available (mixedref has no lmer yet)"
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import mixedref

        fit = mixedref.lmer(case.formula, data, REML=bool(case.REML))
        return fit.to_record(self.name, case.id)


class MixedrefLiteral(Adapter):
    """mixedref.literal.fit_case(formula, data, REML): the textbook dense equations.

    Each evaluation inverts n x n matrices (O(n^3)), so the harness runs the oracle only on
    cases of at most :attr:`max_rows` rows, where a fit takes seconds, not minutes.
    """

    name = "mixedref-literal"
    max_rows = 800

    def supports(self, case: Any) -> str | None:
        from harness.catalog import load_data

        n = len(load_data(case))
        if n > self.max_rows:
            return (f"too large for the dense oracle in the harness: {n} rows > {self.max_rows} "
                    "(O(n^3) per evaluation)")
        return None

    def unavailable(self) -> str | None:
        try:
            from mixedref.literal import fit_case  # noqa: F401
        except Exception as exc:
            return f"mixedref.literal.fit_case not available: {type(exc).__name__}: {exc}"
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        from mixedref.literal import fit_case

        return fit_case(case.formula, data, bool(case.REML))
