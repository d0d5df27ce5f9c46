# lmer_record(): fit one harness case with lme4's defaults and return the FitRecord
# (harness/core/record.py) as an R list, every warning and message captured inside R.
# Sourced by harness/core/rbridge.py (functions only; nothing runs on sourcing), and by
# r_scripts/record_references.R. Needs lme4 attached; jsonlite for lmer_record_json().

# The record's fields come from harness/core/record.schema.json (record_fields(), validate_record():
# r_scripts/record_schema.R), so the two languages share one definition.

# A named list that serializes to a JSON object even when empty.
.as_object <- function(x) {
  if (length(x) == 0) return(setNames(list(), character(0)))
  as.list(x)
}

# Versions of what produced the numbers: R, lme4, Matrix and the BLAS/LAPACK in use.
lmer_versions <- function() {
  list(R = R.version.string,
       lme4 = as.character(utils::packageVersion("lme4")),
       Matrix = as.character(utils::packageVersion("Matrix")),
       BLAS = unname(extSoftVersion()["BLAS"]),
       LAPACK = La_library())
}

# The BLAS kernel behind the numbers, as far as R knows it without compiled code: at a singular
# fit lmerTest's df move with the kernel (r_scripts/blas_spread.R). A DYNAMIC_ARCH OpenBLAS
# (Debian's) picks its kernel for the CPU when it loads, or takes OPENBLAS_CORETYPE, and prints
# its choice under OPENBLAS_VERBOSE=2 ("Core: Haswell"); R cannot call openblas_get_corename(),
# so a child R started with this process's environment on this CPU is asked (the choice depends
# on nothing else). BLAS_threads is OPENBLAS_NUM_THREADS as OpenBLAS read it when it loaded.
# Not part of lmer_versions(): the records' versions stay as recorded; record_references.R adds
# this to its document's versions, the harness's R (harness/core/rbridge.py) reads the same from the
# loaded library itself.
blas_kernel <- function() {
  libs <- paste(extSoftVersion()["BLAS"], La_library())
  core <- "unknown (not OpenBLAS)"
  if (grepl("openblas", libs, ignore.case = TRUE)) {
    err <- tryCatch(suppressWarnings(system2(file.path(R.home("bin"), "Rscript"),
                                             c("--vanilla", "-e", shQuote("invisible(0)")),
                                             stdout = FALSE, stderr = TRUE,
                                             env = "OPENBLAS_VERBOSE=2", timeout = 60)),
                    error = function(e) character(0))
    used <- sub("^Core: *", "", grep("^Core: ", err, value = TRUE))
    core <- if (length(used)) used[1] else "unknown (OpenBLAS did not say: not DYNAMIC_ARCH?)"
  }
  threads <- Sys.getenv("OPENBLAS_NUM_THREADS")
  list(BLAS_core = core,
       BLAS_threads = if (nzchar(threads)) threads else
         sprintf("OpenBLAS's default (OPENBLAS_NUM_THREADS unset): %d cores",
                 parallel::detectCores()))
}

# Evaluate `expr` under an elapsed-time limit of `seconds` (NULL or Inf: none), lifted again
# on exit however `expr` ends. R checks the limit only at its interrupt points (lmer's R-level
# optimizer loop has them); running out raises an error "reached elapsed time limit".
.with_time_limit <- function(expr, seconds) {
  if (is.null(seconds) || !is.finite(seconds)) return(expr)
  on.exit(setTimeLimit(cpu = Inf, elapsed = Inf, transient = FALSE))
  setTimeLimit(elapsed = seconds, transient = TRUE)
  expr
}

# A record with every field present and nothing estimated (the shape of a failed fit).
empty_record <- function(impl, case_id, REML) {
  fields <- record_fields()
  rec <- setNames(vector("list", length(fields)), fields)
  rec$impl <- impl
  rec$case_id <- case_id
  rec$REML <- isTRUE(REML)
  rec$fixef <- .as_object(NULL)
  rec$fixef_se <- .as_object(NULL)
  rec$varcorr <- list()
  rec$ngroups <- .as_object(NULL)
  rec$messages <- list()
  rec
}

