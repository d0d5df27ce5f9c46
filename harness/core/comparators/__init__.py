"""The compared quantities, one comparator each (harness.core.comparators.base says what one is).

:data:`BUILTIN` is the order of the parameter table. :func:`registered` adds the comparators
that plugins and conftests return from the ``pytest_harness_comparators`` hook
(harness.pytest_plugin.hookspecs),
so a new quantity is one comparator module plus its extraction (in R for lme4's side). A
plugin's quantity lives in the record's open namespace ``record["extra"][name]`` (read with
:func:`extra_value`), so it needs no change to the harness at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from harness.core.comparators.anova import LikelihoodRatio
from harness.core.comparators.anova_terms import TermFTests
from harness.core.comparators.base import Comparator, Row, extra_value, row
from harness.core.comparators.certified import CertifiedLRE
from harness.core.comparators.coef_tests import CoefficientTests
from harness.core.comparators.confint import Intervals
from harness.core.comparators.fixef import FixedEffects, RXStandardErrors, StandardErrors
from harness.core.comparators.nb_theta import NegativeBinomialTheta
from harness.core.comparators.predictions import Predictions
from harness.core.comparators.ranef import ConditionalModes, ConditionalSDs
from harness.core.comparators.scalars import Criteria, Deviance, Sigma
from harness.core.comparators.theta import Theta
from harness.core.comparators.varcorr import VarianceComponents

BUILTIN: tuple[Comparator, ...] = (FixedEffects(), StandardErrors(), RXStandardErrors(),
                                   Sigma(), VarianceComponents(), Criteria(), Deviance(),
                                   Theta(), NegativeBinomialTheta(), ConditionalModes(),
                                   ConditionalSDs(),
                                   Predictions(), Intervals(), CoefficientTests(),
                                   LikelihoodRatio(), TermFTests(), CertifiedLRE())


def quantities_of(comparators: Iterable[Comparator]) -> tuple[str, ...]:
    """The row-name prefixes the comparators write (``fixef``, ``var``, ``loglik``, ...): what
    a divergence entry's quantity may name."""
    out: list[str] = []
    for c in comparators:
        out += [q for q in getattr(c, "quantities", (c.name,)) if q not in out]
    return tuple(out)


def registered(extra: Iterable[Sequence[Comparator] | None] = ()) -> tuple[Comparator, ...]:
    """The built-in comparators followed by those a hook returned (lists of them), each name
    once: a plugin's comparator with a built-in name replaces the built-in one."""
    out = {c.name: c for c in BUILTIN}
    for group in extra:
        for c in group or ():
            for attr in ("name", "reason", "rows"):
                if not hasattr(c, attr):
                    raise TypeError(f"comparator {c!r} has no {attr!r} (see "
                                    "harness/core/comparators/base.py)")
            out[c.name] = c
    return tuple(out.values())


__all__ = ["BUILTIN", "Comparator", "Row", "extra_value", "quantities_of", "registered", "row"]
