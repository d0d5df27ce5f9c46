# Reference design matrices from lme4::lFormula for tests/test_design.py and tests/test_formula.py.
#
# Re-run from the repository root:   Rscript r_scripts/design_references.R
# (needs R with lme4 and jsonlite; writes tests/references/design/*.json, overwriting them).
# Output: datasets.json (every data frame used, column by column with factor levels), and
# cases.json (per case: formula, X with colnames, y, dropped columns, and per random-effects
# term its group name, column names, levels, term label and Zt as 0-based triplets).
suppressMessages({
  library(lme4)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))  # factor levels sorted as in the C locale
out_dir <- file.path("tests", "references", "design")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

# ---------------------------------------------------------------- hand-made frames
set.seed(20240611)
n <- 40
toy <- data.frame(
  y = round(rnorm(n, 10, 2), 3),
  x = round(runif(n, 0, 5), 3),
  s = sample(c("b", "a", "C", "_z"), n, replace = TRUE),
  lg = sample(c(TRUE, FALSE), n, replace = TRUE),
  o = factor(sample(c("lo", "mid", "hi", "top"), n, replace = TRUE),
             levels = c("lo", "mid", "hi", "top"), ordered = TRUE),
  f = factor(sample(c("p", "q"), n, replace = TRUE), levels = c("q", "p", "unused")),
  g = rep(c(3, 1, 2, 10, 5, 7, 4, 8), length.out = n),
  h = rep(c("e", "d", "c", "b", "a"), each = 8),
  k = rep(c("v", "w", "x", "y", "z"), times = 8),
  w = round(runif(n, 0.5, 2), 3),
  stringsAsFactors = FALSE
)
toy$x2 <- 2 * toy$x
toy$y[c(3, 17)] <- NA
toy$x[c(5)] <- NA
toy$s[c(8)] <- NA
toy$lg[c(22)] <- NA
toy$h[c(30)] <- NA

datasets <- list(
  sleepstudy = sleepstudy, Dyestuff = Dyestuff, Penicillin = Penicillin,
  Pastes = Pastes, cake = cake, toy = toy
)

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
encode_data <- function(d) {
  list(names = I(names(d)), columns = lapply(d, encode_column))
}

# ---------------------------------------------------------------- cases
cases <- list(
  list("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
  list("sleepstudy", "Reaction ~ Days + (1 | Subject)"),
  list("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
  list("sleepstudy", "Reaction ~ Days + (0 + Days | Subject)"),
  list("sleepstudy", "Reaction ~ 1 + (1 | Subject) + (0 + Days | Subject)"),
  list("sleepstudy", "Reaction ~ Days + I(Days^2) + (Days | Subject)"),
  list("sleepstudy", "Reaction ~ log(Days + 1) + (-1 + Days | Subject)"),
  list("sleepstudy", "log(Reaction) ~ Days - 1 + (1 | Subject)"),
  list("sleepstudy", "Reaction ~ 0 + Days + (Days | Subject)"),
  list("Dyestuff", "Yield ~ 1 + (1 | Batch)"),
  list("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
  list("Penicillin", "diameter ~ (1 | sample) + (1 | plate)"),
  list("Pastes", "strength ~ (1 | batch/cask)"),
  list("Pastes", "strength ~ (1 | batch:cask)"),
  list("Pastes", "strength ~ (1 | batch) + (1 | cask:batch)"),
  list("Pastes", "strength ~ 1 + (1 | cask) + (1 | batch)"),
  list("cake", "angle ~ recipe * temperature + (1 | recipe:replicate)"),
  list("cake", "angle ~ recipe + temperature + (1 | replicate)"),
  list("cake", "angle ~ recipe:temperature + (1 | replicate)"),
  list("cake", "angle ~ temp + (1 | replicate) + (1 | recipe:replicate)"),
  list("cake", "angle ~ recipe + (0 + recipe | replicate)"),
  list("cake", "angle ~ recipe + (recipe | replicate)"),
  list("cake", "angle ~ temp + (recipe || replicate)"),
  list("cake", "angle ~ temp * recipe + (temp || replicate)"),
  list("toy", "y ~ x + s + lg + (1 | g)"),
  list("toy", "y ~ o + (1 | h)"),
  list("toy", "y ~ x:s + (1 | h)"),
  list("toy", "y ~ s:f + (1 | h)"),
  list("toy", "y ~ x + x2 + (1 | h)"),
  list("toy", "y ~ 0 + s + x + (x | h)"),
  list("toy", "y ~ f * x + (1 | k:h)"),
  list("toy", "y ~ x + (1 | h) + (1 | k) + (1 | g)"),
  list("toy", "y ~ x + (1 | g) + (1 | h)", "w"),
  list("toy", "y ~ o * x + lg + (1 | h/k)"),
  list("toy", "y ~ (x + lg | h) + I(x > 2)"),
  list("toy", "y ~ s + (0 + o | k)"),
  list("toy", "y ~ 0 + o + lg + (1 | h)"),
  list("sleepstudy", "Reaction ~ factor(Days) + (1 | Subject)")
)

run_case <- function(spec) {
  d <- datasets[[spec[[1]]]]
  form <- as.formula(spec[[2]])
  wts <- if (length(spec) > 2) d[[spec[[3]]]] else NULL
  msgs <- character()
  lf <- withCallingHandlers(
    if (is.null(wts)) lFormula(form, data = d) else lFormula(form, data = d, weights = wts),
    message = function(m) {
      msgs <<- c(msgs, conditionMessage(m))
      invokeRestart("muffleMessage")
    }
  )
  X <- lf$X
  rt <- lf$reTrms
  terms <- lapply(seq_along(rt$Ztlist), function(i) {
    zt <- as(rt$Ztlist[[i]], "TsparseMatrix")
    grp <- names(rt$cnms)[i]
    fac <- rt$flist[[attr(rt$flist, "assign")[i]]]
    list(
      group = grp, label = names(rt$Ztlist)[i], cnms = I(rt$cnms[[i]]),
      levels = I(levels(fac)), nl = rt$nl[[i]],
      zt_i = I(zt@i), zt_j = I(zt@j), zt_x = I(zt@x), zt_dim = I(dim(zt))
    )
  })
  dropped <- attr(X, "col.dropped")
  list(
    dataset = spec[[1]], formula = spec[[2]],
    weights = if (length(spec) > 2) spec[[3]] else NULL,
    n = nrow(lf$fr), n_dropped_na = nrow(d) - nrow(lf$fr),
    X = unname(X), X_colnames = I(colnames(X)),
    dropped = I(if (is.null(dropped)) character() else names(dropped)),
    messages = I(msgs),
    y = I(as.numeric(model.response(lf$fr))),
    weights_used = if (length(spec) > 2) I(as.numeric(model.weights(lf$fr))) else NULL,
    theta_len = length(rt$theta), lower = I(as.character(rt$lower)),  # "0", "-Inf"
    terms = terms
  )
}

ref <- list(
  generated_by = "r_scripts/design_references.R",
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))),
  cases = lapply(cases, run_case)
)
write_json(lapply(datasets, encode_data), file.path(out_dir, "datasets.json"),
           digits = NA, auto_unbox = TRUE, na = "null")
