# The evidence behind the GLMM allowances of predictions (harness/core/tolerance.py, GLMM): how far
# lme4's answers move when only its PIRLS is converged further. Every lme4 optimizer stops PIRLS
# at glmerControl's tolPwrss = 1e-7, so allFit's spread (r_scripts/optimizer_spread.R) cannot
# show this part; a correct implementation converging PIRLS fully lands near the tight answer.
#
#     Rscript r_scripts/glmm_pirls_spread.R [OUT [CASE_ID ...]]
#
# Run from the repository root. OUT defaults to tests/references/glmm_pirls_spread.json.gz;
# CASE_IDs record only those cases (to join into the committed file). Per
# GLMM catalog case (those tagged `large` aside) two full records by glmer_record()
# (r_scripts/glmer_record.R, with the inference: Wald tests, predictions at both scales, Wald
# intervals, anova against the catalog partner): glmer's defaults, and the same with
# tolPwrss = 1e-10 (as the policy's measurement of the conditional modes).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

invisible(Sys.setlocale("LC_COLLATE", "C"))
source("r_scripts/record_schema.R")
Sys.setenv(MIXEDREF_RECORD_SCHEMA = "harness/core/record.schema.json")
source("r_scripts/lmer_record.R")
source("r_scripts/glmer_record.R")
source("r_scripts/catalog.R")

TIGHT_PWRSS <- 1e-10

main <- function(args) {
  out <- if (length(args) >= 1) args[1] else "tests/references/glmm_pirls_spread.json.gz"
  wanted <- if (length(args) >= 2) args[-1] else character(0)
  cases <- Filter(function(x) !is.null(x$family) && !("large" %in% x$tags) &&
                    (!length(wanted) || x$id %in% wanted),
                  read_catalog("harness/catalog.yaml"))
  if (length(wanted) && length(cases) != length(wanted))
    stop(sprintf("unknown or excluded case id(s) among: %s", paste(wanted, collapse = ", ")))
  result <- list()
  cache <- list()
  for (case in cases) {
    key <- paste(c(case$dataset, case$data_dirs), collapse = "\r")
    if (is.null(cache[[key]])) cache[[key]] <- read_dataset(case$dataset, case$data_dirs)
    d <- cache[[key]]
    fit <- function(impl, settings)
      glmer_record(d, case$formula, case$family, case$link, case$nAGQ, case$weights, case$id,
                   impl, settings = settings, anova = case$anova_formula,
                   grid = case$predict_grid)
    default <- fit("lme4", list())
    tight <- fit("lme4:tolPwrss=1e-10", list(tolPwrss = TIGHT_PWRSS))
    for (rec in list(default, tight)) {
      problems <- validate_record(rec)
      if (length(problems)) stop(sprintf("%s: record does not follow the schema: %s", case$id,
                                         paste(problems, collapse = "; ")))
    }
    cat(sprintf("%-36s default %.6f  tight %.6f\n", case$id, default$objective, tight$objective))
    result[[case$id]] <- list(formula = case$formula, default = default, tight = tight)
  }
  doc <- list(generator = "r_scripts/glmm_pirls_spread.R", tolPwrss = TIGHT_PWRSS,
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"), versions = lmer_versions(),
              cases = result)
  con <- if (grepl("\\.gz$", out)) gzfile(out, "w") else file(out, "w")
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), con)
  close(con)
  cat(sprintf("wrote %d cases to %s\n", length(result), out))
}

if (sys.nframe() == 0) main(commandArgs(trailingOnly = TRUE))
