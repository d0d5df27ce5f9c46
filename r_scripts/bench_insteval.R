# Time lme4's fits for the speed goal (issue 3): InstEval ML and small cases, one JSON line each.
#
#     Rscript r_scripts/bench_insteval.R [CASE ...]
#
# CASE is insteval_ml (default), insteval_reml or sleepstudy_reml. Each fit is timed alone
# (lmer() call only, after one warm-up lmer on sleepstudy so lazy loading is not timed); the
# small case is timed as the median of 20 fits. Output: {"case", "seconds", "nfev", "objective",
# "maxrss_kb"} per line; tools/bench_insteval.py alternates this script with mixedref's runs.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

cases <- list(
  insteval_ml = list(data = lme4::InstEval, REML = FALSE, reps = 1L,
                     formula = y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)),
  insteval_reml = list(data = lme4::InstEval, REML = TRUE, reps = 1L,
                       formula = y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)),
  sleepstudy_reml = list(data = lme4::sleepstudy, REML = TRUE, reps = 20L,
                         formula = Reaction ~ Days + (Days | Subject))
)

# Peak resident memory of this R process in kB (Linux /proc), NA elsewhere.
maxrss_kb <- function() {
  status <- tryCatch(readLines("/proc/self/status"), error = function(e) character(0))
  line <- grep("^VmHWM:", status, value = TRUE)
  if (length(line) == 0) return(NA_real_)
  as.numeric(gsub("[^0-9]", "", line))
}

time_case <- function(name) {
  case <- cases[[name]]
  if (is.null(case)) stop("unknown case '", name, "'; known: ", paste(names(cases), collapse = ", "))
  secs <- numeric(case$reps)
  for (i in seq_len(case$reps)) {
    t0 <- proc.time()[["elapsed"]]
    m <- lmer(case$formula, data = case$data, REML = case$REML)
    secs[i] <- proc.time()[["elapsed"]] - t0
  }
  list(case = name, impl = "lme4", seconds = stats::median(secs), nfev = m@optinfo$feval,
       objective = unname(m@devcomp$cmp[if (case$REML) "REML" else "dev"]),
       maxrss_kb = maxrss_kb())
}

invisible(lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy))  # warm-up
args <- commandArgs(trailingOnly = TRUE)
if (length(args) == 0) args <- "insteval_ml"
for (name in args) cat(toJSON(time_case(name), auto_unbox = TRUE, digits = NA), "\n", sep = "")
