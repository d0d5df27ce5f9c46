"""The PLS engines' public names, where the rest of mixedref and the harness import them from.

The engines live in :mod:`mixedref.engines`: the shared part in ``base``, the blocked dense
engine in ``dense``, CHOLMOD's in ``sparse``, the cost and memory estimates in ``memory`` and
the choice (:class:`PLSObjective`, :func:`plan_engine`) in ``factory``.
"""

from mixedref.engines.base import PLSEngine, PLSSolution, Prepared, prepare_response
from mixedref.engines.dense import MAX_DENSE_BLOCK, DensePLSObjective
from mixedref.engines.factory import DENSE_ALWAYS_BLOCK, PLSObjective, plan_engine
from mixedref.engines.memory import EnginePlan, memory_limit

__all__ = ["DENSE_ALWAYS_BLOCK", "MAX_DENSE_BLOCK", "DensePLSObjective", "EnginePlan",
           "PLSEngine", "PLSObjective", "PLSSolution", "Prepared", "memory_limit",
           "plan_engine", "prepare_response"]
