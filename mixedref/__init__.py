"""mixedref: linear mixed models from the equations, with lme4's formulas, names and answers."""

from mixedref.errors import DataError, FormulaError, MixedrefError

__version__ = "0.1.0"

__all__ = ["DataError", "FormulaError", "MixedrefError", "__version__"]
