# lmerTest's Satterthwaite and pbkrtest's Kenward-Roger df on fits beyond the old size limits
# (6,000 rows Satterthwaite, 2,000 Kenward-Roger), for tests/test_ddf_large.py.
#
#     Rscript r_scripts/bigddf_references.R [OUT] [CASE ...]
#
# Run from the repository root; OUT defaults to tests/references/ddf_large.json. Cases: the
# seeded design tests/references/bigddf_seeded.csv.gz (tools/bigddf_data.py) with all 20,000
# rows (Satterthwaite) and its first 6,500 (Satterthwaite and Kenward-Roger: pbkrtest holds
# dense n x n matrices, 0.34 GB each there), and InstEval's catalog model by REML and ML
# (Satterthwaite). Per case: formula, REML, nobs, lme4's theta and sigma, the fixed effects,
# summary(m, ddf=)$coefficients and anova(m, type = 3, ddf=) per method, and the seconds each
# took (fit alone; lmerTest's Hessian and Jacobian, as_lmerModLmerTest; each table; pbkrtest's
# vcovAdj, computed once per model: see vcov_adj_once).

suppressPackageStartupMessages({
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
source("r_scripts/catalog.R")

table_json <- function(x) {
  x <- as.data.frame(x, check.names = FALSE)
  list(rownames = rownames(x), columns = as.list(x))
}

seconds <- function(expr) {
  t0 <- proc.time()[["elapsed"]]
  value <- force(expr)
  list(value = value, seconds = proc.time()[["elapsed"]] - t0)
}

seeded <- function(nrows) {
  d <- utils::read.csv(gzfile("tests/references/bigddf_seeded.csv.gz"),
                       colClasses = c("numeric", "numeric", "character", "character",
                                      "character"))
  d <- d[seq_len(nrows), ]
  for (v in c("trt", "g", "h")) d[[v]] <- factor(d[[v]], levels = sort(unique(d[[v]])))
  d
}

# pbkrtest's vcovAdj computed once per model: lmerTest calls it once per coefficient and once
# per F test (six times here, each inverting the dense n x n covariance), always on the same
# fit, so the answers are lmerTest's own and only the repetitions are saved. The seconds of
# the first call are kept.
.vcov_adj_cache <- new.env()
.vcov_adj_original <- pbkrtest::vcovAdj
vcov_adj_once <- function(object, details = 0) {
  if (is.null(.vcov_adj_cache$value)) {
    t0 <- proc.time()[["elapsed"]]
    .vcov_adj_cache$value <- .vcov_adj_original(object, details)
    .vcov_adj_cache$seconds <- proc.time()[["elapsed"]] - t0
  }
  .vcov_adj_cache$value
}
utils::assignInNamespace("vcovAdj", vcov_adj_once, ns = "pbkrtest")

record_case <- function(s) {
  rm(list = ls(.vcov_adj_cache), envir = .vcov_adj_cache)
  d <- if (s$dataset == "bigddf_seeded") seeded(s$nrows) else read_dataset(s$dataset)
  f <- stats::as.formula(s$formula)
  fit <- seconds(lme4::lmer(f, data = d, REML = s$REML))
  conv <- seconds(lmerTest::as_lmerModLmerTest(fit$value))
  m <- conv$value
  out <- list(dataset = s$dataset, nrows = nrow(d), formula = s$formula, REML = s$REML,
              nobs = stats::nobs(m), theta = unname(getME(m, "theta")), sigma = sigma(m),
              fixef_names = names(fixef(m)),
              seconds = list(fit = fit$seconds, lmerTest_derivatives = conv$seconds))
  for (ddf in s$ddf) {
    coefs <- seconds(summary(m, ddf = ddf)$coefficients)
    aov <- seconds(anova(m, type = 3, ddf = ddf))
    out[[ddf]] <- list(coefficients = table_json(coefs$value), anova3 = table_json(aov$value))
    out$seconds[[paste0(ddf, "_coefficients")]] <- coefs$seconds
    out$seconds[[paste0(ddf, "_anova3")]] <- aov$seconds
    cat(sprintf("%s %s: summary %.1f s, anova %.1f s\n", s$id, ddf, coefs$seconds,
                aov$seconds))
  }
  if (!is.null(.vcov_adj_cache$seconds)) out$seconds$pbkrtest_vcovAdj <- .vcov_adj_cache$seconds
  out
}

SPECS <- list(
  list(id = "seeded20k-REML", dataset = "bigddf_seeded", nrows = 20000,
       formula = "y ~ x + trt + (x | g) + (1 | h)", REML = TRUE, ddf = "Satterthwaite"),
  list(id = "seeded6500-REML", dataset = "bigddf_seeded", nrows = 6500,
       formula = "y ~ x + trt + (x | g) + (1 | h)", REML = TRUE,
       ddf = c("Satterthwaite", "Kenward-Roger")),
  list(id = "InstEval-REML", dataset = "InstEval",
       formula = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)", REML = TRUE,
       ddf = "Satterthwaite"),
  list(id = "InstEval-ML", dataset = "InstEval",
       formula = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)", REML = FALSE,
       ddf = "Satterthwaite"))

main <- function(args) {
  out <- if (length(args) >= 1) args[1] else "tests/references/ddf_large.json"
  wanted <- if (length(args) >= 2) args[-1] else vapply(SPECS, function(s) s$id, "")
  cases <- list()
  for (s in SPECS) if (s$id %in% wanted) cases[[s$id]] <- record_case(s)
  doc <- list(generator = "r_scripts/bigddf_references.R",
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
              versions = list(R = R.version.string,
                              lme4 = as.character(utils::packageVersion("lme4")),
                              lmerTest = as.character(utils::packageVersion("lmerTest")),
                              pbkrtest = as.character(utils::packageVersion("pbkrtest")),
                              numDeriv = as.character(utils::packageVersion("numDeriv")),
                              BLAS = extSoftVersion()[["BLAS"]]),
              cases = cases)
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE,
                    matrix = "rowmajor"), out)
  cat(sprintf("wrote %d cases to %s\n", length(cases), out))
}

if (sys.nframe() == 0) main(commandArgs(trailingOnly = TRUE))
