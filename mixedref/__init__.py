"""mixedref: linear mixed models from the equations, with lme4's formulas, names and answers."""

from mixedref import family
from mixedref.anova import anova
from mixedref.anova_terms import anova_terms
from mixedref.design import build_model
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
from mixedref.fit import LmerFit
from mixedref.glmer import GlmerFit, glmer
from mixedref.glmer_nb import glmer_nb
from mixedref.modular import devfun, fit_model, lmer

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
