# The evidence behind the tolerance policy (harness/core/tolerance.py, README "The tolerance policy"):
# how far apart lme4's own optimizers land on every catalog case.
#
#     Rscript r_scripts/optimizer_spread.R [OUT] [CASE_ID ...]
#     Rscript r_scripts/optimizer_spread.R tests/references/glmm_optimizer_spread.json.gz glmm
#
# Run from the repository root. OUT defaults to tests/references/optimizer_spread.json.gz. Without
# CASE_IDs every catalog case is fitted except those tagged `large` (InstEval) or `hard` (their
# optimizers disagree by design: a finding about lme4, not evidence for a tolerance); such a case
# runs when it is named; `glmm` selects the GLMM cases (glmer, both stages given the optimizer,
# glmerControl's defaults otherwise) instead of the LMM ones. Per case the script fits lme4's default (lmer's defaults: nloptwrap,
# NLOPT_LN_BOBYQA) and refits with every optimizer allFit() tries (its meth.tab: bobyqa,
# Nelder_Mead, nlminbwrap, nmkbw, optimx L-BFGS-B, nloptwrap NLOPT_LN_NELDERMEAD and
# NLOPT_LN_BOBYQA), each from lmer's default start and with lmerControl's defaults otherwise,
# recording each fit's full FitRecord with lmer_record() (r_scripts/lmer_record.R). The two
# optimizers lmerControl cannot name with a string (optimx needs a method, nloptwrap an
# algorithm) are passed as small wrapper functions that fix that one setting.
# tests/test_tolerance_evidence.py reads the output (and runs this script on two cases).

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

# optimx with method L-BFGS-B, returned in the shape lme4's optwrap() gives optimx's result.
optimx_lbfgsb <- function(par, fn, lower, upper, control = list(), ...) {
  control$method <- NULL
  res <- optimx::optimx(par, fn, lower = lower, upper = upper, method = "L-BFGS-B",
                        control = control)
  list(par = unlist(coef(res)[1, ]), fval = res$value[1], conv = res$convcode[1],
       feval = res$fevals[1] + res$gevals[1],
       message = attr(res, "details")[, "message"][[1]])
}

# lme4's nloptwrap with a given NLopt algorithm (its default is NLOPT_LN_BOBYQA).
nloptwrap_with <- function(algorithm) {
  force(algorithm)
  function(par, fn, lower, upper, control = list(), ...) {
    control$algorithm <- algorithm
    lme4::nloptwrap(par, fn, lower = lower, upper = upper, control = control, ...)
  }
}

# allFit's optimizers (names as allFit names its fits) and how lmerControl is told each one.
optimizers <- function() {
  tab <- list(
    bobyqa = "bobyqa",
    Nelder_Mead = "Nelder_Mead",
    nlminbwrap = "nlminbwrap",
    nmkbw = "nmkbw",
    `optimx.L-BFGS-B` = optimx_lbfgsb,
    nloptwrap.NLOPT_LN_NELDERMEAD = nloptwrap_with("NLOPT_LN_NELDERMEAD"),
    nloptwrap.NLOPT_LN_BOBYQA = nloptwrap_with("NLOPT_LN_BOBYQA"))
  # allFit drops what is not installed; so does this script
  if (!requireNamespace("dfoptim", quietly = TRUE)) tab$nmkbw <- NULL
  if (!requireNamespace("optimx", quietly = TRUE)) tab$`optimx.L-BFGS-B` <- NULL
  tab
}

main <- function(args) {
  out <- if (length(args) >= 1) args[1] else "tests/references/optimizer_spread.json.gz"
  wanted <- if (length(args) >= 2) args[-1] else character(0)
  glmm <- identical(wanted, "glmm")  # the GLMM cases (glmer) instead of the LMM ones
  if (glmm) wanted <- character(0)
  cases <- read_catalog("harness/catalog.yaml")
  ids <- vapply(cases, function(x) x$id, "")
  unknown <- setdiff(wanted, ids)
  if (length(unknown))
    stop(sprintf("unknown case id(s): %s", paste(unknown, collapse = ", ")))
  if (length(wanted)) cases <- cases[ids %in% wanted]
  else cases <- Filter(function(x) !any(c("large", "hard") %in% x$tags) &&
                         glmm == !is.null(x$family), cases)
  opts <- optimizers()
  result <- list()
  cache <- list()
  for (case in cases) {
    key <- paste(c(case$dataset, case$data_dirs), collapse = "\r")
    if (is.null(cache[[key]])) cache[[key]] <- read_dataset(case$dataset, case$data_dirs)
    d <- cache[[key]]
    fit <- function(impl = "lme4", optimizer = NULL) {
      if (is.null(case$family))
        lmer_record(d, case$formula, isTRUE(case$REML), case$id, impl, optimizer)
      else glmer_record(d, case$formula, case$family, case$link, case$nAGQ, case$weights,
                        case$id, impl, optimizer)
    }
    default <- fit()
    recs <- list()
    for (nm in names(opts)) {
      rec <- fit(paste0("lme4:", nm), opts[[nm]])
      # nlminbwrap reports no evaluation count (optinfo$feval is NA): the record says null
      if (length(rec$nfev) != 1 || is.na(rec$nfev)) rec["nfev"] <- list(NULL)
      problems <- validate_record(rec)
      if (length(problems)) stop(sprintf("%s, %s: record does not follow the schema: %s",
                                         case$id, nm, paste(problems, collapse = "; ")))
      recs[[nm]] <- rec
    }
    objs <- vapply(recs, function(r) if (is.null(r$objective)) NA_real_ else r$objective, 0)
    cat(sprintf("%-36s default %.6f  max-min over optimizers %.3g\n", case$id,
                if (is.null(default$objective)) NA_real_ else default$objective,
                diff(range(c(objs, default$objective), na.rm = TRUE))))
    result[[case$id]] <- list(dataset = case$dataset, formula = case$formula,
                              REML = isTRUE(case$REML), tags = I(case$tags),
                              default = default, optimizers = recs)
  }
  doc <- list(generator = "r_scripts/optimizer_spread.R",
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
              versions = c(lmer_versions(),
                           list(optimx = if (requireNamespace("optimx", quietly = TRUE))
                                  as.character(utils::packageVersion("optimx")) else NULL,
                                dfoptim = if (requireNamespace("dfoptim", quietly = TRUE))
                                  as.character(utils::packageVersion("dfoptim")) else NULL,
                                nloptr = as.character(utils::packageVersion("nloptr")))),
              cases = result)
  dir.create(dirname(out), showWarnings = FALSE, recursive = TRUE)
  # gzip-compressed when OUT ends in .gz (the committed files: every optimizer's record with
  # its conditional modes is ~13 MB of JSON, 1 MB compressed)
  con <- if (grepl("\\.gz$", out)) gzfile(out, "w") else file(out, "w")
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                    pretty = TRUE), con)
  close(con)
  cat(sprintf("wrote %d cases to %s\n", length(result), out))
}

if (sys.nframe() == 0) main(commandArgs(trailingOnly = TRUE))