# Run `fit_fun()` under the time limit with every warning and message captured inside R;
# never an error: list(fit (NULL on failure), messages, seconds, error). `what` names the
# engine in the timeout text ("timeout: lme4 did not finish within 5 s").
fit_captured <- function(fit_fun, timeout, what) {
  msgs <- character(0)
  seconds <- NULL
  error <- NULL
  t0 <- Sys.time()
  fit <- tryCatch({
    t0 <- Sys.time()
    m <- withCallingHandlers(.with_time_limit(fit_fun(), timeout),
      warning = function(w) {
        msgs <<- c(msgs, conditionMessage(w))
        invokeRestart("muffleWarning")
      },
      message = function(m) {
        msgs <<- c(msgs, sub("\n$", "", conditionMessage(m)))
        invokeRestart("muffleMessage")
      })
    seconds <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
    m
  }, error = function(e) {
    timed_out <- !is.null(timeout) && is.finite(timeout) &&
      (grepl("elapsed time limit", conditionMessage(e), fixed = TRUE) ||
         as.numeric(difftime(Sys.time(), t0, units = "secs")) >= timeout)
    if (timed_out) {
      seconds <<- as.numeric(difftime(Sys.time(), t0, units = "secs"))
      error <<- sprintf("timeout: %s did not finish within %s s", what, format(timeout))
    } else error <<- conditionMessage(e)
    NULL
  })
  list(fit = fit, messages = msgs, seconds = seconds, error = error)
}

# Fit `formula` (a string) to `data` with lmer's defaults; return the record, never an error.
# `optimizer` (e.g. "bobyqa", "Nelder_Mead") replaces lmer's default optimizer; NULL keeps it.
# `control` (an lmerControl) replaces both, e.g. record_grid.R --tight's converged fits.
# `timeout` (seconds; NULL: none) stops the fit, recorded as "timeout: lme4 did not finish...".
lmer_record <- function(data, formula, REML, case_id, impl = "lme4", optimizer = NULL,
                        timeout = NULL, intervals = FALSE, anova = NULL, grid = NULL,
                        control = NULL) {
  rec <- empty_record(impl, case_id, REML)
  rec$versions <- lmer_versions()
  out <- fit_captured(function() {
    f <- stats::as.formula(formula)
    if (!is.null(control)) lme4::lmer(f, data = data, REML = isTRUE(REML), control = control)
    else if (is.null(optimizer)) lme4::lmer(f, data = data, REML = isTRUE(REML))
    else lme4::lmer(f, data = data, REML = isTRUE(REML),
                    control = lme4::lmerControl(optimizer = optimizer))
  }, timeout, "lme4")
  fit <- out$fit
  msgs <- out$messages
  rec["seconds"] <- list(out$seconds)  # [<- keeps a NULL field; $<- would drop it
  rec["error"] <- list(out$error)
  rec$messages <- as.list(msgs)
  if (is.null(fit)) return(rec)
  rec <- merMod_fields(rec, fit, msgs)
  cmp <- fit@devcomp$cmp
  rec$objective <- unname(if (isTRUE(REML)) cmp[["REML"]] else cmp[["dev"]])
  mt <- lmer_test_model(fit)  # once: coef_tests and anova_terms_rows both read it
  rec["coef_tests"] <- list(coef_tests(fit, REML, mt))
  rec["predictions"] <- list(c(prediction_rows(fit, data), grid_rows(fit, data, grid)))
  rec["confint"] <- list(confint_rows(fit, profile = isTRUE(intervals)))
  rec["anova"] <- list(anova_rows(fit, data, anova, REML))
  rec["anova_terms"] <- list(anova_terms_rows(fit, REML, mt))
  rec
}

