# glmer_record(): fit one harness GLMM case with glmer's defaults and return its FitRecord
# (harness/core/record.py) as an R list, warnings and messages captured inside R, as lmer_record().
# Sourced by harness/core/rbridge.py (functions only; nothing runs on sourcing), and by
# r_scripts/record_references.R. Needs lme4 attached and r_scripts/lmer_record.R sourced.

# The family object glmer is given: `family` as R spells it (binomial, poisson, Gamma,
# inverse.gaussian, negative.binomial), `link` NULL for the family's canonical link. The
# negative binomial is MASS's negative.binomial(nb_theta), its dispersion fixed at `nb_theta`
# (glmer.nb estimates it: glmer_fit).
glmer_family <- function(family, link = NULL, nb_theta = NULL) {
  if (identical(family, "negative.binomial")) {
    if (is.null(nb_theta)) stop("the negative binomial family needs its dispersion theta")
    return(if (is.null(link)) MASS::negative.binomial(theta = nb_theta)
           else MASS::negative.binomial(theta = nb_theta, link = link))
  }
  make <- get(family, mode = "function", envir = asNamespace("stats"))
  if (is.null(link)) make() else make(link = link)
}

# Fit `formula` (a string) with glmer: `weights` NULL or the name of a column of prior weights
# (binomial: the trials of a proportion), `nAGQ` 1 (Laplace) or more (quadrature), `optimizer`
# NULL for glmer's default or one optimizer for both stages, `settings` further glmerControl()
# arguments (`record_grid.R --tight`'s convergence). The inference (glmer_inference()) is
# recorded unless `inference` is FALSE: `intervals` adds profile intervals, `anova` (a partner
# formula) the rows of anova(partner, m), `grid` predictions on the catalog's grid. Returns the
# record, never an error.
glmer_record <- function(data, formula, family, link, nAGQ, weights, case_id, impl = "lme4",
                         optimizer = NULL, timeout = NULL, settings = list(),
                         intervals = FALSE, anova = NULL, grid = NULL, inference = TRUE) {
  rec <- empty_record(impl, case_id, FALSE)
  rec$versions <- lmer_versions()
  out <- fit_captured(function() glmer_fit(data, formula, family, link, nAGQ, weights, optimizer,
                                           settings),
                      timeout, "lme4")
  rec["seconds"] <- list(out$seconds)
  rec["error"] <- list(out$error)
  rec$messages <- as.list(out$messages)
  fam <- tryCatch(glmer_family(family, link, nb_theta = 1), error = function(e) NULL)
  rec["family"] <- list(family)
  rec["link"] <- list(if (is.null(fam)) link else fam$link)
  rec["nAGQ"] <- list(as.integer(nAGQ))
  fit <- out$fit
  if (is.null(fit)) return(rec)
  rec <- merMod_fields(rec, fit, out$messages)
  rec$objective <- -2 * as.numeric(stats::logLik(fit))  # m@devcomp$cmp[["dev"]]
  rec$deviance <- stats::deviance(fit)
  if (identical(family, "negative.binomial")) rec$nb_theta <- lme4::getME(fit, "glmer.nb.theta")
  rec$fixef_se_rx <- .as_object(setNames(
    # (lme4 warns that the two differ when they do: both are recorded, the warning is not news)
    sqrt(diag(as.matrix(suppressWarnings(stats::vcov(fit, use.hessian = FALSE))))),
    names(lme4::fixef(fit))))
  if (!isTRUE(inference)) return(rec)
  glmer_inference(rec, fit, data, intervals, anova,
                  function(f) glmer_fit(data, f, family, link, nAGQ, weights, optimizer, settings),
                  grid)
}

# A GLMM's inference in its record: lme4's Wald z tests (summary(m)$coefficients: rows {ddf
# "Wald", term, se, df null, p, statistic}), predictions at type "link" and "response" (as
# lmer_record's), confint's Wald intervals (profile ones when `intervals`), and anova(m0, m)
# against the partner formula `anova`, fitted by `fit_partner` (glmer with the case's family).
glmer_inference <- function(rec, fit, data, intervals, anova, fit_partner, grid) {
  rec["coef_tests"] <- list(wald_z_rows(fit))
  rec["predictions"] <- list(c(prediction_rows(fit, data, type = "link"),
                               prediction_rows(fit, data, type = "response"),
                               grid_rows(fit, data, grid, type = "link"),
                               grid_rows(fit, data, grid, type = "response")))
  rec["confint"] <- list(confint_rows(fit, profile = isTRUE(intervals)))
  rec["anova"] <- list(anova_rows(fit, data, anova, FALSE, fit_partner))
  rec
}

# summary(m)$coefficients of a glmerMod as rows {ddf "Wald", term, se, df null, p, statistic}:
# lme4's z value ("t value" for families with a scale) and Pr(>|z|).
wald_z_rows <- function(m) {
  tab <- tryCatch(suppressWarnings(summary(m)$coefficients), error = function(e) NULL)
  if (is.null(tab)) return(NULL)
  num <- function(x) if (is.finite(x)) unname(x) else NULL
  rows <- lapply(rownames(tab), function(term)
    list(ddf = "Wald", term = term, se = num(tab[term, 2]), df = NULL, p = num(tab[term, 4]),
         statistic = num(tab[term, 3])))
  if (length(rows)) rows else NULL
}

# The glmer call itself (what the benchmarks time, and with devFunOnly = TRUE what the judge
# evaluates): glmer's defaults but for what is given. `settings` are further glmerControl()
# arguments (the judge's tolPwrss). The negative binomial is fitted by glmer.nb (its theta
# estimated; glmer.nb has the log link only), or with `nb_theta` given by glmer at that theta
# (the judge's devfun).
glmer_fit <- function(data, formula, family, link, nAGQ, weights, optimizer = NULL,
                      settings = list(), devFunOnly = FALSE, nb_theta = NULL) {
  f <- stats::as.formula(formula)
  # a local of an unlikely name: glmer looks the weights up in the data first, then here
  harness_prior_weights. <- if (is.null(weights)) NULL else data[[weights]]
  if (!is.null(weights) && is.null(harness_prior_weights.))
    stop(sprintf("weights column '%s' is not in the data", weights))
  if (!is.null(optimizer)) settings$optimizer <- optimizer  # one optimizer: both stages
  if (identical(family, "negative.binomial") && is.null(nb_theta)) {
    if (devFunOnly) stop("a negative binomial devfun needs its theta (nb_theta)")
    if (!is.null(link) && !identical(link, "log"))
      stop(sprintf("lme4's glmer.nb fits the log link only, not '%s'", link))
    return(lme4::glmer.nb(f, data = data, nAGQ = as.integer(nAGQ),
                          weights = harness_prior_weights.,
                          control = do.call(lme4::glmerControl, settings)))
  }
  lme4::glmer(f, data = data, family = glmer_family(family, link, nb_theta),
              nAGQ = as.integer(nAGQ),
              weights = harness_prior_weights., control = do.call(lme4::glmerControl, settings),
              devFunOnly = devFunOnly)
}

# The record as a JSON string, checked against record.schema.json (as lmer_record_json).
glmer_record_json <- function(data, formula, family, link, nAGQ, weights, case_id,
                              impl = "lme4", optimizer = NULL, timeout = NULL,
                              intervals = FALSE, anova = NULL, grid = NULL) {
  rec <- glmer_record(data, formula, family, link, nAGQ, weights, case_id, impl, optimizer,
                      timeout, intervals = intervals, anova = anova, grid = grid)
  record_as_json(rec)
}
