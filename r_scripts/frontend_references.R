# Reference answers of lme4::lFormula / lmer for lmer's arguments and formula functions, for
# tests/test_frontend.py: contrasts=, subset=, na.action=, weights=, offset= (argument and
# offset() in the formula), poly(), scale(), ns(), bs(), log/exp/sqrt, factor(), backticked and
# Unicode names, lme4's warnings (badly scaled predictors, "NaNs produced") and errors.
#
# Re-run from the repository root:   Rscript r_scripts/frontend_references.R
# (needs R with lme4, splines and jsonlite; writes tests/references/frontend/*.json).
# Output: data.json (the data frame, column by column) and cases.json (per case: the call's
# arguments, and lFormula's X with colnames, y, offset, weights, the rows kept (1-based), the
# na.action rows, every random-effects term's group, cnms, levels and Zt, the warnings and
# messages R gave, or the error; for some cases also lmer's REML fit).
suppressMessages({
  library(lme4)
  library(splines)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
invisible(Sys.setlocale("LC_CTYPE", "C.UTF-8"))  # énergie is a syntactic name
out_dir <- file.path("tests", "references", "frontend")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

set.seed(20261201)
n <- 48
fe <- data.frame(
  y = round(rnorm(n, 10, 2), 4),
  x = round(rnorm(n, 0, 1.5), 4),
  xp = round(runif(n, 0.5, 4), 4),
  f = factor(sample(c("a", "b", "c", "d"), n, replace = TRUE)),
  o = factor(sample(c("lo", "mid", "hi"), n, replace = TRUE), levels = c("lo", "mid", "hi"),
             ordered = TRUE),
  k = sample(1:3, n, replace = TRUE),
  g = factor(rep(sprintf("g%02d", 1:12), each = 4)),
  w = round(runif(n, 0.5, 2), 3),
  ofs = round(runif(n), 3),
  stringsAsFactors = FALSE
)
fe$y <- fe$y + 0.8 * fe$x + rep(rnorm(12), each = 4)
fe[["my x"]] <- fe$xp * 2
fe[["my g"]] <- fe$g
fe[["\u00e9nergie"]] <- round(runif(n), 4)
fe[["\u00e9quipe"]] <- rep(sprintf("e%d", 1:8), times = 6)
fe$big <- fe$xp * 1e4
fe$tiny <- fe$xp * 1e-4
fe$yna <- fe$y
fe$yna[c(2, 11, 30)] <- NA
fe$xna <- fe$x
fe$xna[c(5, 40)] <- NA

encode_column <- function(v) {
  if (is.factor(v)) {
    list(type = "factor", values = as.character(v), levels = I(levels(v)),
         ordered = is.ordered(v))
  } else if (is.logical(v)) {
    list(type = "logical", values = v)
  } else if (is.character(v)) {
    list(type = "character", values = v)
  } else if (is.integer(v)) {
    list(type = "integer", values = v)
  } else {
    list(type = "numeric", values = as.numeric(v))
  }
}

cm <- matrix(c(-1, -1, 1, 1, 1, -1, -1, 1), nrow = 4)  # 4 levels x 2, no column names
cmn <- cm
colnames(cmn) <- c("A", "B")

# each case: formula, and arguments as lFormula takes them; `py` holds how Python spells them
cases <- list(
  list(id = "poly2", formula = "y ~ poly(x, 2) + (1 | g)", fit = TRUE),
  list(id = "poly3raw", formula = "y ~ poly(x, 3, raw = TRUE) + (1 | g)"),
  list(id = "poly_f", formula = "y ~ poly(x, 2) * f + (1 | g)"),
  list(id = "poly_na_y", formula = "yna ~ poly(x, 2) + (1 | g)"),
  list(id = "poly_subset", formula = "y ~ poly(x, 2) + (1 | g)", subset = "k != 2"),
  list(id = "poly_na_x", formula = "y ~ poly(xna, 2) + (1 | g)"),
  list(id = "scale", formula = "y ~ scale(x) + (1 | g)", fit = TRUE),
  list(id = "scale_na", formula = "yna ~ scale(xna) + f + (1 | g)"),
  list(id = "math", formula = "y ~ log(xp) + exp(x) + sqrt(xp) + I(x^2) + (1 | g)"),
  list(id = "factor_int", formula = "y ~ factor(k) + (1 | g)"),
  list(id = "offset_formula", formula = "y ~ x + offset(ofs) + (1 | g)", fit = TRUE),
  list(id = "offset_both", formula = "y ~ x + offset(log(xp)) + (1 | g)", offset = "ofs",
       fit = TRUE),
  list(id = "ns_df", formula = "y ~ ns(x, df = 3) + (1 | g)", fit = TRUE),
  list(id = "ns_pos", formula = "y ~ ns(x, 4) + (1 | g)"),
  list(id = "ns_na", formula = "yna ~ ns(xna, df = 2) + (1 | g)"),
  list(id = "bs_df", formula = "y ~ bs(x, df = 5) + (1 | g)", fit = TRUE),
  list(id = "bs_3", formula = "y ~ bs(x, 3) + (1 | g)"),
  list(id = "bs_f", formula = "y ~ bs(xp, df = 4) + f + (1 | g)"),
  list(id = "backtick", formula = "y ~ `my x` + `my g` + (1 | `my g`)"),
  list(id = "backtick_slope", formula = "y ~ `my x` + (`my x` | `my g`)"),
  list(id = "unicode", formula = "y ~ \u00e9nergie + (1 | \u00e9quipe)", fit = TRUE),
  list(id = "sqrt_neg", formula = "y ~ sqrt(x) + (1 | g)"),
  list(id = "log_neg", formula = "y ~ xp + log(x + 1) + (1 | g)"),
  list(id = "scale_warn", formula = "y ~ x + big + (1 | g)"),
  list(id = "scale_warn_one", formula = "y ~ big + (1 | g)"),
  list(id = "scale_warn_tiny", formula = "y ~ tiny + f + (1 | g)"),
  list(id = "scale_ok", formula = "y ~ x + xp + f + (1 | g)"),
  list(id = "dup_term", formula = "y ~ x + (1 | g) + (1 | g)", fit = TRUE),
  list(id = "c_sum", formula = "y ~ f + x + (1 | g)", contrasts = list(f = "contr.sum"),
       fit = TRUE),
  list(id = "c_helmert", formula = "y ~ f + (1 | g)", contrasts = list(f = "contr.helmert")),
  list(id = "c_poly", formula = "y ~ f + (1 | g)", contrasts = list(f = "contr.poly")),
  list(id = "c_sas", formula = "y ~ f + (1 | g)", contrasts = list(f = "contr.SAS")),
  list(id = "c_treat_ordered", formula = "y ~ o + (1 | g)",
       contrasts = list(o = "contr.treatment")),
  list(id = "c_matrix", formula = "y ~ f + (1 | g)", contrasts = list(f = "cm")),
  list(id = "c_matrix_named", formula = "y ~ f + (1 | g)", contrasts = list(f = "cmn")),
  list(id = "c_interaction", formula = "y ~ f * x + o + (1 | g)",
       contrasts = list(f = "contr.sum", o = "contr.helmert"), fit = TRUE),
  list(id = "c_random", formula = "y ~ o + (1 + o | g)", contrasts = list(o = "contr.sum")),
  list(id = "c_no_intercept", formula = "y ~ 0 + f + o + (1 | g)",
       contrasts = list(f = "contr.sum", o = "contr.sum")),
  list(id = "subset_str", formula = "y ~ x + f + (1 | g)", subset = "x > -1", fit = TRUE),
  list(id = "subset_and", formula = "y ~ x + (1 | g)", subset = "xp < 3 & k != 2"),
  list(id = "subset_na", formula = "yna ~ x + f + (1 | g)", subset = "k != 1"),
  list(id = "na_exclude", formula = "yna ~ x + (1 | g)", na_action = "na.exclude", fit = TRUE),
  list(id = "na_exclude_subset", formula = "yna ~ xna + (1 | g)", na_action = "na.exclude",
       subset = "k != 3"),
  list(id = "na_fail", formula = "yna ~ x + (1 | g)", na_action = "na.fail"),
  list(id = "na_fail_ok", formula = "y ~ x + (1 | g)", na_action = "na.fail"),
  list(id = "weights", formula = "y ~ x + (1 | g)", weights = "w", fit = TRUE)
)

capture <- function(expr) {
  w <- character()
  m <- character()
  val <- tryCatch(
    withCallingHandlers(expr,
      warning = function(c) {
        w <<- c(w, conditionMessage(c))
        invokeRestart("muffleWarning")
      },
      message = function(c) {
        m <<- c(m, conditionMessage(c))
        invokeRestart("muffleMessage")
      }),
    error = function(e) structure(list(msg = conditionMessage(e)), class = "caught"))
  list(value = val, warnings = w, messages = m)
}

call_args <- function(case) {
  args <- list(formula = as.formula(case$formula), data = fe)
  if (!is.null(case$subset)) args$subset <- with(fe, eval(parse(text = case$subset)))
  if (!is.null(case$weights)) args$weights <- fe[[case$weights]]
  if (!is.null(case$offset)) args$offset <- fe[[case$offset]]
  if (!is.null(case$na_action)) args$na.action <- get(case$na_action)
  if (!is.null(case$contrasts)) {
    args$contrasts <- lapply(case$contrasts, function(s) if (s %in% c("cm", "cmn")) get(s) else s)
  }
  args
}

run_case <- function(case) {
  args <- call_args(case)
  res <- capture(do.call(lFormula, args))
  out <- list(id = case$id, formula = case$formula, subset = case$subset,
              weights = case$weights, offset = case$offset, na_action = case$na_action,
              contrasts = case$contrasts, warnings = I(unique(res$warnings)),
              messages = I(res$messages))
  if (inherits(res$value, "caught")) {
    out$error <- res$value$msg
    return(out)
  }
  lf <- res$value
  fr <- lf$fr
  rt <- lf$reTrms
  terms <- lapply(seq_along(rt$Ztlist), function(i) {
    zt <- as(rt$Ztlist[[i]], "TsparseMatrix")
    fac <- rt$flist[[attr(rt$flist, "assign")[i]]]
    list(group = names(rt$cnms)[i], cnms = I(rt$cnms[[i]]), levels = I(levels(fac)),
         zt_i = I(zt@i), zt_j = I(zt@j), zt_x = I(zt@x), zt_dim = I(dim(zt)))
  })
  nact <- attr(fr, "na.action")
  off <- model.offset(fr)
  out$error <- NULL
  out$n <- nrow(fr)
  out$rows <- I(as.integer(rownames(fr)))
  # the rows na.action removed, by the data's row names (nact itself counts within subset)
  out$na_rows <- I(if (is.null(nact)) integer() else as.integer(names(nact)))
  out$na_index <- I(if (is.null(nact)) integer() else as.integer(nact))
  out$na_class <- if (is.null(nact)) NULL else class(nact)
  out$X <- unname(lf$X)
  out$X_colnames <- I(colnames(lf$X))
  out$y <- I(as.numeric(model.response(fr)))
  out$offset_used <- if (is.null(off)) NULL else I(as.numeric(off))
  out$weights_used <- if (is.null(model.weights(fr))) NULL else I(as.numeric(model.weights(fr)))
  out$terms <- terms
  out$theta_len <- length(rt$theta)
  if (isTRUE(case$fit)) {
    fres <- capture(do.call(lmer, c(args, list(REML = TRUE))))
    m <- fres$value
    out$fit <- list(
      objective = unname(m@devcomp$cmp[["REML"]]), theta = I(unname(getME(m, "theta"))),
      fixef = as.list(fixef(m)), sigma = sigma(m), nobs = nobs(m),
      ngrps = as.list(ngrps(m)), warnings = I(fres$warnings), messages = I(fres$messages),
      fitted_len = length(fitted(m)), fitted_na = I(which(is.na(fitted(m)))),
      resid_len = length(residuals(m))
    )
  }
  out
}

ref <- list(
  generated_by = "r_scripts/frontend_references.R",
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))),
  contrast_matrix = cm,
  cases = lapply(cases, run_case)
)
data_json <- list(names = I(names(fe)), columns = lapply(fe, encode_column))
write_json(data_json, file.path(out_dir, "data.json"), digits = NA, auto_unbox = TRUE,
           na = "null")
