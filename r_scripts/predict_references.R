# lme4's predictions, for tests/test_predict.py (mixedref.inference.predict.predict).
#
#     Rscript r_scripts/predict_references.R [OUT]
#
# Run from the repository root; OUT defaults to tests/references/predict.json. The data are the
# harness's copies (read_dataset(), r_scripts/catalog.R). Per case: dataset, formula, REML (or
# family for glmer), and a list of predictions, each with the newdata it was made on (null for
# the fitting rows; else its columns, and per factor its levels and whether it is ordered, so
# that Python rebuilds exactly the same data frame), re.form (null, "NA" or a formula), allow.
# new.levels, type and lme4's predict() values.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
  library(splines)  # ns() in a formula: predict's predvars call it
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
source("r_scripts/catalog.R")

encode_newdata <- function(nd) {
  if (is.null(nd)) return(NULL)
  cols <- lapply(nd, function(x) if (is.factor(x)) I(as.character(x)) else I(as.numeric(x)))
  facs <- Filter(Negate(is.null), lapply(nd, function(x) {
    if (is.factor(x)) list(levels = I(levels(x)), ordered = is.ordered(x)) else NULL
  }))
  list(columns = cols, factors = if (length(facs)) facs else structure(list(), names = character()))
}

one <- function(m, label, newdata = NULL, re_form = NULL, allow = FALSE, type = "link") {
  rf <- if (is.null(re_form)) NULL else if (identical(re_form, "NA")) NA else
    stats::as.formula(re_form)
  p <- predict(m, newdata = newdata, re.form = rf, allow.new.levels = allow, type = type)
  list(label = label, newdata = encode_newdata(newdata), re_form = re_form,
       allow_new_levels = allow, type = type, values = I(unname(as.numeric(p))))
}

sleep_grid <- function(d, subjects, days = 0:9) {
  g <- expand.grid(Days = as.numeric(days), Subject = subjects, stringsAsFactors = FALSE)
  g$Subject <- factor(g$Subject, levels = union(levels(d$Subject), subjects))
  g
}

lmm_case <- function(dataset, formula, REML, preds) {
  d <- read_dataset(dataset)
  m <- lmer(stats::as.formula(formula), data = d, REML = REML)
  list(dataset = dataset, formula = formula, REML = REML, sigma = sigma(m),
       predictions = preds(m, d))
}

main <- function(args) {
  out <- if (length(args) >= 1) args[1] else "tests/references/predict.json"
  cases <- list()
  cases[["sleepstudy-slopes-REML"]] <- lmm_case(
    "sleepstudy", "Reaction ~ Days + (Days | Subject)", TRUE, function(m, d) {
      grid <- sleep_grid(d, c("308", "335", "372"))
      new <- sleep_grid(d, c("308", "999"), days = c(0, 4.5, 9))
      na_subject <- new
      na_subject$Subject[2] <- NA
      na_days <- sleep_grid(d, c("308", "309"), days = c(1, 2))
      na_days$Days[3] <- NA
      list(one(m, "fitted"),
           one(m, "population", re_form = "NA"),
           one(m, "intercept-only on the fitting rows", re_form = "~(1 | Subject)"),
           one(m, "grid conditional", grid),
           one(m, "grid population", grid, re_form = "NA"),
           one(m, "grid population ~0", grid, re_form = "~0"),
           one(m, "grid intercept only", grid, re_form = "~(1 | Subject)"),
           one(m, "grid slope only", grid, re_form = "~(0 + Days | Subject)"),
           one(m, "new subject allowed", new, allow = TRUE),
           one(m, "NA subject allowed", na_subject, allow = TRUE),
           one(m, "NA in Days", na_days))
    })
  cases[["sleepstudy-uncorrelated-REML"]] <- lmm_case(
    "sleepstudy", "Reaction ~ Days + (Days || Subject)", TRUE, function(m, d) {
      grid <- sleep_grid(d, c("309", "351"), days = c(0, 3, 7.5))
      list(one(m, "fitted"),
           one(m, "grid conditional", grid),
           one(m, "grid intercept only", grid, re_form = "~(1 | Subject)"),
           one(m, "grid correlated re.form", grid, re_form = "~(Days | Subject)"))
    })
  cases[["sleepstudy-poly-REML"]] <- lmm_case(
    "sleepstudy", "Reaction ~ poly(Days, 2) + (1 | Subject)", TRUE, function(m, d) {
      grid <- sleep_grid(d, c("308", "371"), days = c(-1, 0, 2.5, 9, 12))
      list(one(m, "grid conditional", grid), one(m, "grid population", grid, re_form = "NA"))
    })
  cases[["sleepstudy-ns-scale-REML"]] <- lmm_case(
    "sleepstudy", "Reaction ~ ns(Days, 3) + (scale(Days) | Subject)", TRUE, function(m, d) {
      grid <- sleep_grid(d, c("308", "371"), days = c(-1, 0, 2.5, 9, 12))
      list(one(m, "grid conditional", grid), one(m, "grid population", grid, re_form = "NA"))
    })
  cases[["sleepstudy-offset-REML"]] <- lmm_case(
    "sleepstudy", "Reaction ~ Days + offset(2 * Days) + (1 | Subject)", TRUE, function(m, d) {
      grid <- sleep_grid(d, c("308", "371"), days = c(0, 5))
      list(one(m, "fitted"), one(m, "population", re_form = "NA"),
           one(m, "grid conditional", grid), one(m, "grid population", grid, re_form = "NA"))
    })
  cases[["Penicillin-crossed-REML"]] <- lmm_case(
    "Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", TRUE, function(m, d) {
      nd <- d[c(1, 2, 7, 30, 77, 144), c("plate", "sample")]
      list(one(m, "fitted"),
           one(m, "plate only on the fitting rows", re_form = "~(1 | plate)"),
           one(m, "plate only", nd, re_form = "~(1 | plate)"),
           one(m, "sample only", nd, re_form = "~(1 | sample)"),
           one(m, "conditional", nd))
    })
  cases[["cake-recipe-temperature-REML"]] <- lmm_case(
    "cake", "angle ~ recipe * temperature + (1 | recipe:replicate)", TRUE, function(m, d) {
      nd <- d[c(1, 5, 40, 100, 101, 180, 200, 270), c("recipe", "temperature", "replicate")]
      list(one(m, "fitted"), one(m, "subset conditional", nd),
           one(m, "subset population", nd, re_form = "NA"))
    })
  d <- read_dataset("cbpp")
  g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = d,
             family = binomial)
  nd <- d[c(1, 2, 10, 20, 33, 56), c("period", "herd")]
  cases[["cbpp-binomial"]] <- list(
    dataset = "cbpp", formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
    family = "binomial",
    predictions = list(one(g, "fitted link"), one(g, "fitted response", type = "response"),
                       one(g, "subset link", nd), one(g, "subset response", nd,
                                                      type = "response"),
                       one(g, "subset population response", nd, re_form = "NA",
                           type = "response")))
  doc <- list(lme4 = as.character(packageVersion("lme4")), R = R.version.string,
              cases = cases)
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                    pretty = TRUE), out)
  cat("wrote", out, "\n")
}

main(commandArgs(trailingOnly = TRUE))
