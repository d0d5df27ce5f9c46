# Does glmer inflate the random-intercept SD of a Gamma GLMM? A measurement, not a reference:
# the design of harness.generate.simulate's sim_glmm_gamma (log link, beta 1 and 0.3, sd(g) 0.4, shape 5,
# 40 groups x 10 rows) drawn NREP times with R's RNG, each fitted by glmer and glmmTMB. Prints,
# per fitter, the mean and median of: the SD glmer's criterion uses (theta), the SD VarCorr
# reports (theta x sigma in lme4 1.1-31), glmmTMB's SD, and sigma.
#
#     Rscript r_scripts/gamma_sd_recovery.R [NREP]   # default 50; about 1 s per replicate

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
})
args <- commandArgs(trailingOnly = TRUE)
nrep <- if (length(args)) as.integer(args[1]) else 50L
out <- matrix(NA_real_, nrep, 5,
              dimnames = list(NULL, c("lme4_theta", "lme4_varcorr_sd", "lme4_sigma",
                                      "glmmTMB_sd", "glmmTMB_sigma")))
for (r in seq_len(nrep)) {
  set.seed(1000 + r)
  g <- factor(rep(1:40, each = 10))
  u <- rnorm(40, sd = 0.4)
  x <- round(rnorm(400), 3)
  mu <- exp(1 + 0.3 * x + u[g])
  d <- data.frame(y = rgamma(400, shape = 5, scale = mu / 5), x = x, g = g)
  m <- suppressWarnings(glmer(y ~ x + (1 | g), data = d, family = Gamma(link = "log")))
  t <- suppressWarnings(glmmTMB(y ~ x + (1 | g), data = d, family = Gamma(link = "log")))
  out[r, ] <- c(getME(m, "theta")[[1]], attr(VarCorr(m)$g, "stddev")[[1]], sigma(m),
                attr(VarCorr(t)$cond$g, "stddev")[[1]], sigma(t))
}
cat(sprintf("%d replicates; truth: sd(g) 0.4, sigma %.4f\n", nrep, 1 / sqrt(5)))
print(round(rbind(mean = colMeans(out), median = apply(out, 2, median),
                  sd = apply(out, 2, stats::sd)), 4))
