# glmmtmb_record(): fit one harness case with glmmTMB (Gaussian, its defaults) and return the
# FitRecord (harness/core/record.py) as an R list, in lme4's terms: varcorr rows named exactly as
# lme4's as.data.frame(VarCorr(m)) names them and θ in lme4's parametrization, so glmmTMB's
# answer compares with lme4's row by row and its θ can be evaluated by lme4's devfun.
# Sourced by harness/core/rbridge.py (functions only; nothing runs on sourcing), and by
# r_scripts/record_glmmtmb.R. Needs lme4 attached, glmmTMB installed (loaded on first use),
# jsonlite, and the helpers of r_scripts/lmer_record.R (record_fields() from record_schema.R, .as_object,
# lmer_versions, .with_time_limit), which the bridge sources into the same environment.
#
# How glmmTMB's estimates become lme4's quantities:
# - lme4's random-effects terms (order, grouping-factor names, column names) come from
#   lme4::lFormula on the same formula and data; each lme4 term is matched to the glmmTMB term
#   with the same grouping factor whose columns contain the lme4 term's columns, and its Σ is
#   that block of glmmTMB's VarCorr. glmmTMB fits (x || g) as one diag() term where lme4 has
#   two terms (1 | g) and (0 + x | g); the diagonal blocks are the same model. Where the two
#   packages' models differ (e.g. (f || g) with a factor f: lme4 keeps f's columns correlated,
#   glmmTMB's diag() does not) the record is an error saying so, never a silent mismatch.
# - θ: per lme4 term the lower Cholesky factor of Σ/σ² (a positive-semidefinite one at a
#   boundary), its lower triangle column by column; terms in lme4's order.
# - varcorr: lme4's own as.data.frame() method applied to these Σ blocks (named as lme4's
#   mkVarCorr names them: make.names(unique = TRUE) where a factor has several terms).
# - objective: -2 logLik. glmmTMB's REML log-likelihood integrates the fixed effects out (the
#   Laplace approximation is exact for a Gaussian model), which is the restricted likelihood on
#   lme4's scale; r_scripts/record_glmmtmb.R checks this per case by evaluating lme4's devfun
#   at the recorded θ and storing both numbers.

# "" when glmmTMB (and TMB) can be loaded, else the reason. (`data` is unused: the bridge's
# call() passes one first.)
glmmtmb_unavailable <- function(data = NULL) {
  if (!requireNamespace("glmmTMB", quietly = TRUE))
    return("R package glmmTMB is not installed (Debian: apt-get install r-cran-glmmtmb)")
  ok <- tryCatch({
    suppressWarnings(suppressMessages(loadNamespace("glmmTMB")))
    ""
  }, error = function(e) paste("glmmTMB failed to load:", conditionMessage(e)))
  ok
}

# lmer_versions() plus glmmTMB's and TMB's.
glmmtmb_versions <- function() {
  v <- lmer_versions()
  for (p in c("glmmTMB", "TMB"))
    v[[p]] <- tryCatch(as.character(utils::packageVersion(p)), error = function(e) NA)
  v
}

# The lower-triangular L with L %*% t(L) == S for a positive-semidefinite S (a Cholesky factor
# that sets the column of a zero pivot to zero instead of failing).
.psd_lower_chol <- function(S) {
  n <- nrow(S)
  L <- matrix(0, n, n)
  scale <- max(abs(diag(S)), 0)
  for (j in seq_len(n)) {
    prev <- seq_len(j - 1)
    d <- S[j, j] - sum(L[j, prev]^2)
    if (d > 1e-14 * scale && d > 0) {
      L[j, j] <- sqrt(d)
      if (j < n) for (i in (j + 1):n)
        L[i, j] <- (S[i, j] - sum(L[i, prev] * L[j, prev])) / L[j, j]
    }
  }
  L
}

