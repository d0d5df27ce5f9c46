"""Inference on a fitted model: denominator df, profiles, predictions, anova tables and
simulation."""
