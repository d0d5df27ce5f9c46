"""The PLS engines: lme4's profiled criterion over θ, factored two ways, and the choice.

``base`` (what both engines share: the solution, the prepared response, θ handling and the
criterion), ``schur`` (the operators the dense engine precomputes), ``dense`` (the blocked
dense engine), ``sparse`` (CHOLMOD's), ``memory`` (each engine's cost estimate and the memory
limit) and ``factory`` (``PLSObjective``, which chooses the engine for a model). Each imports
only modules listed before it.
"""

from mixedref.engines.base import (
    CriterionPieces,
    PLSEngine,
    PLSSolution,
    Prepared,
    prepare_response,
)
from mixedref.engines.dense import MAX_DENSE_BLOCK, DensePLSObjective
from mixedref.engines.factory import DENSE_ALWAYS_BLOCK, PLSObjective, plan_engine
from mixedref.engines.memory import EnginePlan, memory_limit

__all__ = ["DENSE_ALWAYS_BLOCK", "MAX_DENSE_BLOCK", "CriterionPieces", "DensePLSObjective",
           "EnginePlan", "PLSEngine", "PLSObjective", "PLSSolution", "Prepared", "memory_limit",
           "plan_engine", "prepare_response"]