# lmerTest's view of the fit (as_lmerModLmerTest: its numDeriv Hessian of (theta, sigma), as
# costly as the fit itself on InstEval), made once per fit for coef_tests and anova_terms_rows;
# NULL beyond SATTERTHWAITE_MAX_NOBS rows, without lmerTest, or when lmerTest fails. It is a
# function of the fit alone (lmerTest rebuilds the devfun from the fit's call, in the
# environment of its formula when this function's frame cannot evaluate it), so sharing it
# gives both tables the numbers they had when each made its own.
lmer_test_model <- function(m) {
  if (stats::nobs(m) > SATTERTHWAITE_MAX_NOBS ||
      !requireNamespace("lmerTest", quietly = TRUE)) return(NULL)
  tryCatch(suppressWarnings(suppressMessages(lmerTest::as_lmerModLmerTest(m))),
           error = function(e) NULL)
}

#: lmerTest's F tests of model terms recorded per fit: Satterthwaite's Types I, II and III, and
#: Kenward-Roger's Type III (each of its terms costs pbkrtest a KRmodcomp, vcovAdj each time);
#: the limits are coef_tests's. As harness/core/comparators/anova_terms.py's wanted_tables.
ANOVA_TERMS_TABLES <- list(c("Satterthwaite", "1"), c("Satterthwaite", "2"),
                           c("Satterthwaite", "3"), c("Kenward-Roger", "3"))

# lmerTest's anova(m, type =, ddf =) and lme4's anova(m) of one fit as rows {ddf, type, term,
# SumSq, MeanSq, NumDF, DenDF, F, p} (lme4's: ddf "lme4", type "", NumDF its npar, no DenDF or
# p); NULL for a model without fixed-effect terms, without lmerTest, or beyond the size limits.
# `mt`: lmer_test_model(m), when the caller has it already.
anova_terms_rows <- function(m, REML, mt = lmer_test_model(m)) {
  n <- stats::nobs(m)
  if (length(attr(stats::terms(m), "term.labels")) == 0 || is.null(mt)) return(NULL)
  quiet <- function(expr) tryCatch(suppressWarnings(suppressMessages(expr)),
                                   error = function(e) NULL)
  num <- function(x) if (is.finite(x)) unname(x) else NULL
  rows <- list()
  add <- function(tab, ddf, type) {
    for (term in rownames(tab)) {
      lme4_table <- ddf == "lme4"
      rows[[length(rows) + 1]] <<- list(
        ddf = ddf, type = type, term = term, SumSq = num(tab[term, "Sum Sq"]),
        MeanSq = num(tab[term, "Mean Sq"]),
        NumDF = num(if (lme4_table) tab[term, "npar"] else tab[term, "NumDF"]),
        DenDF = if (lme4_table) NULL else num(tab[term, "DenDF"]),
        F = num(tab[term, "F value"]), p = if (lme4_table) NULL else num(tab[term, "Pr(>F)"]))
    }
  }
  for (tt in ANOVA_TERMS_TABLES) {
    if (tt[1] == "Kenward-Roger" && !(isTRUE(REML) && n <= KENWARD_ROGER_MAX_NOBS &&
                                      requireNamespace("pbkrtest", quietly = TRUE))) next
    tab <- quiet(stats::anova(mt, type = as.integer(tt[2]), ddf = tt[1]))
    if (!is.null(tab)) add(tab, tt[1], tt[2])
  }
  tab <- quiet(stats::anova(mt, ddf = "lme4"))
  if (!is.null(tab)) add(tab, "lme4", "")
  if (length(rows)) rows else NULL
}

