# lme4's likelihood-ratio tests and confidence intervals, for tests/test_anova.py and
# tests/test_profile.py (mixedref.anova, mixedref.inference.profile).
#
#     Rscript r_scripts/inference_references.R [OUT]
#
# Run from the repository root; OUT defaults to tests/references/inference.json. Data are the
# harness's copies (read_dataset(), r_scripts/catalog.R).
#
# Recorded:
#   anova    lme4's anova(m0, m1) tables for three nested pairs (REML pairs are refitted with
#            ML by lme4; its message is recorded too).
#   profile  per case: confint(m, method = "Wald"), confint(m) (profile, default grid) and
#            as.data.frame(profile(m, signames = FALSE)); all with oldNames = FALSE names.
#   spread   the same profile intervals on a refined grid (delta.cutoff = 1/32 instead of 1/8,
#            maxpts = 400), and per parameter |default - refined|: how far lme4's own answer
#            moves with its grid, the basis of the tests' tolerance.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
invisible(Sys.setlocale("LC_COLLATE", "C"))
source("r_scripts/catalog.R")

fit <- function(dataset, formula, REML) {
  lmer(stats::as.formula(formula), data = read_dataset(dataset), REML = REML)
}

table_list <- function(tab) {
  # a data frame / matrix as {rownames, columns: {name: values}} (NA -> null)
  tab <- as.data.frame(tab, check.names = FALSE)
  list(rownames = rownames(tab),
       columns = lapply(as.list(tab), function(v) if (is.factor(v)) as.character(v) else v))
}

anova_case <- function(dataset, f0, f1, REML) {
  m0 <- fit(dataset, f0, REML)
  m1 <- fit(dataset, f1, REML)
  msgs <- character()
  tab <- withCallingHandlers(anova(m0, m1),
                             message = function(e) {
                               msgs <<- c(msgs, trimws(conditionMessage(e)))
                               invokeRestart("muffleMessage")
                             })
  list(dataset = dataset, formulas = c(f0, f1), REML = REML, messages = msgs,
       table = table_list(tab))
}

ci_list <- function(ci) list(rownames = rownames(ci), lower = unname(ci[, 1]),
                             upper = unname(ci[, 2]), colnames = colnames(ci))

profile_case <- function(dataset, formula, REML) {
  m <- fit(dataset, formula, REML)
  t0 <- proc.time()[["elapsed"]]
  pr <- profile(m, signames = FALSE)
  secs <- proc.time()[["elapsed"]] - t0
  pr_fine <- profile(m, signames = FALSE, delta.cutoff = 1 / 32, maxpts = 400)
  ci <- suppressWarnings(confint(pr))
  ci_fine <- suppressWarnings(confint(pr_fine))
  wald <- confint(m, method = "Wald", oldNames = FALSE)
  df <- as.data.frame(pr)
  df$.par <- as.character(df$.par)
  mref <- if (REML) refitML(m) else m
  list(dataset = dataset, formula = formula, REML = REML,
       ml_deviance = unname(deviance(mref)), ml_sigma = sigma(mref),
       ml_fixef = as.list(fixef(mref)),
       wald = ci_list(wald), profile_ci = ci_list(ci), profile_ci_fine = ci_list(ci_fine),
       spread = list(rownames = rownames(ci),
                     lower = unname(abs(ci[, 1] - ci_fine[, 1])),
                     upper = unname(abs(ci[, 2] - ci_fine[, 2]))),
       profile_seconds = secs, profile = as.list(df))
}

main <- function(args) {
  out <- if (length(args) >= 1) args[1] else "tests/references/inference.json"
  anovas <- list(
    "sleepstudy-REML" = anova_case("sleepstudy", "Reaction ~ Days + (1 | Subject)",
                                   "Reaction ~ Days + (Days | Subject)", TRUE),
    "Penicillin-REML" = anova_case("Penicillin", "diameter ~ 1 + (1 | plate)",
                                   "diameter ~ 1 + (1 | plate) + (1 | sample)", TRUE),
    "cake-ML" = anova_case("cake", "angle ~ recipe + temperature + (1 | recipe:replicate)",
                           "angle ~ recipe * temperature + (1 | recipe:replicate)", FALSE))
  profiles <- list(
    "sleepstudy-slopes-REML" = profile_case("sleepstudy",
                                            "Reaction ~ Days + (Days | Subject)", TRUE),
    "sleepstudy-slopes-ML" = profile_case("sleepstudy",
                                          "Reaction ~ Days + (Days | Subject)", FALSE),
    "Penicillin-crossed-REML" = profile_case("Penicillin",
                                             "diameter ~ 1 + (1 | plate) + (1 | sample)",
                                             TRUE),
    "Dyestuff-ML" = profile_case("Dyestuff", "Yield ~ 1 + (1 | Batch)", FALSE),
    "Dyestuff2-singular-ML" = profile_case("Dyestuff2", "Yield ~ 1 + (1 | Batch)", FALSE))
  doc <- list(generator = "r_scripts/inference_references.R",
              date = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
              versions = list(R = R.version.string,
                              lme4 = as.character(utils::packageVersion("lme4"))),
              anova = anovas, profiles = profiles)
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                    pretty = TRUE), out)
  cat(sprintf("wrote %d anova tables and %d profiles to %s\n", length(anovas),
              length(profiles), out))
}

if (sys.nframe() == 0) main(commandArgs(trailingOnly = TRUE))