# For each of lme4's terms (reTrms of lFormula), the matching block of glmmTMB's covariance:
# a list of list(group, columns, Sigma). Stops with a message when the models differ.
.glmmtmb_lme4_blocks <- function(fit, reTrms) {
  vc <- glmmTMB::VarCorr(fit)$cond
  gcnms <- fit$modelInfo$reTrms$cond$cnms
  gstruc <- fit$modelInfo$reStruc$condReStruc
  codes <- unname(vapply(gstruc, function(s) names(s$blockCode)[1], ""))
  if (length(vc) != length(gcnms))
    stop("glmmTMB's VarCorr and its random-effects terms do not correspond")
  used <- lapply(gcnms, function(x) character(0))
  cnms <- reTrms$cnms
  out <- vector("list", length(cnms))
  for (i in seq_along(cnms)) {
    g <- names(cnms)[i]
    cols <- cnms[[i]]
    hit <- which(names(gcnms) == g & vapply(seq_along(gcnms), function(k)
      all(cols %in% gcnms[[k]]) && !any(cols %in% used[[k]]), TRUE))
    if (length(hit) == 0)
      stop(sprintf("glmmTMB has no random-effects term for lme4's (%s | %s); its terms: %s",
                   paste(cols, collapse = " + "), g,
                   paste(sprintf("(%s | %s)", vapply(gcnms, paste, "", collapse = " + "),
                                 names(gcnms)), collapse = ", ")))
    k <- hit[1]
    if (length(cols) < length(gcnms[[k]]) && !identical(codes[k], "diag"))
      stop(sprintf("glmmTMB's term (%s | %s) is one correlated block where lme4 splits it",
                   paste(gcnms[[k]], collapse = " + "), g))
    if (identical(codes[k], "diag") && length(cols) > 1)
      stop(sprintf(paste("glmmTMB fits (%s | %s) with a diagonal covariance where lme4 has a",
                         "correlated term of %d columns: a different model (lme4 expands",
                         "|| only between terms)"), paste(gcnms[[k]], collapse = " + "), g,
                   length(cols)))
    if (!codes[k] %in% c("us", "diag"))
      stop(sprintf("glmmTMB covariance structure %s has no lme4 counterpart", codes[k]))
    S <- unclass(vc[[k]])
    S <- matrix(as.numeric(S), nrow(S), dimnames = list(gcnms[[k]], gcnms[[k]]))
    used[[k]] <- c(used[[k]], cols)
    out[[i]] <- list(group = g, columns = cols, Sigma = S[cols, cols, drop = FALSE])
  }
  left <- vapply(seq_along(gcnms), function(k) !setequal(used[[k]], gcnms[[k]]), TRUE)
  if (any(left))
    stop(sprintf("glmmTMB's term(s) %s have columns lme4's terms do not",
                 paste(names(gcnms)[left], collapse = ", ")))
  out
}

# glmmTMB's family for a catalog family: Gaussian (NULL: a linear mixed model) or the negative
# binomial as nbinom2 (variance mu + mu^2/theta, theta = sigma(fit): lme4's glmer.nb model,
# with theta estimated jointly with the rest by TMB's Laplace approximation). Other GLMM
# families are not wired here: an error saying so.
glmmtmb_family <- function(family = NULL, link = NULL) {
  if (is.null(family)) return(stats::gaussian())
  if (identical(family, "negative.binomial"))
    return(glmmTMB::nbinom2(link = if (is.null(link)) "log" else link))
  stop(sprintf("glmmTMB's record is wired for Gaussian models and the negative binomial, not %s",
               family))
}

# Fit `formula` (a string) to `data` with glmmTMB (Gaussian, or `family` as glmmtmb_family()
# takes it); return the record, never an error. `timeout` (seconds; NULL: none) stops the fit:
# "timeout: glmmTMB did not finish...".
glmmtmb_record <- function(data, formula, REML, case_id, impl = "glmmTMB", timeout = NULL,
                           family = NULL, link = NULL) {
  rec <- empty_record(impl, case_id, REML)
  why <- glmmtmb_unavailable()
  rec$versions <- glmmtmb_versions()
  if (nzchar(why)) {
    rec$error <- why
    return(rec)
  }
  out <- fit_captured(function() {
    glmmTMB::glmmTMB(stats::as.formula(formula), data = data,
                     family = glmmtmb_family(family, link), REML = isTRUE(REML))
  }, timeout, "glmmTMB")
  fit <- out$fit
  msgs <- out$messages
  rec["seconds"] <- list(out$seconds)  # [<- keeps a NULL field; $<- would drop it
  rec["error"] <- list(out$error)
  opt <- if (is.null(fit)) NULL else fit$fit
  if (!is.null(opt) && !identical(as.numeric(opt$convergence), 0))
    msgs <- c(msgs, paste("optimizer (nlminb):", opt$message))
  rec$messages <- as.list(msgs)
  if (is.null(fit)) return(rec)
  if (!is.null(family)) {
    rec["family"] <- list(family)
    rec["link"] <- list(fit$modelInfo$family$link)
    rec["nAGQ"] <- list(1L)  # TMB's Laplace approximation
  }
  out <- tryCatch(.glmmtmb_fill(rec, fit, data, formula, REML, msgs, nb = !is.null(family)),
                  error = function(e) {
                    rec$error <- paste("glmmTMB's fit cannot be stated in lme4's terms:",
                                       conditionMessage(e))
                    rec
                  })
  out
}

