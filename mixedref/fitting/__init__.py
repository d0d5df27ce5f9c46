"""Fitting: the optimizers, their rescue strategies, convergence checks, the Newton finish, Control
and OptSummary, and the modular stages that compose them."""
