# lme4's printed summaries of some catalog fits, for tests/test_summary.py, which checks that
# mixedref's LmerFit.summary() has the same header, random-effects table and fixed-effects
# table (labels, columns, values within the tolerance policy).
#
#     Rscript r_scripts/summary_references.R      # writes tests/references/summaries.json

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
source("r_scripts/catalog.R")
ids <- c("sleepstudy-slopes-REML", "sleepstudy-slopes-ML", "Penicillin-crossed-REML",
         "Pastes-nested-ML", "cake-interaction-REML", "Dyestuff2-intercept-ML")
cases <- Filter(function(c) c$id %in% ids, read_catalog("harness/catalog.yaml"))
out <- list(lme4 = as.character(packageVersion("lme4")), R = R.version.string, summaries = list())
for (case in cases) {
  d <- read_dataset(case$dataset, case$data_dirs)
  m <- suppressMessages(lmer(as.formula(case$formula), data = d, REML = isTRUE(case$REML)))
  out$summaries[[case$id]] <- paste(capture.output(print(summary(m))), collapse = "\n")
}
writeLines(toJSON(out, auto_unbox = TRUE, pretty = TRUE), "tests/references/summaries.json")
