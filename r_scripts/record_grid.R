# Record lme4's answers to every case of the stress grid (harness/commands/grid/).
#
#     python -m harness.commands.grid --write-data build/grid            # the grid's catalog and data
#     Rscript r_scripts/record_grid.R [DIR] [OUT] [--coef-tests]
#     Rscript r_scripts/record_grid.R --tight [DIR] [OUT]
#
# DIR (default <repo>/build/grid) holds catalog.yaml and data/ as harness.commands.grid writes them;
# OUT (default <repo>/harness/references/grid_lme4.json.gz) is written gzipped. Each case is
# fitted by lmer_record() / glmer_record() (lme4's defaults), as r_scripts/record_references.R
# does, but without lmerTest's and pbkrtest's coefficient tests unless --coef-tests (they
# would triple the recording's time; the grid compares estimates, SEs, the criterion, the
# conditional modes, predictions and Wald intervals). Per case id the output says what was
# fitted (dataset, formula, REML; GLMMs also family, link, nAGQ, weights) and the SHA-256 of
# the data's CSV text as datasets.yaml declares it, so harness.commands.grid refuses a recording made
# for other data.
#
# --tight records the GLMM cells and the LMM cells the grid's registry names (lmer with
# nloptwrap's BOBYQA at ftol 1e-15, xtol 1e-12), with glmer converged far past its defaults (bobyqa in
# both stages, rhoend 1e-10, PIRLS to tolPwrss 1e-12), into grid_lme4_tight.json.gz: lme4's
# own answer to "where is the optimum", the evidence behind harness/grid_divergences.yaml
# (tests/test_grid.py checks mixedref against it where lme4's defaults stop short).

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
  with_tests <- "--coef-tests" %in% args
  tight <- "--tight" %in% args
  args <- setdiff(args, c("--coef-tests", "--tight"))
  if (!with_tests) coef_tests <<- function(m, REML) NULL
  dir <- if (length(args) >= 1) args[1] else file.path(repo, "build", "grid")
  out <- if (length(args) >= 2) args[2] else
    file.path(repo, "harness", "references",
              if (tight) "grid_lme4_tight.json.gz" else "grid_lme4.json.gz")
  cases <- read_catalog(file.path(dir, "catalog.yaml"))
  settings <- list()
  lmm_control <- NULL
  if (tight) {
    # the GLMM cells, and the LMM cells the grid's registry names (where lmer's default stops
    # short): those with nloptwrap's BOBYQA converged far past its defaults
    registry <- yaml::read_yaml(file.path(repo, "harness", "grid_divergences.yaml"))
    named <- unlist(lapply(registry$findings, function(f) vapply(f$rows, function(r) r$case, "")))
    cases <- Filter(function(x) !is.null(x$family) || x$id %in% named, cases)
    lmm_control <- lme4::lmerControl(optimizer = "nloptwrap", optCtrl = list(
      ftol_abs = 1e-15, ftol_rel = 1e-15, xtol_abs = 1e-12, xtol_rel = 1e-12, maxeval = 1e5))
    settings <- list(optimizer = "bobyqa", tolPwrss = 1e-12,
                     optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
  }
  data_dir <- file.path(dir, "data")
  meta <- read_dataset_meta(data_dir)  # once: the file lists every cell
  records <- list()
  fitted <- list()
  t_all <- Sys.time()
  for (i in seq_along(cases)) {
    case <- cases[[i]]
    entry <- meta[[case$dataset]]
    if (is.null(entry)) stop(sprintf("dataset '%s' is not in %s", case$dataset, data_dir))
    d <- .read_dataset_file(case$dataset, entry, data_dir)
    rec <- if (is.null(case$family)) lmer_record(d, case$formula, isTRUE(case$REML), case$id,
                                                 control = lmm_control)
           else glmer_record(d, case$formula, case$family, case$link, case$nAGQ,
                             case$weights, case$id, settings = settings)
    if (i %% 50 == 0 || !is.null(rec$error))
      cat(sprintf("[%d/%d] %-44s %s\n", i, length(cases), case$id,
                  if (is.null(rec$error)) sprintf("objective %.6f", rec$objective)
                  else rec$error))
    records[[case$id]] <- rec
    fitted[[case$id]] <- list(dataset = case$dataset, formula = case$formula,
                              REML = isTRUE(case$REML), data_sha256 = entry$sha256)
    if (!is.null(case$family))  # as harness.adapters.lme4.fitted_as
      fitted[[case$id]] <- c(fitted[[case$id]],
                             list(family = case$family, link = rec$link, nAGQ = case$nAGQ,
                                  weights = case$weights))
  }
  doc <- list(generator = if (tight) "r_scripts/record_grid.R --tight" else "r_scripts/record_grid.R",
              settings = if (tight) settings else NULL,
              catalog = "build/grid/catalog.yaml (python -m harness.commands.grid --write-data)",
              coef_tests = with_tests,
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
              versions = lmer_versions(),
              cases = fitted,
              records = records)
  dir.create(dirname(out), showWarnings = FALSE, recursive = TRUE)
  con <- gzfile(out, "w", compression = 9)
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), con)
  close(con)
  cat(sprintf("wrote %d records to %s in %.0f s\n", length(records), out,
              as.numeric(difftime(Sys.time(), t_all, units = "secs"))))
}

if (sys.nframe() == 0) main(commandArgs(trailingOnly = TRUE))
