"""mixedref: linear mixed models from the equations, with lme4's formulas, names and answers."""

from mixedref.errors import (
    ConvergenceWarning,
    DataError,
    DegenerateResponseWarning,
    DuplicateTermWarning,
    FormulaError,
    MixedrefError,
    MixedrefWarning,
    NaNsProducedWarning,
    ScaleWarning,
    SingularFitWarning,
)
from mixedref.fitting.modular import devfun, fit_model, lmer
from mixedref.frontend.design import build_model
from mixedref.inference.anova import anova
from mixedref.inference.anova_terms import anova_terms
from mixedref.models import family
from mixedref.models.fit import LmerFit
from mixedref.models.glmer import GlmerFit, glmer
from mixedref.models.glmer_nb import glmer_nb

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DegenerateResponseWarning",
    "DuplicateTermWarning",
    "FormulaError",
    "GlmerFit",
    "LmerFit",
    "MixedrefError",
    "MixedrefWarning",
    "NaNsProducedWarning",
    "ScaleWarning",
    "SingularFitWarning",
    "__version__",
    "anova",
    "anova_terms",
    "build_model",
    "devfun",
    "family",
    "fit_model",
    "glmer",
    "glmer_nb",
    "lmer",
]
