"""mixedref: linear mixed models from the equations, with lme4's formulas, names and answers."""

from mixedref.errors import DataError, FormulaError, MixedrefError
from mixedref.fit import LmerFit
from mixedref.lmer import lmer

__version__ = "0.1.0"

__all__ = ["DataError", "FormulaError", "LmerFit", "MixedrefError", "__version__", "lmer"]
