# lme4's glmer.nb on the cases of tests/test_glmer_nb.py, recorded for comparison without R.
#
#     OPENBLAS_NUM_THREADS=1 Rscript r_scripts/glmer_nb_references.R   # from the repository root
#
# Writes tests/references/glmer_nb.json: per case the formula, lme4's getME(m, "glmer.nb.theta"),
# the number of theta values optimTheta tried (attr(m, "nevals")), logLik (with its df),
# fixef, vcov's SEs, getME(m, "theta"), the family's name and the versions. The cases: lme4's
# grouseticks (ticks on grouse chicks, two formulas) and the seeded overdispersed design of
# tests/test_glmer_nb.py (tests/references/glmer_nb_seeded.csv: theta 2.5, sd 0.6, beta 1, 0.5).
# Under `glmmTMB`, the same cases fitted by glmmTMB's nbinom2 (theta, logLik, fixef, SEs).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

seeded <- utils::read.csv("tests/references/glmer_nb_seeded.csv", stringsAsFactors = FALSE)
seeded$g <- factor(seeded$g)
cases <- list(
  list(id = "grouseticks-location", data = lme4::grouseticks,
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)"),
  list(id = "grouseticks-brood-location", data = lme4::grouseticks,
       formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"),
  list(id = "seeded", data = seeded, formula = "y ~ x + (1 | g)"))

record <- function(case) {
  m <- suppressWarnings(glmer.nb(stats::as.formula(case$formula), data = case$data))
  ll <- stats::logLik(m)
  list(formula = case$formula, theta_nb = getME(m, "glmer.nb.theta"),
       nevals = attr(m, "nevals"), loglik = as.numeric(ll), df = attr(ll, "df"),
       fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       theta = as.list(unname(getME(m, "theta"))), family = family(m)$family,
       link = family(m)$link)
}

# glmmTMB's nbinom2 (the same model: variance mu + mu^2/theta, Laplace approximation), its
# theta = sigma(m); NULL without glmmTMB.
record_tmb <- function(case) {
  if (!requireNamespace("glmmTMB", quietly = TRUE)) return(NULL)
  m <- suppressWarnings(glmmTMB::glmmTMB(stats::as.formula(case$formula), data = case$data,
                                         family = glmmTMB::nbinom2))
  ll <- stats::logLik(m)
  list(theta_nb = stats::sigma(m), loglik = as.numeric(ll), df = attr(ll, "df"),
       fixef = as.list(glmmTMB::fixef(m)$cond),
       se = as.list(sqrt(diag(as.matrix(stats::vcov(m)$cond)))),
       version = as.character(utils::packageVersion("glmmTMB")))
}

out <- list(generator = "r_scripts/glmer_nb_references.R",
            versions = list(R = R.version.string,
                            lme4 = as.character(utils::packageVersion("lme4")),
                            MASS = as.character(utils::packageVersion("MASS"))),
            cases = setNames(lapply(cases, record), vapply(cases, `[[`, "", "id")),
            glmmTMB = setNames(lapply(cases, record_tmb), vapply(cases, `[[`, "", "id")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/references/glmer_nb.json")
cat("wrote tests/references/glmer_nb.json\n")