# anova(m0, m1) with m0 the catalog's partner model (`partner`, a formula; the case's `anova:`
# entry) fitted to the same data as `m1`, REML or ML alike (anova refits REML fits with ML):
# rows {model, npar, AIC, BIC, logLik, deviance, Chisq, Df, p} in anova's order; NULL without
# a partner or when the partner or anova fails. `fit_partner` (a function of the formula
# string) fits the partner; NULL: lmer (glmer_record.R gives its glmer).
anova_rows <- function(m1, data, partner, REML, fit_partner = NULL) {
  if (is.null(partner)) return(NULL)
  quiet <- function(expr) tryCatch(suppressWarnings(suppressMessages(expr)),
                                   error = function(e) NULL)
  m0 <- quiet(if (is.null(fit_partner))
                lme4::lmer(stats::as.formula(partner), data = data, REML = isTRUE(REML))
              else fit_partner(partner))
  if (is.null(m0)) return(NULL)
  a <- quiet(stats::anova(m0, m1))
  if (is.null(a)) return(NULL)
  num <- function(x) if (is.finite(x)) unname(x) else NULL
  lapply(seq_len(nrow(a)), function(i)
    list(model = rownames(a)[i], npar = as.integer(a$npar[i]), AIC = num(a$AIC[i]),
         BIC = num(a$BIC[i]), logLik = num(a$logLik[i]), deviance = num(a$deviance[i]),
         Chisq = num(a$Chisq[i]), Df = if (is.finite(a$Df[i])) as.integer(a$Df[i]) else 0L,
         p = num(a[["Pr(>Chisq)"]][i])))
}

# confint(m, oldNames = FALSE) as rows {method, parm, lower, upper}: the Wald intervals of the
# fixed effects always (lme4 gives NA for the variance parameters), the profile intervals of
# every parameter when `profile` (the catalog's `intervals` tag: profiling refits the model
# many times). Intervals lme4 cannot compute are left out.
confint_rows <- function(m, profile = FALSE) {
  rows <- list()
  add <- function(method, ci) {
    if (is.null(ci)) return()
    for (parm in rownames(ci)) {
      lo <- ci[parm, 1]
      hi <- ci[parm, 2]
      if (is.finite(lo) && is.finite(hi))
        rows[[length(rows) + 1]] <<- list(method = method, parm = parm, lower = lo, upper = hi)
    }
  }
  quiet <- function(expr) tryCatch(suppressWarnings(suppressMessages(expr)),
                                   error = function(e) NULL)
  add("Wald", quiet(stats::confint(m, method = "Wald", oldNames = FALSE)))
  if (profile) add("profile", quiet(stats::confint(m, method = "profile", oldNames = FALSE)))
  if (length(rows)) rows else NULL
}

# predict(m, newdata, type = `type`) on the data's first `k` rows at the population level
# (re.form = NA) and conditional on every term (re.form = NULL), and on the first row with every
# grouping factor at a level unseen in fitting (allow.new.levels = TRUE) when each grouping
# factor is a column of the data that the fixed part does not use: rows {re_form, row (0-based),
# new_levels, value, grid, type}. `type` "link" (an LMM's only scale) or "response" (GLMMs).
PREDICTION_ROWS <- 10
prediction_rows <- function(m, data, k = PREDICTION_ROWS, type = "link") {
  nd <- data[seq_len(min(k, nrow(data))), , drop = FALSE]
  quiet <- function(expr) tryCatch(suppressWarnings(expr), error = function(e) NULL)
  rows <- c(as_prediction_rows(quiet(stats::predict(m, newdata = nd, re.form = NA,
                                                    type = type)), "NA", type = type),
            as_prediction_rows(quiet(stats::predict(m, newdata = nd, type = type)), "NULL",
                               type = type))
  groups <- names(lme4::getME(m, "flist"))
  fixed_vars <- all.vars(lme4::nobars(stats::formula(m))[[3]])
  if (all(groups %in% names(data)) && !any(groups %in% fixed_vars)) {
    nd1 <- nd[1, , drop = FALSE]
    for (g in groups) {
      lv <- c(levels(factor(data[[g]])), NEW_LEVEL)
      nd1[[g]] <- factor(NEW_LEVEL, levels = lv)
    }
    rows <- c(rows, as_prediction_rows(
      quiet(stats::predict(m, newdata = nd1, allow.new.levels = TRUE, type = type)), "NULL",
      new_levels = TRUE, type = type))
  }
  if (length(rows)) rows else NULL
}
NEW_LEVEL <- "harness.new.level"

# One predict() result (NULL when it failed: no rows) as prediction rows {re_form, row (0-based),
# new_levels, value, grid, type}.
as_prediction_rows <- function(values, re_form, new_levels = FALSE, grid = FALSE,
                               type = "link")
  lapply(seq_along(values), function(i)
    list(re_form = re_form, row = i - 1L, new_levels = new_levels, value = unname(values[i]),
         grid = grid, type = type))

