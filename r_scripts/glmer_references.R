# Reference values for mixedref.glmer: every case tests/test_glmer.py checks, fitted with
# lme4 1.1-31's glmer at its defaults, written to tests/references/glmer/<case>.json.
#
#     Rscript r_scripts/glmer_references.R            # all cases
#     Rscript r_scripts/glmer_references.R cbpp_logit # some cases, by id
#     GLMER_ALLFIT=1 Rscript r_scripts/glmer_references.R   # also lme4's allFit spread
#
# Per case: fixef; vcov and SEs both ways (vcov(m): the default, from the stage-2
# finite-difference Hessian; vcov(m, use.hessian = FALSE): from RX); theta; sigma;
# as.data.frame(VarCorr(m)); logLik, deviance(m) (sum of squared deviance residuals), -2 logLik,
# AIC, BIC, df.resid; ranef with its conditional variances (condVar); fitted; residuals
# (deviance, pearson, response); and the criterion at given (theta, beta) points through
# lme4's own devfun (glmer(..., devFunOnly = TRUE), i.e. mkGlmerDevfun followed by
# updateGlmerDevfun), at the default tolPwrss and at 1e-12, so that the engine is checked apart
# from the optimizer. seconds: the median of `reps` runs of system.time(glmer(...))["elapsed"].
# Datasets are read from harness/data (the files mixedref reads), except the simulated Gamma
# set, generated here from its seed and stored in its JSON file.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

script_dir <- function() {
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg) == 0) return(getwd())
  dirname(normalizePath(sub("^--file=", "", arg[1])))
}
root <- dirname(script_dir())
out_dir <- file.path(root, "tests", "references", "glmer")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

read_dataset <- function(name) {
  meta <- yaml::read_yaml(file.path(root, "harness", "data", "datasets.yaml"))$datasets[[name]]
  d <- read.csv(gzfile(file.path(root, "harness", "data", meta$file)), colClasses = "character",
                check.names = FALSE)
  for (col in meta$columns) {
    x <- d[[col$name]]
    d[[col$name]] <- switch(col$type,
      numeric = as.numeric(x), integer = as.integer(x),
      factor = factor(x, levels = unlist(col$levels)),
      ordered = factor(x, levels = unlist(col$levels), ordered = TRUE))
  }
  d
}

sim_gamma <- function() {
  set.seed(20261201)
  g <- factor(sprintf("g%02d", rep(1:30, each = 10)))
  x <- round(rnorm(300), 6)
  b <- rnorm(30, sd = 0.4)
  mu <- exp(1 + 0.5 * x + b[as.integer(g)])
  y <- signif(rgamma(300, shape = 5, scale = mu / 5), 10)
  data.frame(y = y, x = x, g = g)
}

cases <- list(
  cbpp_logit = list(dataset = "cbpp", family = "binomial", link = "logit",
                    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    points = list(c(0.5, -1, -0.5, -0.6, -1), c(1.2, -1.5, -1, -1.1, -1.6)),
                    reps = 5),
  cbpp_probit = list(dataset = "cbpp", family = "binomial", link = "probit",
                     formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     points = list(c(0.5, -0.8, -0.4, -0.5, -0.6)), reps = 5),
  cbpp_cloglog = list(dataset = "cbpp", family = "binomial", link = "cloglog",
                      formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                      points = list(c(0.5, -1.5, -0.9, -1, -1.4)), reps = 5),
  cbpp_agq9 = list(dataset = "cbpp", family = "binomial", link = "logit", nAGQ = 9,
                   formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                   points = list(c(0.5, -1, -0.5, -0.6, -1), c(1.2, -1.5, -1, -1.1, -1.6)),
                   reps = 5),
  cbpp_agq25 = list(dataset = "cbpp", family = "binomial", link = "logit", nAGQ = 25,
                    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    points = list(c(0.5, -1, -0.5, -0.6, -1)), reps = 5),
  cbpp_nagq0 = list(dataset = "cbpp", family = "binomial", link = "logit", nAGQ = 0,
                    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    points = list(0.5, 1.2), reps = 5),
  verbagg = list(dataset = "VerbAgg", family = "binomial", link = "logit",
                 formula = "r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item)",
                 points = list(c(1, 0.5, 0.2, 0.05, 0.3, -1, -2, -1)), reps = 1),
  grouseticks = list(dataset = "grouseticks", family = "poisson", link = "log",
                     formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                     points = list(c(0.5, 0.7, 0.5, 0.4, 1.1, -1, -0.02)), reps = 3),
  contraception = list(dataset = "Contraception", family = "binomial", link = "logit",
                       formula = "use ~ urban + age + I(age^2) + livch + (urban | district)",
                       points = list(c(0.5, -0.3, 0.6, -1.5, 0.7, 0, -0.004, 0.8, 0.8, 0.8)),
                       reps = 3),
  gamma_log = list(dataset = "sim_gamma", family = "Gamma", link = "log",
                   formula = "y ~ x + (1 | g)", points = list(c(0.6, 1, 0.5)), reps = 5),
  invgauss_log = list(dataset = "sim_gamma", family = "inverse.gaussian", link = "log",
                      formula = "y ~ x + (1 | g)", points = list(c(0.6, 1, 0.5)), reps = 5)
)

