# Record lme4's answers to every catalog case, so the harness can compare without R.
#
#     Rscript r_scripts/record_references.R [CATALOG] [OUT] [IDS]
#
# CATALOG defaults to <repo>/harness/catalog.yaml, OUT to <repo>/harness/references/lme4.json.
# IDS, a regular expression on case ids, records only the matching cases and keeps OUT's other
# records as they are (their cases must still be in the catalog; the date and versions become
# this run's).
# Each case is fitted with lmer_record() (r_scripts/lmer_record.R, lme4's defaults) on the data
# read by read_dataset() (r_scripts/catalog.R); the output holds one record per case id, what
# was fitted per case id (dataset, formula, REML; GLMMs: family, link, nAGQ, weights: the harness
# refuses a stale recording; GLMM cases are fitted by glmer_record(), r_scripts/glmer_record.R), the
# R/lme4/BLAS versions (with OpenBLAS's kernel and thread count) and the date. No Python is
# needed. InstEval takes ~10 s per fit. Run it as OPENBLAS_NUM_THREADS=1 Rscript ..., the thread
# count the harness gives R (harness/core/rbridge.py) and the existing records were made with.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

script_dir <- function() {
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg) == 0) return(file.path(getwd(), "r_scripts"))
  dirname(normalizePath(sub("^--file=", "", arg[1])))
}

main <- function(args) {
  Sys.setlocale("LC_COLLATE", "C")
  here <- script_dir()
  repo <- dirname(here)
  source(file.path(here, "record_schema.R"))
  Sys.setenv(MIXEDREF_RECORD_SCHEMA = file.path(repo, "harness", "record.schema.json"))
  source(file.path(here, "lmer_record.R"))
  source(file.path(here, "glmer_record.R"))
  source(file.path(here, "catalog.R"))
  catalog <- if (length(args) >= 1) args[1] else file.path(repo, "harness", "catalog.yaml")
  out <- if (length(args) >= 2) args[2] else file.path(repo, "harness", "references", "lme4.json")
  cases <- read_catalog(catalog)
  records <- list()
  fitted <- list()
  sel <- select_cases(cases, if (length(args) >= 3) args[3] else NULL, out)
  cases <- sel$cases
  ids <- sel$ids  # the catalog's order, kept in OUT
  if (!is.null(sel$old)) {
    records <- sel$old$records[sel$keep]
    fitted <- sel$old$cases[sel$keep]
  }
  cache <- list()
  for (case in cases) {
    key <- paste(c(case$dataset, case$data_dirs), collapse = "\r")
    if (is.null(cache[[key]])) cache[[key]] <- read_dataset(case$dataset, case$data_dirs)
    rec <- if (is.null(case$family)) lmer_record(cache[[key]], case$formula, isTRUE(case$REML),
                                                 case$id, intervals = "intervals" %in% case$tags,
                                                 anova = case$anova_formula,
                                                 grid = case$predict_grid)
           else glmer_record(cache[[key]], case$formula, case$family, case$link, case$nAGQ,
                             case$weights, case$id, intervals = "intervals" %in% case$tags,
                             anova = case$anova_formula, grid = case$predict_grid)
    status <- if (is.null(rec$error)) sprintf("objective %.6f", rec$objective) else rec$error
    cat(sprintf("%-40s %6.2fs  %s\n", case$id, if (is.null(rec$seconds)) NA else rec$seconds,
                status))
    records[[case$id]] <- rec
    fitted[[case$id]] <- list(dataset = case$dataset, formula = case$formula,
                              REML = isTRUE(case$REML))
    if (!is.null(case$family))  # as harness.adapters.lme4.fitted_as
      fitted[[case$id]] <- c(fitted[[case$id]],
                             list(family = case$family, link = rec$link, nAGQ = case$nAGQ,
                                  weights = case$weights))
    if (!is.null(case$anova_formula))  # as fitted_as: the anova partner's formula
      fitted[[case$id]]$anova <- case$anova_formula
    if (!is.null(case$predict_grid))
      fitted[[case$id]]$predict_grid <- grid_label(case$predict_grid)
  }
  doc <- list(generator = "r_scripts/record_references.R",
              catalog = basename(catalog),
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
              # the BLAS kernel and threads too (blas_kernel(), lmer_record.R): at singular
              # fits lmerTest's df depend on them (r_scripts/blas_spread.R); the harness's R
              # runs one thread (harness/core/rbridge.py): record with OPENBLAS_NUM_THREADS=1
              versions = c(lmer_versions(), blas_kernel()),
              cases = fitted[intersect(ids, names(fitted))],
              records = records[intersect(ids, names(records))])
  dir.create(dirname(out), showWarnings = FALSE, recursive = TRUE)
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                    pretty = TRUE), out)
  cat(sprintf("wrote %d records to %s\n", length(records), out))
}

if (sys.nframe() == 0) main(commandArgs(trailingOnly = TRUE))
