"""Fitted models: the base LMM and GLMM share, LmerFit, GlmerFit, glmer_nb and the families."""