# predict(m, newdata) on the catalog's prediction grid (`grid`: column -> values, crossed as
# expand.grid, the other columns from the data's first row; a factor column keeps the data's
# levels, plus any new ones the grid names), at re.form = NA and NULL with allow.new.levels =
# TRUE: rows {re_form, row (0-based grid row), new_levels FALSE, value, grid TRUE, type}.
grid_rows <- function(m, data, grid, type = "link") {
  if (is.null(grid)) return(NULL)
  g <- expand.grid(grid, stringsAsFactors = FALSE, KEEP.OUT.ATTRS = FALSE)
  nd <- data[rep(1L, nrow(g)), , drop = FALSE]
  for (col in names(g)) {
    v <- g[[col]]
    nd[[col]] <- if (is.factor(data[[col]]))
      factor(as.character(v), levels = union(levels(data[[col]]), as.character(v)),
             ordered = is.ordered(data[[col]]))
    else as.numeric(v)
  }
  quiet <- function(expr) tryCatch(suppressWarnings(expr), error = function(e) NULL)
  rows <- c(
    as_prediction_rows(quiet(stats::predict(m, newdata = nd, re.form = NA,
                                            allow.new.levels = TRUE, type = type)), "NA",
                       grid = TRUE, type = type),
    as_prediction_rows(quiet(stats::predict(m, newdata = nd, allow.new.levels = TRUE,
                                            type = type)), "NULL", grid = TRUE, type = type))
  if (length(rows)) rows else NULL
}

# A grid as one line, "Days=0,4.5,12; Subject=308,new" (harness.core.catalog.grid_label).
grid_label <- function(grid) {
  paste(vapply(names(grid), function(k) paste0(k, "=", paste(as.character(grid[[k]]),
                                                            collapse = ",")), ""),
        collapse = "; ")
}

#: the largest fits whose denominator df are recorded: Satterthwaite (lmerTest's numDeriv
#: Hessian of (theta, sigma): InstEval's 73,421 rows included) and Kenward-Roger (pbkrtest's
#: dense n x n matrices, REML fits only); the same limits as harness/core/comparators/coef_tests.py
#: gives the adapters (wanted_ddf)
SATTERTHWAITE_MAX_NOBS <- 100000
KENWARD_ROGER_MAX_NOBS <- 2000

# lmerTest's coefficient tests as rows {ddf, term, se, df, p}: Satterthwaite for every fit up
# to SATTERTHWAITE_MAX_NOBS rows, Kenward-Roger (pbkrtest's adjusted SE) for REML fits up to
# KENWARD_ROGER_MAX_NOBS; NULL without lmerTest, beyond the limits or when lmerTest fails.
# `mt`: lmer_test_model(m), when the caller has it already.
coef_tests <- function(m, REML, mt = lmer_test_model(m)) {
  n <- stats::nobs(m)
  if (is.null(mt)) return(NULL)
  methods <- "Satterthwaite"
  if (isTRUE(REML) && n <= KENWARD_ROGER_MAX_NOBS && requireNamespace("pbkrtest", quietly = TRUE))
    methods <- c(methods, "Kenward-Roger")
  rows <- list()
  for (ddf in methods) {
    tab <- tryCatch(suppressWarnings(suppressMessages(summary(mt, ddf = ddf)$coefficients)),
                    error = function(e) NULL)
    if (is.null(tab) || !("df" %in% colnames(tab))) next
    for (term in rownames(tab)) {
      num <- function(x) if (is.finite(x)) x else NULL
      rows[[length(rows) + 1]] <- list(ddf = ddf, term = term,
                                       se = num(tab[term, "Std. Error"]),
                                       df = num(tab[term, "df"]),
                                       p = num(tab[term, "Pr(>|t|)"]))
    }
  }
  if (length(rows)) rows else NULL
}