num <- function(x) unname(as.numeric(x))
named <- function(x) as.list(setNames(as.numeric(x), names(x)))

fit_case <- function(id, spec) {
  data <- if (spec$dataset == "sim_gamma") sim_gamma() else read_dataset(spec$dataset)
  fam <- get(spec$family, mode = "function")(link = spec$link)
  nAGQ <- if (is.null(spec$nAGQ)) 1L else spec$nAGQ
  form <- as.formula(spec$formula)
  msgs <- character()
  fit1 <- function() withCallingHandlers(
    glmer(form, data = data, family = fam, nAGQ = nAGQ),
    warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, conditionMessage(m)); invokeRestart("muffleMessage") })
  secs <- numeric()
  for (r in seq_len(spec$reps)) secs <- c(secs, system.time(m <- fit1())[["elapsed"]])
  V <- as.matrix(vcov(m))
  Vrx <- as.matrix(vcov(m, use.hessian = FALSE))
  devf <- glmer(form, data = data, family = fam, nAGQ = nAGQ, devFunOnly = TRUE)
  # nAGQ = 0: lme4's devfun is over theta alone (beta inside PIRLS)
  pars_hat <- if (nAGQ == 0) getME(m, "theta") else c(getME(m, "theta"), fixef(m))
  points <- c(list(num(pars_hat)), lapply(spec$points, num))
  values <- vapply(points, function(p) tryCatch(devf(p), error = function(e) NA_real_), 0)
  # the same criterion with PIRLS iterated to 1e-12: at the default tolPwrss (1e-7) the value
  # carries PIRLS's truncation error, which depends on the restart point lp0 (large for a
  # non-canonical link such as Gamma's log, where PIRLS converges linearly)
  devf_tight <- glmer(form, data = data, family = fam, nAGQ = nAGQ, devFunOnly = TRUE,
                      control = glmerControl(tolPwrss = 1e-12))
  values_tight <- vapply(points, function(p) tryCatch(devf_tight(p), error = function(e) NA_real_),
                         0)
  vc <- as.data.frame(VarCorr(m))
  re <- ranef(m, condVar = TRUE)
  out <- list(
    id = id, dataset = spec$dataset, formula = spec$formula, family = spec$family,
    link = spec$link, nAGQ = nAGQ,
    fixef = named(fixef(m)), se_hessian = named(sqrt(diag(V))), se_rx = named(sqrt(diag(Vrx))),
    vcov_hessian = unname(V), vcov_rx = unname(Vrx),
    theta = I(num(getME(m, "theta"))), sigma = sigma(m),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(
      grp = vc$grp[i], var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
      var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    loglik = as.numeric(logLik(m)), deviance = deviance(m), minus2loglik = -2 * as.numeric(logLik(m)),
    aic = AIC(m), bic = BIC(m), df_resid = df.residual(m), nobs = nobs(m),
    ranef = lapply(re, function(d) list(levels = I(rownames(d)), columns = I(colnames(d)),
                                        values = unname(as.matrix(d)),
                                        # postVar: q x q x levels, written level-major
                                        condvar = lapply(seq_len(nrow(d)), function(i)
                                          unname(matrix(attr(d, "postVar")[, , i],
                                                        ncol(d), ncol(d)))))),
    fitted = num(fitted(m)),
    residuals = list(deviance = num(residuals(m, type = "deviance")),
                     pearson = num(residuals(m, type = "pearson")),
                     response = num(residuals(m, type = "response"))),
    devfun = list(points = lapply(points, I), values = I(values), tol_pwrss = 1e-7,
                  values_tight = I(values_tight), tol_pwrss_tight = 1e-12),
    optinfo = list(feval = m@optinfo$feval, conv = m@optinfo$conv$opt,
                   messages = as.list(unique(msgs))),
    singular = isSingular(m), seconds = median(secs), seconds_all = I(secs),
    versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))
  )
  if (spec$dataset == "sim_gamma") out$data <- as.list(data.frame(y = data$y, x = data$x,
                                                                  g = as.character(data$g)))
  if (nzchar(Sys.getenv("GLMER_ALLFIT"))) {
    # lme4's spread: stage 2 by each of allFit's usual optimizers (stage 1 bobyqa)
    opts <- c("bobyqa", "Nelder_Mead", "nloptwrap", "nlminbwrap")
    af <- list()
    for (o in opts) {
      ctrl <- glmerControl(optimizer = c("bobyqa", o))
      a <- tryCatch(suppressWarnings(suppressMessages(
        glmer(form, data = data, family = fam, nAGQ = nAGQ, control = ctrl))),
        error = function(e) conditionMessage(e))
      af[[o]] <- if (is.character(a)) list(error = a) else
        list(fixef = named(fixef(a)), theta = I(num(getME(a, "theta"))),
             minus2loglik = -2 * as.numeric(logLik(a)))
    }
    out$allfit <- af
  }
  path <- file.path(out_dir, paste0(id, ".json"))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", pretty = FALSE), path)
  cat(sprintf("wrote %s (%.2f s per fit)\n", path, median(secs)))
}

args <- commandArgs(trailingOnly = TRUE)
ids <- if (length(args)) args else names(cases)
for (id in ids) fit_case(id, cases[[id]])
