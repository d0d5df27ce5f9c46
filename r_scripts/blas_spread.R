# The evidence behind the singular-fit allowances (harness/core/tolerance.py, "BLAS spread"): how far
# lme4's own answers move on one machine when only the BLAS kernel and its thread count change.
#
#     Rscript r_scripts/blas_spread.R [OUT] [CASE_ID ...]
#
# Run from the repository root. OUT defaults to tests/references/blas_spread.json.gz. Without
# CASE_IDs the cases are the catalog's LMM cases whose recorded lme4 fit
# (harness/references/lme4.json) is singular. Each case is refitted exactly as
# r_scripts/record_references.R records it (lmer_record(): lme4's defaults, lmerTest's
# Satterthwaite and pbkrtest's Kenward-Roger df, intervals, anova, grid) in a fresh Rscript per
# BLAS configuration: OpenBLAS's kernel forced with OPENBLAS_CORETYPE (or detected: "auto") times
# OPENBLAS_NUM_THREADS 1 and 2. OpenBLAS reads both when R loads it, so each configuration needs
# its own process; OPENBLAS_VERBOSE=2 makes it print the kernel it chose ("Core: Haswell"), which
# is recorded. A kernel this CPU cannot run dies of an illegal instruction: the configuration is
# recorded as crashed with its message, and one OpenBLAS does not know falls back to detection
# (recorded as such, its fits left out as a duplicate of "auto").
# The output holds every configuration's records and, per case and quantity, the values' min,
# max and spread (max - min) across the configurations that ran. tests/test_tolerance_evidence.py
# reads it.
#
# Internal: Rscript r_scripts/blas_spread.R --child FILE CASE_ID ... fits the cases under the
# BLAS this process loaded and writes their records to FILE.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

invisible(Sys.setlocale("LC_COLLATE", "C"))
source("r_scripts/record_schema.R")
Sys.setenv(MIXEDREF_RECORD_SCHEMA = "harness/core/record.schema.json")
source("r_scripts/lmer_record.R")
source("r_scripts/catalog.R")

#: OpenBLAS kernels tried (x86-64 DYNAMIC_ARCH names), "auto" for OpenBLAS's own detection;
#: the first "auto" configuration is the harness's own (1 thread, detected kernel).
#: $BLAS_SPREAD_CORETYPES (comma-separated) replaces the list (tests run two).
CORETYPES <- local({
  e <- Sys.getenv("BLAS_SPREAD_CORETYPES")
  if (nzchar(e)) strsplit(e, ",")[[1]] else
    c("auto", "Prescott", "Core2", "Nehalem", "Sandybridge", "Haswell", "Zen", "SkylakeX",
      "Bulldozer", "Excavator")
})
THREADS <- c(1L, 2L)
CHILD_TIMEOUT <- 3600  # seconds for one configuration's fits

# The catalog's LMM cases whose recorded lme4 fit is singular.
singular_cases <- function(cases) {
  recorded <- fromJSON("harness/references/lme4.json", simplifyVector = FALSE)$records
  Filter(function(x) is.null(x$family) && isTRUE(recorded[[x$id]]$singular), cases)
}

# Fit `cases` as record_references.R does; a named list of records.
fit_cases <- function(cases) {
  records <- list()
  cache <- list()
  for (case in cases) {
    key <- paste(c(case$dataset, case$data_dirs), collapse = "\r")
    if (is.null(cache[[key]])) cache[[key]] <- read_dataset(case$dataset, case$data_dirs)
    records[[case$id]] <- lmer_record(cache[[key]], case$formula, isTRUE(case$REML), case$id,
                                      intervals = "intervals" %in% case$tags,
                                      anova = case$anova_formula, grid = case$predict_grid)
  }
  records
}

child <- function(args) {
  cases <- read_catalog("harness/catalog.yaml")
  ids <- vapply(cases, function(x) x$id, "")
  records <- fit_cases(cases[ids %in% args[-1]])
  writeLines(toJSON(records, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
             args[1])
}

# Run the child under one configuration: list(config, records or NULL).
run_config <- function(core, threads, ids) {
  name <- sprintf("%s-%d", core, threads)
  out <- tempfile(fileext = ".json")
  old <- Sys.getenv(c("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OPENBLAS_VERBOSE"),
                    unset = NA)
  on.exit({
    for (k in names(old)) if (is.na(old[[k]])) Sys.unsetenv(k) else
      do.call(Sys.setenv, setNames(list(old[[k]]), k))
    unlink(out)
  })
  if (core == "auto") Sys.unsetenv("OPENBLAS_CORETYPE") else Sys.setenv(OPENBLAS_CORETYPE = core)
  Sys.setenv(OPENBLAS_NUM_THREADS = threads, OPENBLAS_VERBOSE = 2)
  t0 <- Sys.time()
  err <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"),
                                  c("r_scripts/blas_spread.R", "--child", out, ids),
                                  stdout = FALSE, stderr = TRUE, timeout = CHILD_TIMEOUT))
  seconds <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  status <- attr(err, "status")
  used <- sub("^Core: *", "", grep("^Core: ", err, value = TRUE))
  config <- list(name = name, OPENBLAS_CORETYPE = if (core == "auto") NULL else core,
                 OPENBLAS_NUM_THREADS = threads,
                 core = if (length(used)) used[1] else NULL,
                 fell_back = any(grepl("^Core not found", err)),
                 seconds = seconds, status = "ok", message = NULL)
  if (!is.null(status) && status != 0 || !file.exists(out)) {
    config$status <- "crashed"
    config$message <- paste(utils::tail(grep("illegal|error|Error|abort", err, value = TRUE),
                                        3), collapse = " | ")
    return(list(config = config, records = NULL))
  }
  if (config$fell_back) config$status <- "fell back to detection (left out)"
  list(config = config, records = fromJSON(out, simplifyVector = FALSE))
}

