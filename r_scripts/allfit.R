# lme4's second opinion on a disagreement: refit one model with every optimizer lme4's allFit()
# has available here (bobyqa, Nelder_Mead, nlminbwrap, nmkbw, optimx, nloptwrap variants) and
# report each optimizer's optimized criterion (REML criterion or deviance), θ and messages, and
# which reached the lowest. Also lme4's own objective at given θ values (devfun_at), so the
# harness can check its cross-evaluation against lme4's deviance function.
# Sourced by harness/core/rbridge.py (functions only; nothing runs on sourcing). Needs lme4, jsonlite.

.criterion <- function(m) {
  cmp <- m@devcomp$cmp
  if (isREML(m)) unname(cmp[["REML"]]) else unname(cmp[["dev"]])
}

# Run allFit on lmer(formula, data, REML); return a list (JSON-ready), never an error.
allfit_best <- function(data, formula, REML) {
  out <- list(optimizers = list(), best = NULL, objective = NULL, error = NULL)
  base <- tryCatch(
    suppressWarnings(lmer(stats::as.formula(formula), data = data, REML = REML)),
    error = function(e) e)
  if (inherits(base, "error")) {
    out$error <- conditionMessage(base)
    return(out)
  }
  fits <- tryCatch(suppressMessages(suppressWarnings(
    allFit(base, data = data, verbose = FALSE))), error = function(e) e)
  if (inherits(fits, "error")) {
    out$error <- paste("allFit failed:", conditionMessage(fits))
    return(out)
  }
  objs <- c()
  for (nm in names(fits)) {
    f <- fits[[nm]]
    if (inherits(f, "try-error") || inherits(f, "error")) {
      out$optimizers[[nm]] <- list(objective = NULL, theta = NULL,
                                   messages = I(as.character(f)), error = TRUE)
      next
    }
    msgs <- c(f@optinfo$conv$lme4$messages, unlist(f@optinfo$warnings))
    obj <- .criterion(f)
    objs[nm] <- obj
    out$optimizers[[nm]] <- list(objective = obj, theta = unname(getME(f, "theta")),
                                 messages = I(as.character(msgs)), error = FALSE,
                                 seconds = unname(attr(f, "time")[["elapsed"]]))
  }
  if (length(objs)) {
    out$best <- names(objs)[which.min(objs)]
    out$objective <- unname(min(objs))
  }
  out
}

allfit_best_json <- function(data, formula, REML) {
  jsonlite::toJSON(allfit_best(data, formula, REML), auto_unbox = TRUE, digits = NA,
                   null = "null", na = "null")
}

# lme4's profiled criterion (REML criterion or deviance) at each θ in `thetas` (a list of
# numeric vectors in lme4's order); NA where lme4 refuses a θ.
devfun_at <- function(data, formula, REML, thetas) {
  f <- do.call(mkLmerDevfun, lFormula(stats::as.formula(formula), data = data, REML = REML))
  vapply(thetas, function(th) tryCatch(f(as.numeric(th)), error = function(e) NA_real_), 0)
}

# Run as a script (Rscript r_scripts/allfit.R, from the repository root) it writes the lme4
# numbers tests/test_crosseval.py and tests/test_report.py check against:
# tests/references/crosseval_sleepstudy.json. Sourced as a library, nothing below runs.
.write_crosseval_references <- function(path = "tests/references/crosseval_sleepstudy.json") {
  out <- list(lme4 = as.character(utils::packageVersion("lme4")), R = R.version.string,
              cases = list())
  specs <- list(
    list(id = "sleepstudy-slopes-ML", formula = "Reaction ~ Days + (Days | Subject)", REML = FALSE),
    list(id = "sleepstudy-slopes-REML", formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE),
    list(id = "sleepstudy-uncorrelated-REML", formula = "Reaction ~ Days + (Days || Subject)",
         REML = TRUE))
  for (s in specs) {
    m <- lmer(stats::as.formula(s$formula), data = sleepstudy, REML = s$REML)
    vc <- as.data.frame(VarCorr(m))
    vc$var1[is.na(vc$var1)] <- NA
    th <- unname(getME(m, "theta"))
    # probe points: lme4's optimum, a perturbed θ (what an early-stopping optimizer returns),
    # and boundary points (a zero slope variance; a correlation of +1)
    probes <- list(optimum = th, perturbed = th * c(1.3, 1, 0.7)[seq_along(th)],
                   zero_slope = replace(th, length(th), 0))
    if (length(th) == 3) probes$corr_plus1 <- c(th[1], th[3], 0)
    out$cases[[s$id]] <- list(
      formula = s$formula, REML = s$REML,
      record = list(impl = "lme4", case_id = s$id, REML = s$REML, sigma = sigma(m),
                    theta = th, objective = .criterion(m),
                    fixef = as.list(fixef(m)),
                    fixef_se = as.list(setNames(sqrt(diag(as.matrix(vcov(m)))),
                                                names(fixef(m)))),
                    loglik = as.numeric(logLik(m)), nobs = nobs(m),
                    ngroups = as.list(ngrps(m)),
                    varcorr = lapply(seq_len(nrow(vc)), function(i) list(
                      grp = vc$grp[i], var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
                      var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
                      vcov = vc$vcov[i], sdcor = vc$sdcor[i]))),
      probes = lapply(probes, function(p) list(
        theta = p, objective = devfun_at(sleepstudy, s$formula, s$REML, list(p)))),
      allfit = allfit_best(sleepstudy, s$formula, s$REML))
  }
  writeLines(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
             path)
  invisible(path)
}

if (sys.nframe() == 0L) {
  suppressPackageStartupMessages(library(lme4))
  .write_crosseval_references()
}
