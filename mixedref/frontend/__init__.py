"""The front end: formula, fixed-effects design (R's model.matrix), random-effects terms (θ ↔ Λ, Z)
and build_model, lme4's lFormula."""