write_json(ref, file.path(out_dir, "cases.json"), digits = NA, auto_unbox = TRUE,
           na = "null", null = "null")
cat("wrote", length(cases), "cases to", out_dir, "\n")

# ------------------------------------------------------------- lme4's behaviour on bad input
# What lmer 1.1-31 does (result, warnings, error) for the inputs tests/test_bad_input.py checks.
set.seed(7)
d <- data.frame(y = rnorm(40), x = runif(40), g = factor(rep(letters[1:8], each = 5)))
summ <- function(res) {
  v <- res$value
  list(
    error = if (inherits(v, "caught")) v$msg else NULL,
    sigma = if (inherits(v, "merMod")) sigma(v) else NULL,
    theta = if (inherits(v, "merMod")) I(unname(getME(v, "theta"))) else NULL,
    fixef = if (inherits(v, "merMod")) as.list(fixef(v)) else NULL,
    ngrps = if (inherits(v, "merMod")) as.list(ngrps(v)) else NULL,
    warnings = I(unique(res$warnings)), messages = I(res$messages)
  )
}
dd <- function(...) {
  z <- d
  mods <- list(...)
  for (nm in names(mods)) z[[nm]] <- mods[[nm]]
  z
}
bad <- list(
  huge_response = summ(capture(lmer(y ~ x + (1 | g), dd(y = d$y * 1e155)))),
  constant_response = summ(capture(lmer(y ~ x + (1 | g), dd(y = rep(3, 40))))),
  response_is_x = summ(capture(lmer(y ~ x + (1 | g), dd(y = d$x)))),
  response_linear_in_x = summ(capture(lmer(y ~ x + (1 | g), dd(y = 2 * d$x + 1)))),
  duplicated_term = summ(capture(lmer(y ~ x + (1 | g) + (1 | g), d))),
  REML_string = summ(capture(lmer(y ~ x + (1 | g), d, REML = "FALSE"))),
  REML_null = summ(capture(lmer(y ~ x + (1 | g), d, REML = NULL))),
  character_response = summ(capture(lmer(y ~ x + (1 | g),
                                          dd(y = ifelse(d$y > 0, "TRUE", "FALSE"))))),
  logical_response = summ(capture(lmer(y ~ x + (1 | g), dd(y = d$y > 0)))),
  complex_predictor = summ(capture(lmer(y ~ z + (1 | g), dd(z = complex(real = d$x,
                                                                         imaginary = 1))))),
  sqrt_negative = summ(capture(lmer(y ~ sqrt(y + 1) + (1 | g), d))),
  colliding_numeric_groups = summ(capture(lmer(y ~ x + (1 | gg),
                                               dd(gg = rep(c(0.3, 0.1 + 0.2, 1:6), each = 5))))),
  na_fail = summ(capture(lmer(y ~ x + (1 | g), dd(x = replace(d$x, 3, NA)),
                              na.action = na.fail))),
  poly_na = summ(capture(lmer(y ~ poly(x, 2) + (1 | g), dd(x = replace(d$x, 3, NA)))))
)
write_json(list(generated_by = "r_scripts/frontend_references.R",
                lme4 = as.character(packageVersion("lme4")), data = d, cases = bad),
           file.path(out_dir, "bad_input.json"), digits = NA, auto_unbox = TRUE, na = "null",
           null = "null")
