# Record glmmTMB's answers to every catalog case, in lme4's terms, for the harness's second
# engine (harness/adapters/glmmtmb.py, "glmmTMB-recorded") and harness/commands/best_known.py.
#
#     Rscript r_scripts/record_glmmtmb.R [CATALOG] [OUT] [IDS]
#
# CATALOG defaults to <repo>/harness/catalog.yaml, OUT to <repo>/harness/references/glmmtmb.json.
# IDS, a regular expression on case ids, records only the matching cases and keeps OUT's other
# records and devfun checks as they are (their cases must still be in the catalog; the date,
# seconds and versions become this run's), as r_scripts/record_references.R does.
# Each case is fitted with glmmtmb_record() (r_scripts/glmmtmb_record.R: glmmTMB's defaults,
# Gaussian, REML as the case says) on the data read by read_dataset() (r_scripts/catalog.R).
# The output has the shape of harness/references/lme4.json (generator, catalog, date, versions,
# cases: what was fitted per case id, records: one record per case id) plus `devfun_check`:
# per case lme4's own criterion (devfun_at, r_scripts/allfit.R) at the recorded θ next to
# glmmTMB's -2 logLik, which shows that the two are on one scale (REML included). No Python is
# needed. InstEval takes the longest (tens of seconds per fit).

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
  Sys.setenv(MIXEDREF_RECORD_SCHEMA = file.path(dirname(here), "harness", "record.schema.json"))
  source(file.path(here, "lmer_record.R"))
  source(file.path(here, "glmmtmb_record.R"))
  source(file.path(here, "allfit.R"))
  source(file.path(here, "catalog.R"))
  catalog <- if (length(args) >= 1) args[1] else file.path(repo, "harness", "catalog.yaml")
  out <- if (length(args) >= 2) args[2] else
    file.path(repo, "harness", "references", "glmmtmb.json")
  why <- glmmtmb_unavailable()
  if (nzchar(why)) stop(why)
  cases <- read_catalog(catalog)
  records <- list()
  fitted <- list()
  checks <- list()
  sel <- select_cases(cases, if (length(args) >= 3) args[3] else NULL, out)
  cases <- sel$cases
  ids <- sel$ids  # the catalog's order, kept in OUT
  if (!is.null(sel$old)) {
    records <- sel$old$records[sel$keep]
    fitted <- sel$old$cases[sel$keep]
    checks <- sel$old$devfun_check[intersect(sel$keep, names(sel$old$devfun_check))]
  }
  cache <- list()
  t_all <- Sys.time()
  for (case in cases) {
    key <- paste(c(case$dataset, case$data_dirs), collapse = "\r")
    if (is.null(cache[[key]])) cache[[key]] <- read_dataset(case$dataset, case$data_dirs)
    rec <- glmmtmb_record(cache[[key]], case$formula, isTRUE(case$REML), case$id)
    check <- list(objective = rec$objective, devfun = NULL)
    if (is.null(rec$error)) {
      check$devfun <- devfun_at(cache[[key]], case$formula, isTRUE(case$REML),
                                list(unlist(rec$theta)))
    }
    status <- if (is.null(rec$error)) {
      sprintf("objective %.6f, lme4's devfun at its theta %.6f", rec$objective, check$devfun)
    } else rec$error
    cat(sprintf("%-40s %6.2fs  %s\n", case$id, if (is.null(rec$seconds)) NA else rec$seconds,
                status))
    records[[case$id]] <- rec
    checks[[case$id]] <- check
    fitted[[case$id]] <- list(dataset = case$dataset, formula = case$formula,
                              REML = isTRUE(case$REML))
  }
  doc <- list(generator = "r_scripts/record_glmmtmb.R",
              catalog = basename(catalog),
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
              seconds = as.numeric(difftime(Sys.time(), t_all, units = "secs")),
              versions = glmmtmb_versions(),
              cases = fitted[intersect(ids, names(fitted))],
              records = records[intersect(ids, names(records))],
              devfun_check = checks[intersect(ids, names(checks))])
  dir.create(dirname(out), showWarnings = FALSE, recursive = TRUE)
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                    pretty = TRUE), out)
  cat(sprintf("wrote %d records to %s\n", length(records), out))
}

if (sys.nframe() == 0) main(commandArgs(trailingOnly = TRUE))
