# glmmtmb_glmm_json(): glmmTMB's estimates of a GLMM case with a scale parameter (Gamma; glmmTMB
# 1.1.5 has no inverse.gaussian), stated in lme4's terms, for the best known optimum of these
# families (harness/commands/best_known_scale.py): fixed effects by R's column names, VarCorr rows as
# lme4's as.data.frame(VarCorr(m)) names them (per term the variances, then the correlations
# column by column, then the residual row: sigma^2 and sigma, sigma = 1/sqrt(shape) as glmmTMB's
# sigma() and lme4 report it), logLik (glmmTMB's Laplace) and its convergence messages.
# Sourced by harness/core/rbridge.py (functions only; nothing runs on sourcing). Needs jsonlite;
# glmmTMB is loaded on first use.

glmmtmb_glmm_json <- function(data, formula, family, link = NULL, nAGQ = 1, weights = NULL) {
  out <- list(impl = "glmmTMB", error = NULL, messages = list())
  res <- tryCatch({
    if (!requireNamespace("glmmTMB", quietly = TRUE)) stop("R package glmmTMB is not installed")
    fam <- if (is.null(link)) get(family, mode = "function")() else
      get(family, mode = "function")(link = link)
    msgs <- character(0)
    t0 <- proc.time()[["elapsed"]]
    m <- withCallingHandlers(
      glmmTMB::glmmTMB(stats::as.formula(formula), data = data, family = fam),
      warning = function(w) {
        msgs <<- c(msgs, conditionMessage(w))
        invokeRestart("muffleWarning")
      })
    out$seconds <- proc.time()[["elapsed"]] - t0
    out$fixef <- as.list(glmmTMB::fixef(m)$cond)
    rows <- list()
    vc <- glmmTMB::VarCorr(m)$cond
    for (g in names(vc)) {
      S <- unclass(vc[[g]])
      cols <- colnames(S)
      for (i in seq_along(cols))
        rows[[length(rows) + 1]] <- list(grp = g, var1 = cols[i], var2 = NULL,
                                         vcov = S[i, i], sdcor = sqrt(S[i, i]))
      for (j in seq_along(cols)) for (i in seq_along(cols)) if (i > j)
        rows[[length(rows) + 1]] <- list(grp = g, var1 = cols[j], var2 = cols[i],
                                         vcov = S[i, j], sdcor = S[i, j] / sqrt(S[i, i] * S[j, j]))
    }
    s <- stats::sigma(m)
    rows[[length(rows) + 1]] <- list(grp = "Residual", var1 = NULL, var2 = NULL, vcov = s^2,
                                     sdcor = s)
    out$varcorr <- rows
    out$sigma <- s
    out$loglik <- as.numeric(stats::logLik(m))
    out$converged <- isTRUE(m$fit$convergence == 0) && isTRUE(m$sdr$pdHess)
    out$messages <- as.list(c(msgs, if (!isTRUE(m$sdr$pdHess)) "non-positive-definite Hessian"))
    out
  }, error = function(e) {
    out$error <- paste("glmmTMB failed:", conditionMessage(e))
    out
  })
  as.character(jsonlite::toJSON(res, auto_unbox = TRUE, digits = NA, null = "null"))
}