# The fields every merMod (lmerMod or glmerMod) gives the same way: fixed effects and their SEs
# (vcov(m): for a GLMM lme4's Hessian-based default), sigma, varcorr rows, theta, logLik, sizes,
# convergence (the optimizer's code, lme4's checkConv codes, and any convergence warning among
# `msgs`), isSingular and the evaluation count.
merMod_fields <- function(rec, m, msgs) {
  rec$fixef <- .as_object(lme4::fixef(m))
  rec$fixef_se <- .as_object(setNames(sqrt(diag(as.matrix(stats::vcov(m)))), names(lme4::fixef(m))))
  rec$sigma <- stats::sigma(m)
  vc <- as.data.frame(lme4::VarCorr(m))
  rec$varcorr <- lapply(seq_len(nrow(vc)), function(i) {
    list(grp = vc$grp[i],
         var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
         var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i],
         vcov = vc$vcov[i], sdcor = vc$sdcor[i])
  })
  rec$theta <- as.list(unname(lme4::getME(m, "theta")))
  rec$loglik <- as.numeric(stats::logLik(m))
  rec$nobs <- stats::nobs(m)
  rec$ngroups <- .as_object(lme4::ngrps(m))
  conv <- m@optinfo$conv
  lme4_codes <- unlist(conv$lme4$code)
  rec$converged <- identical(as.numeric(conv$opt), 0) &&
    (length(lme4_codes) == 0 || all(lme4_codes == 0)) &&
    !any(grepl("converge", msgs, ignore.case = TRUE))
  rec$singular <- lme4::isSingular(m)
  rec$ranef <- ranef_rows(m)
  fe <- m@optinfo$feval
  rec["nfev"] <- list(if (is.null(fe) || is.na(fe)) NULL else as.integer(fe))  # nlminb: NA
  rec
}

# The conditional modes and their conditional SDs as rows {grp, term, level, condval, condsd}
# of as.data.frame(ranef(m, condVar = TRUE)) (grp is lme4's grpvar, the grouping factor).
ranef_rows <- function(m) {
  re <- as.data.frame(lme4::ranef(m, condVar = TRUE))
  lapply(seq_len(nrow(re)), function(i) {
    list(grp = as.character(re$grpvar[i]), term = as.character(re$term[i]),
         level = as.character(re$grp[i]), condval = re$condval[i],
         condsd = if (is.null(re$condsd) || is.na(re$condsd[i])) NULL else re$condsd[i])
  })
}

# The record as a JSON string (15 significant digits, NULL -> null): what the bridge parses.
lmer_record_json <- function(data, formula, REML, case_id, impl = "lme4", optimizer = NULL,
                             timeout = NULL, intervals = FALSE, anova = NULL, grid = NULL) {
  record_as_json(lmer_record(data, formula, REML, case_id, impl, optimizer, timeout,
                             intervals, anova, grid))
}

# A record as JSON text, after checking it against record.schema.json: a record that does not
# follow it carries that as its error (the Python side then refuses it by name).
record_as_json <- function(rec) {
  problems <- validate_record(rec)
  if (length(problems))
    rec$error <- paste("the R side wrote a record that does not follow record.schema.json:",
                       paste(problems, collapse = "; "))
  as.character(jsonlite::toJSON(rec, auto_unbox = TRUE, digits = NA, null = "null",
                                na = "null"))
}

# The fit alone, nothing returned: what the benchmarks time on already converted data.
lmer_fit_only <- function(data, formula, REML) {
  suppressWarnings(suppressMessages(
    lme4::lmer(stats::as.formula(formula), data = data, REML = isTRUE(REML))))
  invisible(NULL)
}

# A data.frame from a named list of equally long columns, names kept verbatim.
harness_frame <- function(columns, nrow) {
  structure(columns, class = "data.frame", row.names = c(NA_integer_, -as.integer(nrow)))
}

# A factor from 1-based integer codes (NA for missing) and its levels in the given order.
harness_factor <- function(codes, levels, ordered) {
  factor_class <- if (isTRUE(ordered)) c("ordered", "factor") else "factor"
  structure(as.integer(codes), levels = as.character(levels), class = factor_class)
}
