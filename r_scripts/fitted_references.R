# lme4's fitted values and residuals, for tests/test_fitted.py (LmerFit.fitted, .residuals).
#
#     Rscript r_scripts/fitted_references.R [OUT]
#
# Run from the repository root; OUT defaults to tests/references/fitted.json. The data are the
# harness's copies (read_dataset(), r_scripts/catalog.R: equal to lme4's own datasets, checked
# by tests/test_datasets.py), the models two catalog cases: sleepstudy's correlated random
# slopes under REML and Penicillin's crossed random intercepts under ML. Per case: formula,
# REML, lme4's criterion, fitted(m) and residuals(m) (response residuals), in row order.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
source("r_scripts/catalog.R")

main <- function(args) {
  out <- if (length(args) >= 1) args[1] else "tests/references/fitted.json"
  specs <- list(
    list(id = "sleepstudy-slopes-REML", dataset = "sleepstudy",
         formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE),
    list(id = "Penicillin-crossed-ML", dataset = "Penicillin",
         formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", REML = FALSE))
  cases <- list()
  for (s in specs) {
    d <- read_dataset(s$dataset)
    m <- lmer(stats::as.formula(s$formula), data = d, REML = s$REML)
    cmp <- m@devcomp$cmp
    cases[[s$id]] <- list(
      dataset = s$dataset, formula = s$formula, REML = s$REML,
      objective = unname(if (s$REML) cmp[["REML"]] else cmp[["dev"]]),
      sigma = sigma(m), theta = unname(getME(m, "theta")),
      fitted = unname(fitted(m)), residuals = unname(residuals(m)))
  }
  doc <- list(generator = "r_scripts/fitted_references.R",
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
              versions = list(R = R.version.string,
                              lme4 = as.character(utils::packageVersion("lme4"))),
              cases = cases)
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE), out)
  cat(sprintf("wrote %d cases to %s\n", length(cases), out))
}

if (sys.nframe() == 0) main(commandArgs(trailingOnly = TRUE))