# The record's estimates from a glmmTMB fit, in lme4's terms (see the header).
# `nb`: a negative binomial fit, whose sigma(fit) is its dispersion theta (nb_theta), while
# lme4's sigma is 1 and its theta (and varcorr, without a Residual row) the covariance itself.
.glmmtmb_fill <- function(rec, fit, data, formula, REML, msgs, nb = FALSE) {
  ctrl <- lme4::lmerControl(check.nobs.vs.nlev = "ignore", check.nobs.vs.rankZ = "ignore",
                            check.nlev.gtreq.5 = "ignore", check.nlev.gtr.1 = "ignore",
                            check.nobs.vs.nRE = "ignore")
  lf <- suppressWarnings(suppressMessages(
    lme4::lFormula(stats::as.formula(formula), data = data, REML = isTRUE(REML),
                   control = ctrl)))
  reTrms <- lf$reTrms
  blocks <- .glmmtmb_lme4_blocks(fit, reTrms)
  sigma <- stats::sigma(fit)
  if (nb) {
    rec$nb_theta <- sigma
    sigma <- 1
  }
  beta <- glmmTMB::fixef(fit)$cond
  rec$fixef <- .as_object(beta)
  V <- as.matrix(stats::vcov(fit)$cond)
  se <- sqrt(pmax(diag(V), 0))  # NaN variances (non-positive-definite Hessian) stay NaN
  se[!is.finite(diag(V)) | diag(V) < 0] <- NaN
  rec$fixef_se <- .as_object(setNames(se[names(beta)], names(beta)))
  rec$sigma <- sigma
  theta <- unlist(lapply(blocks, function(b) {
    L <- .psd_lower_chol(b$Sigma / sigma^2)
    L[lower.tri(L, diag = TRUE)]
  }))
  nms <- names(reTrms$cnms)
  vcl <- lapply(blocks, function(b) {
    S <- b$Sigma
    sd <- sqrt(pmax(diag(S), 0))
    corr <- t(S / sd) / sd
    diag(corr) <- 1
    structure(S, dimnames = list(b$columns, b$columns), stddev = setNames(sd, b$columns),
              correlation = corr)
  })
  if (anyDuplicated(nms)) nms <- make.names(nms, unique = TRUE)  # as lme4:::mkVarCorr
  names(vcl) <- nms
  vcl <- structure(vcl, sc = sigma, useSc = !nb, class = "VarCorr.merMod")
  vc <- as.data.frame(vcl)
  rec$varcorr <- lapply(seq_len(nrow(vc)), function(i) {
    list(grp = vc$grp[i],
         var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
         var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
         vcov = vc$vcov[i], sdcor = vc$sdcor[i])
  })
  rec$theta <- as.list(unname(theta))
  # logLik() is NA when the Hessian is not positive definite (converged is FALSE then); the
  # log-likelihood glmmTMB reached is still -fit$fit$objective, which is what lme4's devfun
  # would be compared with
  rec$loglik <- as.numeric(stats::logLik(fit))
  if (!is.finite(rec$loglik)) rec$loglik <- -as.numeric(fit$fit$objective)
  rec$objective <- -2 * rec$loglik
  rec$nobs <- stats::nobs(fit)
  rec$ngroups <- .as_object(vapply(reTrms$flist, nlevels, 0L))
  rec$converged <- identical(as.numeric(fit$fit$convergence), 0) &&
    isTRUE(fit$sdr$pdHess) && !any(grepl("converge", msgs, ignore.case = TRUE))
  lower <- reTrms$lower
  rec$singular <- any(theta[lower == 0] < 1e-4)  # lme4's isSingular(tol = 1e-4)
  rec$nfev <- unname(fit$fit$evaluations[["function"]])
  rec
}

# The record as a JSON string (15 significant digits, NULL -> null): what the bridge parses.
glmmtmb_record_json <- function(data, formula, REML, case_id, impl = "glmmTMB",
                                timeout = NULL, family = NULL, link = NULL) {
  rec <- glmmtmb_record(data, formula, REML, case_id, impl, timeout, family, link)
  as.character(jsonlite::toJSON(rec, auto_unbox = TRUE, digits = NA, null = "null",
                                na = "null"))
}
