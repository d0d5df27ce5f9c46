# Time lme4's default lmer (and, where asked, confint(m, method = "profile")) on the hard cases
# of tools/bench_hard.py, one JSON line per case.
#
#     OPENBLAS_NUM_THREADS=1 Rscript r_scripts/bench_hard.R SPEC.json
#
# SPEC.json is a list of cases, each {name, formula, REML, reps, profile_reps} and either
# `dataset` (a harness dataset, read with r_scripts/catalog.R's read_dataset, R's factor levels
# as Python's) or `csv` (a file written by the Python side; text columns become factors).
# Each lmer() call is timed alone with lmerControl()'s defaults, after one warm-up fit, as the
# median of `reps`; warnings are collected, not printed. Output per case: {name, seconds, nfev,
# objective, messages, profile_seconds, confint: {rownames, lower, upper}}.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE),
                                                    value = TRUE)[1])), "catalog.R"))

read_case_data <- function(case) {
  if (!is.null(case$dataset)) return(read_dataset(case$dataset))
  utils::read.csv(case$csv, stringsAsFactors = TRUE)
}

time_case <- function(case) {
  data <- read_case_data(case)
  form <- stats::as.formula(case$formula)
  msgs <- character(0)
  fit_once <- function() withCallingHandlers(
    lmer(form, data = data, REML = isTRUE(case$REML)),
    warning = function(w) {
      msgs <<- unique(c(msgs, conditionMessage(w)))
      invokeRestart("muffleWarning")
    }, message = function(m) invokeRestart("muffleMessage"))
  secs <- numeric(case$reps)
  for (i in seq_len(case$reps)) {
    t0 <- proc.time()[["elapsed"]]
    m <- fit_once()
    secs[i] <- proc.time()[["elapsed"]] - t0
  }
  out <- list(name = case$name, impl = "lme4", seconds = stats::median(secs),
              nfev = m@optinfo$feval,
              objective = unname(m@devcomp$cmp[if (isREML(m)) "REML" else "dev"]),
              messages = I(c(msgs, m@optinfo$conv$lme4$messages)))
  nprof <- if (is.null(case$profile_reps)) 0L else as.integer(case$profile_reps)
  if (nprof > 0) {
    psecs <- numeric(nprof)
    for (i in seq_len(nprof)) {
      t0 <- proc.time()[["elapsed"]]
      ci <- suppressMessages(suppressWarnings(confint(m, method = "profile", oldNames = FALSE)))
      psecs[i] <- proc.time()[["elapsed"]] - t0
    }
    out$profile_seconds <- stats::median(psecs)
    out$confint <- list(rownames = I(rownames(ci)), lower = I(unname(ci[, 1])),
                        upper = I(unname(ci[, 2])))
  }
  out
}

invisible(lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy))  # warm-up
args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: Rscript r_scripts/bench_hard.R SPEC.json")
spec <- jsonlite::fromJSON(args[1], simplifyVector = FALSE)
for (case in spec) cat(toJSON(time_case(case), auto_unbox = TRUE, digits = NA), "\n", sep = "")