cat("wrote", length(bad), "bad-input cases to", out_dir, "\n")

# ------------------------------------------------------------- the formula grammar alone
# findbars (after expandDoubleVerts), lme4's group names (names(cnms): a bare symbol deparses
# without backquotes), terms() labels and offsets of the fixed part, for formulas with named
# arguments, backquoted and Unicode names and offset() terms.
formulas <- c(
  "y ~ poly(x, 3, raw = TRUE) + (1 | g)", "y ~ ns(x, df = 3) + bs(x, degree = 2, df = 4) + (1 | g)",
  "y ~ scale(x, center = FALSE) + (1 | g)", "y ~ x + offset(log(w)) + (1 | g)",
  "y ~ offset(o) + x * z + offset(w) + (1 | g)", "y ~ `my x` + (1 | `my g`)",
  "y ~ (1 | `my g`:h) + (`a b` || g) + (x | `c d`)", "y ~ \u00e9nergie + (1 | \u00e9quipe)",
  "y ~ poly(x, degree = 2):f + (1 | g/h)", "`y 1` ~ I(`x 1`^2) + (1 | g)"
)
formula_ref <- lapply(formulas, function(s) {
  f <- as.formula(s)
  rhs <- expandDoubleVerts(f[[3]])
  fixed <- nobars(rhs)
  tt <- terms(as.formula(call("~", fixed)))
  vars <- vapply(as.list(attr(tt, "variables"))[-1], deparse1, "")
  bars <- findbars(rhs)
  list(
    formula = s,
    response = deparse1(f[[2]]),
    bars = I(vapply(bars, deparse1, "")),
    groups = I(vapply(bars, function(b) deparse1(b[[3]]), "")),  # lme4's names(cnms)
    term_labels = I(attr(tt, "term.labels")),
    offsets = I(if (is.null(attr(tt, "offset"))) character() else vars[attr(tt, "offset")]),
    intercept = attr(tt, "intercept") == 1
  )
})
write_json(formula_ref, file.path(out_dir, "formulas.json"), auto_unbox = TRUE)
cat("wrote", length(formulas), "formulas to", out_dir, "\n")
