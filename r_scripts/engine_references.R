# Reference fits for mixedref's engine tests (tests/test_lmer.py), from lme4.
#
# For each case this writes tests/references/engine/<case>.json with
#   - the design exactly as lme4's lFormula builds it (y, X with R's column names, per
#     random-effects term: grouping factor, column names, the term's model matrix, level codes
#     and levels; prior weights and offset), so the engine is tested independently of the
#     formula parser, and the data columns so lmer(formula, data) can be tested too;
#   - lme4's answers: objective (devcomp$cmp), fixef, se, sigma, theta, VarCorr, logLik,
#     AIC/BIC, isSingular, feval, and for some cases ranef with condVar.
#
# Run from the repository root:  Rscript r_scripts/engine_references.R

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
Sys.setlocale("LC_COLLATE", "C")

outdir <- file.path("tests", "references", "engine")
dir.create(outdir, recursive = TRUE, showWarnings = FALSE)

sleep <- sleepstudy
sleep$w <- 1 + (sleep$Days %% 3) / 2
sleep$off <- sin(seq_len(nrow(sleep)))

term_design <- function(reTrms) {
  fl <- reTrms$flist
  asgn <- attr(fl, "assign")
  lapply(seq_along(reTrms$Ztlist), function(i) {
    f <- fl[[asgn[i]]]
    q <- length(reTrms$cnms[[i]])
    Z <- as.matrix(t(reTrms$Ztlist[[i]]))
    codes <- as.integer(f) - 1L
    Xt <- sapply(seq_len(q), function(j) Z[cbind(seq_along(codes), codes * q + j)])
    list(group = names(fl)[asgn[i]], columns = reTrms$cnms[[i]],
         X = unname(as.data.frame(matrix(Xt, ncol = q))), codes = codes,
         levels = levels(f))
  })
}

data_columns <- function(d) {
  lapply(d, function(col) if (is.factor(col)) as.character(col) else col)
}

run_case <- function(id, formula, data, REML = TRUE, weights = NULL, offset = NULL,
                     condvar = FALSE) {
  args <- list(formula = as.formula(formula), data = data, REML = REML)
  if (!is.null(weights)) args$weights <- data[[weights]]
  if (!is.null(offset)) args$offset <- data[[offset]]
  msgs <- character()
  m <- withCallingHandlers(do.call(lmer, args),
    warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(c) { msgs <<- c(msgs, conditionMessage(c)); invokeRestart("muffleMessage") })
  lf <- do.call(lFormula, args)
  X <- lf$X
  vc <- as.data.frame(VarCorr(m))
  out <- list(
    case = id, formula = formula, REML = REML,
    lme4_version = as.character(packageVersion("lme4")),
    R_version = R.version.string,
    weights_column = weights, offset_column = offset,
    data = data_columns(data),
    design = list(
      y = unname(as.numeric(model.response(lf$fr))),
      X = unname(as.data.frame(X)), fixef_names = colnames(X),
      weights = if (is.null(weights)) NULL else unname(as.numeric(data[[weights]])),
      offset = if (is.null(offset)) NULL else unname(as.numeric(data[[offset]])),
      terms = term_design(lf$reTrms)
    ),
    objective = unname(m@devcomp$cmp[if (REML) "REML" else "dev"]),
    fixef = as.list(fixef(m)),
    se = as.list(setNames(sqrt(diag(as.matrix(vcov(m)))), names(fixef(m)))),
    vcov = unname(as.data.frame(as.matrix(vcov(m)))),
    sigma = sigma(m),
    theta = unname(getME(m, "theta")),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(
      grp = vc$grp[i], var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
      var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
      vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
    loglik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
    aic = AIC(m), bic = BIC(m), nobs = nobs(m), ngroups = as.list(ngrps(m)),
    singular = isSingular(m), feval = m@optinfo$feval, messages = msgs
  )
  if (condvar) {
    re <- ranef(m, condVar = TRUE)
    out$ranef <- lapply(re, function(d) list(
      levels = rownames(d), columns = colnames(d), values = unname(as.data.frame(d)),
      condvar = lapply(seq_len(nrow(d)), function(l) {
        pv <- attr(d, "postVar")
        unname(pv[, , l, drop = TRUE])
      })))
  }
  write_json(out, file.path(outdir, paste0(id, ".json")), auto_unbox = TRUE, digits = I(17),
             null = "null", na = "null", pretty = FALSE)
  cat(sprintf("%-28s objective %.10g  nfev %d\n", id, out$objective, out$feval))
}

run_case("sleepstudy-corr-REML", "Reaction ~ Days + (Days | Subject)", sleep, condvar = TRUE)
run_case("sleepstudy-corr-ML", "Reaction ~ Days + (Days | Subject)", sleep, REML = FALSE)
run_case("sleepstudy-uncorr-REML", "Reaction ~ Days + (Days || Subject)", sleep)
run_case("sleepstudy-intercept-REML", "Reaction ~ Days + (1 | Subject)", sleep, condvar = TRUE)
run_case("sleepstudy-slope-REML", "Reaction ~ Days + (0 + Days | Subject)", sleep)
run_case("dyestuff-REML", "Yield ~ 1 + (1 | Batch)", Dyestuff)
run_case("dyestuff-ML", "Yield ~ 1 + (1 | Batch)", Dyestuff, REML = FALSE)
run_case("dyestuff2-REML", "Yield ~ 1 + (1 | Batch)", Dyestuff2)
run_case("penicillin-crossed-REML", "diameter ~ 1 + (1 | plate) + (1 | sample)", Penicillin,
         condvar = TRUE)
run_case("pastes-nested-REML", "strength ~ 1 + (1 | batch/cask)", Pastes)
run_case("cake-REML", "angle ~ recipe * temperature + (1 | recipe:replicate)", cake)
run_case("sleepstudy-weighted-REML", "Reaction ~ Days + (Days | Subject)", sleep, weights = "w")
run_case("sleepstudy-offset-ML", "Reaction ~ Days + (Days | Subject)", sleep, REML = FALSE,
         offset = "off")
