"""edi-kernels (PyPI ``edi-kernels``, pybind11 bindings of the EDI project's C++ kernels): its
mixed models are ``fast_gaussian_lmm``, ``fast_logistic_glmm``, ``fast_poisson_glmm`` (and
hurdle / conditional-logit variants), each taking a design matrix, a response and one integer
``group_id`` vector (edi_kernels/_core.pyi).

None of them fits lme4's model on the catalog's cases, so the adapter declines every case with
the reason (it never fits a different model):

- ``fast_gaussian_lmm`` fits a random intercept for matched pairs only: a group of more than
  two observations is refused ("only matched pairs (size 2) and reservoir singletons (size
  1) are supported", its own error on sleepstudy).
- ``fast_logistic_glmm`` / ``fast_poisson_glmm`` integrate one random intercept by
  Gauss-Hermite quadrature on ``n_gh`` fixed nodes (default 20), not lme4's Laplace
  criterion (nAGQ = 1); measured on cbpp_binary: n_gh = 1 puts the SD on its lower bound
  (exp(-3), the random effect drops out: the nodes are not centred on the modes, so the
  quadrature is not adaptive) and n_gh = 5 and 25 differ by 0.017 in logLik, so its criterion
  is neither lme4's Laplace nor lme4's adaptive nAGQ > 1. The logistic kernel takes 0/1
  responses without weights (no binomial trials)."""

from __future__ import annotations

from typing import Any

from harness.adapters.peers import _formula as F
from harness.adapters.peers._base import Peer, nagq_of


class EdiKernelsPeer(Peer):
    name = "edi-kernels"
    module = "edi_kernels"
    dist = "edi-kernels"
    glmm_links = {"binomial": ("logit",), "poisson": ("log",)}
    glmm_agq = ("its quadrature is Gauss-Hermite on fixed nodes, not lme4's adaptive "
                "quadrature (the nodes are not centred on the conditional modes)")
    glmm_weights = False

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        terms = [(b.group, b.columns) for b in parsed.bars]
        if len(terms) != 1 or terms[0][1] != ["(Intercept)"] or "/" in terms[0][0]:
            raise F.cannot(self.dist, "random-effects terms other than one random intercept",
                           "its kernels take one integer group_id vector and a random "
                           "intercept only")
        if not getattr(case, "is_glmm", False):
            raise F.cannot(self.dist, "a linear mixed model with groups of more than two "
                           "observations", "fast_gaussian_lmm supports matched pairs (size "
                           "2) and singletons only (its own error message)")
        if nagq_of(case) == 1:
            raise F.cannot(self.dist, "lme4's Laplace criterion (nAGQ = 1)", "its GLMM kernels "
                           "integrate the random intercept by Gauss-Hermite quadrature on "
                           "fixed (non-adaptive) nodes, a different criterion")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        self.prepare(case, data)  # raises: every catalog shape is declined above
        raise F.cannot(self.dist, case.formula, "no kernel of it fits lme4's model here")
