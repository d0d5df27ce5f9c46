# lme4's answers for mixedref's robustness tests (tests/test_bad_input.py,
# tests/test_properties.py), written with the data they were fitted on.
#
#     Rscript r_scripts/edge_references.R        (from the repository root)
#
# Writes tests/references/edge/<case>.json, each with the data (columns; NA as null), and per
# fit: formula, REML, objective (devcomp$cmp), theta, fixef, sigma, nobs, ngrps, isSingular and
# lme4's messages/warnings verbatim (captured inside R); for refused inputs, lme4's error text.
# The catalog's edge datasets are not refitted here: their lme4 answers are in
# harness/references/lme4.json (r_scripts/record_references.R).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))

outdir <- file.path("tests", "references", "edge")
dir.create(outdir, recursive = TRUE, showWarnings = FALSE)

# One fit: lme4's quantities, or the error text if lmer refuses the input.
fit_one <- function(data, formula, REML) {
  msgs <- character(0)
  res <- tryCatch(
    withCallingHandlers(
      lmer(as.formula(formula), data = data, REML = REML),
      warning = function(w) {
        msgs <<- c(msgs, conditionMessage(w))
        invokeRestart("muffleWarning")
      },
      message = function(m) {
        msgs <<- c(msgs, trimws(conditionMessage(m)))
        invokeRestart("muffleMessage")
      }),
    error = function(e) e)
  if (inherits(res, "error")) {
    return(list(formula = formula, REML = REML, error = conditionMessage(res),
                messages = msgs))
  }
  m <- res
  msgs <- c(msgs, m@optinfo$conv$lme4$messages)
  list(formula = formula, REML = REML, error = NULL,
       objective = unname(m@devcomp$cmp[if (REML) "REML" else "dev"]),
       theta = unname(getME(m, "theta")),
       fixef = as.list(fixef(m)),
       sigma = sigma(m),
       nobs = nobs(m),
       ngrps = as.list(ngrps(m)),
       singular = isSingular(m),
       messages = unique(msgs))
}

write_case <- function(name, data, fits, note) {
  cols <- lapply(data, function(v) if (is.factor(v)) as.character(v) else v)
  doc <- list(case = name, note = note, generator = "r_scripts/edge_references.R",
              lme4 = as.character(packageVersion("lme4")), data = cols, fits = fits)
  path <- file.path(outdir, paste0(name, ".json"))
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                    pretty = TRUE), path)
  cat("wrote", path, "\n")
}

both <- function(data, formula) list(fit_one(data, formula, TRUE), fit_one(data, formula, FALSE))

# ---- groups with a single observation (lme4 allows them) ------------------------------------
set.seed(601)
sizes <- c(1, 1, 3, 5, 8, 2, 6, 4, 1, 7, 3, 5)
m <- length(sizes)
g <- rep(seq_len(m), sizes)
n <- length(g)
x <- round(rnorm(n), 3)
u <- rnorm(m)
y <- round(1 + 0.5 * x + u[g] + 0.5 * rnorm(n), 4)
single <- data.frame(y = y, x = x,
                     g = factor(sprintf("g%02d", g)),
                     gnum = as.integer(g),
                     gdbl = as.numeric(g) + 0.5)
write_case("single_obs", single,
           c(both(single, "y ~ x + (1 | g)"),
             both(single, "y ~ x + (1 | gnum)"),
             both(single, "y ~ x + (1 | gdbl)")),
           "12 groups of sizes 1..8, three of them with one row; g also as integer and double")

# ---- missing values: na.omit drops incomplete rows --------------------------------------------
na <- single
na$y[3] <- NA
na$x[c(7, 20)] <- NA
na$g[30] <- NA
write_case("na_omit", na, both(na, "y ~ x + (1 | g)"),
           "NA in y (row 3), x (rows 7, 20) and g (row 30): 4 rows dropped")

# ---- inputs lme4 refuses ---------------------------------------------------------------------
one_level <- single
one_level$g <- factor(rep("a", n))
as_many <- single
as_many$g <- factor(sprintf("r%03d", seq_len(n)))
re_many <- single[seq_len(24), ]
re_many$g <- factor(rep(sprintf("p%02d", 1:12), each = 2))
write_case("refused", single,
           list(one_level = fit_one(one_level, "y ~ x + (1 | g)", TRUE),
                levels_eq_n = fit_one(as_many, "y ~ x + (1 | g)", TRUE),
                re_ge_n = fit_one(re_many, "y ~ x + (x | g)", TRUE)),
           paste("lme4's errors: a grouping factor with one level; as many levels as rows;",
                 "more random effects (24) than rows (24); data = the single_obs data"))

# ---- translating a slope covariate: (x | g) invariant, (x || g) not ----------------------------
sleep <- sleepstudy
sleep$Dc <- sleep$Days + 10
write_case("shift_slope", sleep,
           c(both(sleep, "Reaction ~ Days + (Days | Subject)"),
             both(sleep, "Reaction ~ Dc + (Dc | Subject)"),
             both(sleep, "Reaction ~ Days + (Days || Subject)"),
             both(sleep, "Reaction ~ Dc + (Dc || Subject)")),
           "sleepstudy with Dc = Days + 10: correlated and uncorrelated random slopes")

# ---- translating x on small generated designs where the optimizer may stop on the boundary -----
# tests/references/edge/shift_designs.csv holds three designs of tests/test_properties.py's
# generator (numpy seeds 102, 173, 219: m levels, 1..8 rows each, y = 1 + x/2 + u0 + u1 x + e).
sd <- read.csv(file.path(outdir, "shift_designs.csv"), stringsAsFactors = FALSE)
for (id in unique(sd$design)) {
  d <- sd[sd$design == id, c("y", "x", "g")]
  d$g <- factor(d$g)
  fits <- list()
  for (c in c(0, -1.5, 4, 25)) {
    d$xc <- d$x + c
    for (REML in c(TRUE, FALSE)) {
      f <- fit_one(d, "y ~ xc + (xc | g)", REML)
      f$shift <- c
      fits[[length(fits) + 1]] <- f
    }
  }
  d$xc <- NULL
  write_case(paste0("shift_", id), d, fits,
             "y ~ x + (x | g) with x + c for c in 0, -1.5, 4, 25 (column xc = x + c)")
}
