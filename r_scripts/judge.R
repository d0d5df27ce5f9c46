# The harness's independent judge, lme4's half (harness/core/judge.py): lme4's own profiled criterion
# (REML criterion or deviance, mkLmerDevfun) at given θ values, with the profiled fixed effects
# β̂(θ) and residual standard deviation σ̂(θ) that lme4 would report at that θ, so a candidate's
# estimates are re-evaluated by lme4 itself instead of being believed.
# Sourced by harness/core/rbridge.py (functions only; nothing runs on sourcing). Needs lme4, jsonlite.

# One entry per θ (a list of numeric vectors in lme4's order): objective, beta (named by
# model.matrix column), sigma; or error with lme4's message where it refuses that θ.
judge_evaluate <- function(data, formula, REML, thetas) {
  f <- do.call(lme4::mkLmerDevfun,
               lme4::lFormula(stats::as.formula(formula), data = data, REML = isTRUE(REML)))
  rho <- environment(f)
  X <- rho$pp$X
  n <- nrow(X)
  p <- ncol(X)
  lapply(unname(thetas), function(th) tryCatch({
    objective <- f(as.numeric(th))
    beta <- rho$pp$beta(1)
    pwrss <- rho$resp$wrss() + rho$pp$sqrL(1)
    list(objective = objective,
         beta = as.list(stats::setNames(beta, colnames(X))),
         sigma = sqrt(pwrss / (n - if (isTRUE(REML)) p else 0)),
         error = NULL)
  }, error = function(e) list(objective = NULL, beta = NULL, sigma = NULL,
                              error = conditionMessage(e))))
}

judge_evaluate_json <- function(data, formula, REML, thetas) {
  as.character(jsonlite::toJSON(judge_evaluate(data, formula, REML, thetas), auto_unbox = TRUE,
                                digits = NA, null = "null", na = "null"))
}

# The GLMM half: glmer's own criterion (-2 log-likelihood, Laplace or adaptive quadrature as
# the case's nAGQ) at given points c(θ, β), from glmer(..., devFunOnly = TRUE) with PIRLS to
# `tol_pwrss` (the judge asks for 1e-12: the criterion at the mode itself): lme4's
# mkGlmerDevfun, its stage-1 start, then updateGlmerDevfun (the function glmer's second stage
# optimizes). One entry per point: objective, or error with lme4's message. glmer_fit() is in
# r_scripts/glmer_record.R. The negative binomial's criterion depends on its dispersion too:
# `nb_thetas` (one per point) fixes it, glmer's devfun at negative.binomial(theta) per point.
judge_glmm_evaluate <- function(data, formula, family, link, nAGQ, weights, points,
                                tol_pwrss = 1e-7, nb_thetas = NULL) {
  make <- function(nb_theta) suppressWarnings(suppressMessages(
    glmer_fit(data, formula, family, link, nAGQ, weights,
              settings = list(tolPwrss = tol_pwrss), devFunOnly = TRUE, nb_theta = nb_theta)))
  nb <- identical(family, "negative.binomial")
  if (nb && length(nb_thetas) != length(points))
    stop("the negative binomial's criterion needs one theta per point (nb_thetas)")
  devfun <- if (nb) NULL else make(NULL)
  lapply(seq_along(points), function(i) tryCatch({
    f <- if (nb) make(as.numeric(nb_thetas[[i]])) else devfun
    list(objective = f(as.numeric(points[[i]])), beta = NULL, sigma = NULL, error = NULL)
  }, error = function(e) list(objective = NULL, beta = NULL, sigma = NULL,
                              error = conditionMessage(e))))
}

judge_glmm_evaluate_json <- function(data, formula, family, link, nAGQ, weights, points,
                                     tol_pwrss = 1e-7, nb_thetas = NULL) {
  as.character(jsonlite::toJSON(
    judge_glmm_evaluate(data, formula, family, link, nAGQ, weights, points, tol_pwrss,
                        nb_thetas),
    auto_unbox = TRUE, digits = NA, null = "null", na = "null"))
}
