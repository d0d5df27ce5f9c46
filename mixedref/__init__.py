"""mixedref: linear mixed models from the equations, with lme4's formulas, names and answers."""

from mixedref.design import build_model
from mixedref.errors import DataError, FormulaError, MixedrefError
from mixedref.fit import LmerFit
from mixedref.modular import devfun, fit_model, lmer

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "FormulaError",
    "LmerFit",
    "MixedrefError",
    "__version__",
    "build_model",
    "devfun",
    "fit_model",
    "lmer",
]
