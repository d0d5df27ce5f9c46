# lmerTest's and pbkrtest's denominator degrees of freedom, for tests/test_ddf.py (mixedref.inference.ddf).
#
#     Rscript r_scripts/ddf_references.R [OUT]
#
# Run from the repository root; OUT defaults to tests/references/ddf.json. The data are the
# harness's copies (read_dataset(), r_scripts/catalog.R). Models are fitted with lmerTest::lmer.
# Per case: formula, REML, lme4's theta and sigma (so a test can tell a df difference from an
# estimate difference), the fixed effects' names, lmerTest's summary(m, ddf=)$coefficients for
# Satterthwaite and (REML only) Kenward-Roger, contest(m, L, joint = FALSE / TRUE, ddf =) for
# one contrast matrix L per model, and pbkrtest::vcovAdj(m). For the ML case the error that
# lmerTest gives for Kenward-Roger is recorded, and vcovAdj (which refits by REML) as well.

suppressPackageStartupMessages({
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
source("r_scripts/catalog.R")

# One contrast matrix per model: a single row for an intercept-only model, two independent rows
# for two fixed effects, three for more (every row a different direction, so L has full rank).
contrast_for <- function(p) {
  if (p == 1) return(matrix(1, 1, 1))
  if (p == 2) return(rbind(c(1, 5), c(0, 1)))
  L <- matrix(0, 3, p)
  L[1, 2] <- 1
  L[2, 3] <- 1
  L[3, c(1, p)] <- 1
  L
}

table_json <- function(x) {
  x <- as.data.frame(x, check.names = FALSE)
  list(rownames = rownames(x), columns = as.list(x))
}

error_text <- function(expr) {
  tryCatch({ force(expr); NULL }, error = function(e) conditionMessage(e))
}

record_case <- function(s) {
  d <- read_dataset(s$dataset)
  m <- lmerTest::lmer(stats::as.formula(s$formula), data = d, REML = s$REML)
  L <- contrast_for(length(fixef(m)))
  out <- list(dataset = s$dataset, formula = s$formula, REML = s$REML,
              theta = unname(getME(m, "theta")), sigma = sigma(m),
              fixef_names = names(fixef(m)), L = L)
  ddfs <- if (s$REML) c("Satterthwaite", "Kenward-Roger") else "Satterthwaite"
  for (ddf in ddfs) {
    out[[ddf]] <- list(
      coefficients = table_json(summary(m, ddf = ddf)$coefficients),
      contest_rows = table_json(contest(m, L, joint = FALSE, ddf = ddf, confint = FALSE)),
      contest_joint = table_json(contest(m, L, joint = TRUE, ddf = ddf)))
  }
  if (!s$REML) {
    out$kr_error_summary <- error_text(summary(m, ddf = "Kenward-Roger"))
    out$kr_error_contest <- error_text(contest(m, L, joint = TRUE, ddf = "Kenward-Roger"))
  }
  out$vcovAdj <- unname(as.matrix(vcovAdj(m)))
  out
}

main <- function(args) {
  out <- if (length(args) >= 1) args[1] else "tests/references/ddf.json"
  specs <- list(
    list(id = "sleepstudy-slopes-REML", dataset = "sleepstudy",
         formula = "Reaction ~ Days + (Days | Subject)", REML = TRUE),
    list(id = "sleepstudy-slopes-ML", dataset = "sleepstudy",
         formula = "Reaction ~ Days + (Days | Subject)", REML = FALSE),
    list(id = "sleepstudy-uncorrelated-REML", dataset = "sleepstudy",
         formula = "Reaction ~ Days + (Days || Subject)", REML = TRUE),
    list(id = "Penicillin-crossed-REML", dataset = "Penicillin",
         formula = "diameter ~ 1 + (1 | plate) + (1 | sample)", REML = TRUE),
    list(id = "cake-split-REML", dataset = "cake",
         formula = "angle ~ recipe * temperature + (1 | recipe:replicate)", REML = TRUE),
    list(id = "Pastes-nested-REML", dataset = "Pastes",
         formula = "strength ~ 1 + (1 | batch/cask)", REML = TRUE),
    list(id = "sim_unbalanced-slopes-REML", dataset = "sim_unbalanced",
         formula = "y ~ x + (x | g)", REML = TRUE),
    list(id = "Dyestuff-intercept-REML", dataset = "Dyestuff",
         formula = "Yield ~ 1 + (1 | Batch)", REML = TRUE))
  cases <- list()
  for (s in specs) cases[[s$id]] <- record_case(s)
  doc <- list(generator = "r_scripts/ddf_references.R",
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
              versions = list(R = R.version.string,
                              lme4 = as.character(utils::packageVersion("lme4")),
                              lmerTest = as.character(utils::packageVersion("lmerTest")),
                              pbkrtest = as.character(utils::packageVersion("pbkrtest")),
                              numDeriv = as.character(utils::packageVersion("numDeriv"))),
              cases = cases)
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE,
                    matrix = "rowmajor"), out)
  cat(sprintf("wrote %d cases to %s\n", length(cases), out))
}

if (sys.nframe() == 0) main(commandArgs(trailingOnly = TRUE))