# A record's compared numbers as a named numeric vector (names as the harness's rows).
flat <- function(rec) {
  v <- c()
  add <- function(name, x) if (!is.null(x) && is.numeric(x)) v[[name]] <<- x
  for (k in names(rec$fixef)) add(sprintf("fixef[%s]", k), rec$fixef[[k]])
  for (k in names(rec$fixef_se)) add(sprintf("fixef_se[%s]", k), rec$fixef_se[[k]])
  add("sigma", rec$sigma)
  add("loglik", rec$loglik)
  add("objective", rec$objective)
  for (i in seq_along(rec$theta)) add(sprintf("theta[%d]", i - 1), rec$theta[[i]])
  for (r in rec$varcorr) {
    key <- paste(c(r$grp, r$var1, r$var2), collapse = ",")
    add(sprintf("vcov[%s]", key), r$vcov)
    add(sprintf("sdcor[%s]", key), r$sdcor)
  }
  short <- c(Satterthwaite = "satterthwaite", `Kenward-Roger` = "kr")
  for (r in rec$coef_tests) {
    s <- short[[r$ddf]]
    add(sprintf("df_%s[%s]", s, r$term), r$df)
    add(sprintf("se_%s[%s]", s, r$term), r$se)
    add(sprintf("p_%s[%s]", s, r$term), r$p)
  }
  for (r in rec$confint) {
    add(sprintf("ci_%s[%s].lower", r$method, r$parm), r$lower)
    add(sprintf("ci_%s[%s].upper", r$method, r$parm), r$upper)
  }
  v
}

# Per quantity: min, max, spread (max - min) and spread relative to min |value|.
spread_of <- function(records) {
  flats <- lapply(records, flat)
  names_all <- unique(unlist(lapply(flats, names)))
  out <- list()
  for (q in names_all) {
    x <- vapply(flats, function(f) if (q %in% names(f)) f[[q]] else NA_real_, 0)
    x <- x[is.finite(x)]
    if (!length(x)) next
    s <- max(x) - min(x)
    m <- min(abs(x))
    out[[q]] <- list(min = min(x), max = max(x), spread = s,
                     relative = if (m > 0) s / m else if (s == 0) 0 else NULL,
                     n = length(x))
  }
  out
}

main <- function(args) {
  out <- if (length(args) >= 1) args[1] else "tests/references/blas_spread.json.gz"
  cases <- read_catalog("harness/catalog.yaml")
  ids <- vapply(cases, function(x) x$id, "")
  wanted <- if (length(args) >= 2) args[-1] else character(0)
  unknown <- setdiff(wanted, ids)
  if (length(unknown)) stop(sprintf("unknown case id(s): %s", paste(unknown, collapse = ", ")))
  cases <- if (length(wanted)) cases[ids %in% wanted] else singular_cases(cases)
  ids <- vapply(cases, function(x) x$id, "")
  configs <- list()
  by_config <- list()
  for (core in CORETYPES) for (threads in THREADS) {
    res <- run_config(core, threads, ids)
    cfg <- res$config
    cat(sprintf("%-16s core %-12s %-40s %6.1fs %s\n", cfg$name,
                if (is.null(cfg$core)) "?" else cfg$core, cfg$status, cfg$seconds,
                if (is.null(cfg$message)) "" else cfg$message))
    configs[[cfg$name]] <- cfg
    if (cfg$status == "ok") by_config[[cfg$name]] <- res$records
  }
  result <- list()
  for (case in cases) {
    recs <- lapply(by_config, function(r) r[[case$id]])
    ok <- Filter(function(r) is.null(r$error), recs)
    result[[case$id]] <- list(dataset = case$dataset, formula = case$formula,
                              REML = isTRUE(case$REML), records = recs,
                              spread = spread_of(ok))
  }
  cpu <- grep("^model name", readLines("/proc/cpuinfo", warn = FALSE), value = TRUE)
  doc <- list(generator = "r_scripts/blas_spread.R",
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
              versions = c(lmer_versions(),  # each configuration's kernel: configurations
                           list(lmerTest = as.character(utils::packageVersion("lmerTest")),
                                pbkrtest = as.character(utils::packageVersion("pbkrtest")),
                                cpu = if (length(cpu)) trimws(sub("^[^:]*:", "", cpu[1])) else
                                  NULL)),
              reference_config = names(by_config)[1],
              configurations = unname(configs),
              cases = result)
  dir.create(dirname(out), showWarnings = FALSE, recursive = TRUE)
  con <- if (grepl("\\.gz$", out)) gzfile(out, "w") else file(out, "w")
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                    pretty = TRUE), con)
  close(con)
  cat(sprintf("wrote %d cases x %d configurations to %s\n", length(result), length(by_config),
              out))
}

if (sys.nframe() == 0) {
  args <- commandArgs(trailingOnly = TRUE)
  if (length(args) && args[1] == "--child") child(args[-1]) else main(args)
}
