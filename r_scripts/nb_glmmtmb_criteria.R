# lme4's glmer.nb and glmmTMB's nbinom2 on the negative binomial catalog cases: each package's
# estimate evaluated under both packages' criteria, which says why their answers differ.
#
#     OPENBLAS_NUM_THREADS=1 Rscript r_scripts/nb_glmmtmb_criteria.R   # from the repository root
#
# Writes tests/references/nb_glmmtmb_criteria.json: per case (the catalog's family
# negative.binomial cases) each package's estimate (fixef, the random-effect SDs in lme4's term
# order, theta of the negative binomial, its own -2 logLik) and, at each estimate, lme4's
# criterion (glmer's devfun at MASS's negative.binomial(theta), PIRLS to 1e-12: the judge's,
# r_scripts/judge.R) and TMB's (2 x glmmTMB's obj$fn at that estimate: its Laplace
# approximation, the random effects optimised out by its inner Newton). Both criteria are
# -2 log-likelihoods of the same model; they differ in the Laplace approximation's Hessian: TMB
# takes the observed Hessian of the conditional log-likelihood, lme4's PIRLS the expected
# (Fisher) weights, which are the same only at a canonical link (the negative binomial's log
# link is not). The control, under `poisson_control`: the same formula with the Poisson family
# (log link, canonical), where both criteria at lme4's estimate must agree.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
source("r_scripts/record_schema.R")
Sys.setenv(MIXEDREF_RECORD_SCHEMA = "harness/core/record.schema.json")
source("r_scripts/lmer_record.R")
source("r_scripts/glmer_record.R")
source("r_scripts/judge.R")
source("r_scripts/catalog.R")

# lme4's criterion at (sds, beta, theta) for a model of scalar random-effect terms.
lme4_at <- function(d, case, sds, beta, nb_theta) {
  out <- judge_glmm_evaluate(d, case$formula, case$family, case$link, case$nAGQ, case$weights,
                             list(c(sds, beta)), tol_pwrss = 1e-12, nb_thetas = list(nb_theta))
  out[[1]]$objective
}

# TMB's criterion at the same point: glmmTMB's parameter vector is (beta, log theta, log sd per
# term in glmmTMB's term order); the Poisson's has no log theta (nb_theta NULL).
tmb_at <- function(tm, lme4_groups, sds, beta, nb_theta) {
  tmb_groups <- names(tm$modelInfo$reTrms$cond$cnms)
  par <- c(beta, if (!is.null(nb_theta)) log(nb_theta), log(sds[match(tmb_groups, lme4_groups)]))
  2 * tm$obj$fn(par)
}

# The canonical-link control: lme4's Poisson estimate of the same formula under both criteria.
poisson_control <- function(d, case, groups) {
  f <- stats::as.formula(case$formula)
  m <- suppressWarnings(lme4::glmer(f, data = d, family = stats::poisson))
  tm <- suppressWarnings(glmmTMB::glmmTMB(f, data = d, family = stats::poisson))
  sds <- unname(getME(m, "theta"))
  beta <- unname(lme4::fixef(m))
  lme4_crit <- judge_glmm_evaluate(d, case$formula, "poisson", NULL, 1L, NULL,
                                   list(c(sds, beta)), tol_pwrss = 1e-12)[[1]]$objective
  list(lme4_criterion = lme4_crit, tmb_criterion = tmb_at(tm, groups, sds, beta, NULL))
}

main <- function() {
  cases <- Filter(function(x) identical(x$family, "negative.binomial"),
                  read_catalog("harness/catalog.yaml"))
  out <- list()
  for (case in cases) {
    d <- read_dataset(case$dataset, case$data_dirs)
    m <- suppressWarnings(glmer.nb(stats::as.formula(case$formula), data = d))
    tm <- suppressWarnings(glmmTMB::glmmTMB(stats::as.formula(case$formula), data = d,
                                            family = glmmTMB::nbinom2))
    if (!all(lengths(getME(m, "cnms")) == 1)) stop("scalar random-effect terms only")
    groups <- names(getME(m, "cnms"))
    tmb_vc <- glmmTMB::VarCorr(tm)$cond
    est <- list(
      lme4 = list(fixef = lme4::fixef(m), sds = unname(getME(m, "theta")),
                  nb_theta = getME(m, "glmer.nb.theta"),
                  own = -2 * as.numeric(stats::logLik(m))),
      glmmTMB = list(fixef = glmmTMB::fixef(tm)$cond,
                     sds = vapply(groups, function(g) attr(tmb_vc[[g]], "stddev")[[1]], 0),
                     nb_theta = stats::sigma(tm), own = -2 * as.numeric(stats::logLik(tm))))
    out[[case$id]] <- lapply(est, function(e) list(
      fixef = as.list(e$fixef), sds = as.list(setNames(unname(e$sds), groups)),
      nb_theta = e$nb_theta, own = e$own,
      lme4_criterion = lme4_at(d, case, unname(e$sds), unname(e$fixef), e$nb_theta),
      tmb_criterion = tmb_at(tm, groups, unname(e$sds), unname(e$fixef), e$nb_theta)))
    out[[case$id]]$poisson_control <- poisson_control(d, case, groups)
    cat(sprintf("%-20s Poisson control at lme4's estimate: lme4's %.6f  TMB's %.6f\n", case$id,
                out[[case$id]]$poisson_control$lme4_criterion,
                out[[case$id]]$poisson_control$tmb_criterion))
    for (who in names(est)) cat(sprintf("%-20s %-8s lme4's %.6f  TMB's %.6f  own %.6f\n",
                                        case$id, who, out[[case$id]][[who]]$lme4_criterion,
                                        out[[case$id]][[who]]$tmb_criterion, est[[who]]$own))
  }
  doc <- list(generator = "r_scripts/nb_glmmtmb_criteria.R",
              versions = list(R = R.version.string,
                              lme4 = as.character(utils::packageVersion("lme4")),
                              glmmTMB = as.character(utils::packageVersion("glmmTMB")),
                              TMB = as.character(utils::packageVersion("TMB"))),
              cases = out)
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             "tests/references/nb_glmmtmb_criteria.json")
  cat("wrote tests/references/nb_glmmtmb_criteria.json\n")
}

if (sys.nframe() == 0) main()