write_json(ref, file.path(out_dir, "cases.json"), digits = NA, auto_unbox = TRUE,
           na = "null", null = "null")
cat("wrote", length(cases), "cases to", out_dir, "\n")

# ---------------------------------------------------------------- formula grammar alone
# findbars (after expandDoubleVerts, as lFormula does), nobars, and terms() of the fixed part.
formulas <- c(
  "y ~ x + (1 | g)", "y ~ (x | g)", "y ~ (0 + x | g)", "y ~ (-1 + x | g)",
  "y ~ (1 + x || g)", "y ~ (x + z || g)", "y ~ (x * z || g)", "y ~ (0 + x || g)",
  "y ~ (1 | g1/g2)", "y ~ (1 | a/b/c)", "y ~ (x | g1:g2)", "y ~ a * b + (1 | g)",
  "y ~ (a + b + c)^2 + (1 | g)", "y ~ a/b + (1 | g)", "y ~ a * b - a + (1 | g)",
  "y ~ 0 + a + b:a + (1 | g)", "y ~ x + I(x^2) + log(x) + (1 | g)",
  "y ~ b:a + a + x:b + (1 | g)", "y ~ a %in% b + (1 | g)", "y ~ -1 + x + (1 | g)",
  "y ~ (1 | g) + (x | h) + (1 | g:h)", "log(y) ~ x + (1 | g)",
  "y ~ I(x - 1) + I(2 * x) + I(x/2) + exp(-x) + (1 | g)", "y ~ (1 | g) - 1"
)
formula_ref <- lapply(formulas, function(s) {
  f <- as.formula(s)
  rhs <- expandDoubleVerts(f[[3]])
  fixed <- nobars(rhs)
  tt <- terms(as.formula(call("~", fixed)))
  list(
    formula = s,
    bars = I(vapply(findbars(rhs), deparse1, "")),
    groups = I(vapply(findbars(rhs), function(b) deparse1(b[[3]]), "")),
    fixed = deparse1(fixed),
    term_labels = I(attr(tt, "term.labels")),
    intercept = attr(tt, "intercept") == 1
  )
})
write_json(formula_ref, file.path(out_dir, "formulas.json"), auto_unbox = TRUE)
cat("wrote", length(formulas), "formulas to", out_dir, "\n")
