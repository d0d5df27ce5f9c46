"""The PLS engines: lme4's profiled criterion over θ, factored two ways, and the choice.

``base`` (what both engines share: the solution, the prepared response, θ handling and the
criterion), ``schur`` (the operators the dense engine precomputes), ``dense`` (the blocked
dense engine), ``sparse`` (CHOLMOD's), ``memory`` (each engine's cost estimate and the memory
limit) and ``factory`` (``PLSObjective``, which chooses the engine for a model). Each imports
only modules listed before it.
"""
