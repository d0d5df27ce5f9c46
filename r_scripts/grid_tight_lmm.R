# The stress grid's three ML cells where lme4's default lmer stops short in a flat direction
# (harness/grid_divergences.yaml, finding grid-lme4-lmer-stops-short-flat): each refitted with
# nloptwrap's BOBYQA converged far past its defaults, to show where the optimum is.
#
#     python -m harness.commands.grid --write-data && Rscript r_scripts/grid_tight_lmm.R
#
# Run from the repository root (the cells' data in build/grid/data/).
suppressPackageStartupMessages(library(lme4))
cells <- list(
  list(id = "grid_intercept_S_mid_b2_r1_ML", f = y ~ x + (1 | g)),
  list(id = "grid_nested_S_lo_b4_r2_ML", f = y ~ x + (1 | a/b)),
  list(id = "grid_crossed_L_lo_b0_r1_ML", f = y ~ x + (1 | a) + (1 | b)))
for (cl in cells) {
  d <- read.csv(gzfile(sprintf("build/grid/data/%s.csv.gz", cl$id)), stringsAsFactors = TRUE)
  m0 <- lmer(cl$f, d, REML = FALSE)
  m1 <- lmer(cl$f, d, REML = FALSE, control = lmerControl(optimizer = "nloptwrap",
        optCtrl = list(ftol_abs = 1e-15, ftol_rel = 1e-15, xtol_abs = 1e-12, xtol_rel = 1e-12, maxeval = 1e5)))
  cat(sprintf("%s default: dev %.10f theta %s\n", cl$id, deviance(m0), paste(signif(getME(m0, "theta"), 8), collapse = " ")))
  cat(sprintf("%s tight:   dev %.10f theta %s\n", cl$id, deviance(m1), paste(signif(getME(m1, "theta"), 8), collapse = " ")))
}
