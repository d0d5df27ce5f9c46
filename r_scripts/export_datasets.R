# Export lme4's datasets to harness/data/ so they travel with the Python package.
#
# Run from anywhere (re-runnable; overwrites the files it owns):
#     Rscript r_scripts/export_datasets.R            # writes <repo>/harness/data/
#     Rscript r_scripts/export_datasets.R OUT_DIR    # writes OUT_DIR instead
#
# Writes <name>.csv.gz per dataset (plain CSV, numbers in the shortest text that reads back
# as the same double, factor columns as their labels) and updates harness/data/datasets.yaml:
# the entries with source "lme4" are replaced, every other entry (the simulated datasets that
# `python -m harness.generate.simulate --write` adds) is kept as it is. Per column the metadata records
# its type (numeric, integer, factor, ordered) and, for factors, the levels in R's order, so
# factor coding and level order survive the round trip to Python and back to R exactly.
#
# Added column: sleepstudy gains `fDays`, a factor copy of Days (levels "0".."9"), so that a
# catalog formula can put Days in the fixed part as a factor.
#
# The GLMM datasets (glmer's cases): lme4's cbpp, grouseticks, VerbAgg and Arabidopsis, and
# mlmRev's Contraception and Mmmec (source "mlmRev": Debian's r-cran-mlmrev). Their columns are exported as
# R has them (VerbAgg's resp an ordered factor, Arabidopsis' gen, rack and nutrient integers).
#
# R's own ChickWeight (source "R-datasets"): a 4-level factor (Diet) crossed with a numeric
# covariate (Time), for lmerTest's F tests of model terms.
#
# Derived datasets (source "lme4-derived", not "lme4": they are not objects of lme4's namespace,
# so r_scripts/catalog.R's check of the files against lme4's own datasets leaves them out):
# cbpp_binary is cbpp with one 0/1 row per animal (for each cbpp row, incidence rows with y = 1
# then size - incidence rows with y = 0; herd and period keep cbpp's levels), the Bernoulli form
# of the binomial cbind(incidence, size - incidence) model, with the same fixed and random effects.

suppressPackageStartupMessages({
  library(lme4)
  library(mlmRev)
  library(yaml)
})

#: Sources whose entries this script writes (and replaces); every other entry is kept.
OWN_SOURCES <- c("lme4", "mlmRev", "lme4-derived", "R-datasets")

script_dir <- function() {
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg) == 0) return(getwd())
  dirname(normalizePath(sub("^--file=", "", arg[1])))
}

# Shortest of 15..17 significant digits that reads back as exactly the same double.
format_double <- function(x) {
  out <- formatC(x, digits = 15, format = "g")
  for (d in 16:17) {
    bad <- as.numeric(out) != x
    if (!any(bad)) break
    out[bad] <- formatC(x[bad], digits = d, format = "g")
  }
  stopifnot(all(as.numeric(out) == x))
  trimws(out)
}

column_meta <- function(name, x) {
  if (is.ordered(x)) return(list(name = name, type = "ordered", levels = levels(x)))
  if (is.factor(x)) return(list(name = name, type = "factor", levels = levels(x)))
  if (is.integer(x)) return(list(name = name, type = "integer"))
  if (is.double(x)) return(list(name = name, type = "numeric"))
  stop(sprintf("column %s has unsupported class %s", name, class(x)[1]))
}

column_text <- function(name, x) {
  if (anyNA(x)) stop(sprintf("column %s has missing values; the CSV format here has no NA", name))
  if (is.factor(x)) {
    lab <- as.character(x)
    if (any(grepl("[,\"\n]", levels(x)))) stop(sprintf("column %s: a level holds , or \"", name))
    return(lab)
  }
  if (is.integer(x)) return(as.character(x))
  format_double(x)
}

write_dataset <- function(name, d, out_dir, description, source = "lme4") {
  text <- as.data.frame(Map(column_text, names(d), d), stringsAsFactors = FALSE,
                        optional = TRUE)
  file <- paste0(name, ".csv.gz")
  con <- gzfile(file.path(out_dir, file), "w")
  write.csv(text, con, row.names = FALSE, quote = FALSE)
  close(con)
  list(source = source, description = description, file = file, nrow = nrow(d),
       columns = unname(Map(column_meta, names(d), d)))
}

# cbpp with one row per animal: y = 1 for the incidence new cases, 0 for the others.
cbpp_binary <- function() {
  cb <- lme4::cbpp
  rows <- rep(seq_len(nrow(cb)), cb$size)
  y <- unlist(lapply(seq_len(nrow(cb)), function(i)
    rep(c(1, 0), c(cb$incidence[i], cb$size[i] - cb$incidence[i]))))
  d <- data.frame(herd = cb$herd[rows], period = cb$period[rows], y = as.numeric(y))
  stopifnot(nrow(d) == sum(cb$size), sum(d$y) == sum(cb$incidence),
            identical(levels(d$herd), levels(cb$herd)),
            identical(levels(d$period), levels(cb$period)))
  d
}

# R's ChickWeight as a plain data frame, Chick unordered (a grouping factor needs no order).
chick_weight <- function() {
  d <- as.data.frame(datasets::ChickWeight)
  d$Chick <- factor(as.character(d$Chick), levels = levels(d$Chick))
  d[c("weight", "Time", "Chick", "Diet")]
}

lme4_datasets <- function() {
  sleep <- lme4::sleepstudy
  sleep$fDays <- factor(sleep$Days, levels = sort(unique(sleep$Days)))
  list(
    sleepstudy = list(sleep, paste("lme4::sleepstudy: reaction times of 18 subjects over 10 days",
                                   "of sleep deprivation; fDays = factor(Days) added")),
    Dyestuff = list(lme4::Dyestuff, "lme4::Dyestuff: yield of dyestuff by batch (6 x 5)"),
    Dyestuff2 = list(lme4::Dyestuff2, "lme4::Dyestuff2: simulated, zero between-batch variance estimate"),
    Penicillin = list(lme4::Penicillin, "lme4::Penicillin: crossed plate x sample"),
    Pastes = list(lme4::Pastes, "lme4::Pastes: casks nested in batches"),
    cake = list(lme4::cake, "lme4::cake: breakage angle, temperature an ordered factor"),
    InstEval = list(lme4::InstEval, "lme4::InstEval: 73421 lecture evaluations"),
    cbpp = list(lme4::cbpp, paste("lme4::cbpp: contagious bovine pleuropneumonia, new cases",
                                  "(incidence) of size animals per herd and period (56 rows)")),
    grouseticks = list(lme4::grouseticks, paste("lme4::grouseticks: ticks on red grouse chicks",
                                                "(403 chicks, 118 broods, 63 locations, 3 years)")),
    VerbAgg = list(lme4::VerbAgg, paste("lme4::VerbAgg: verbal aggression, 316 subjects x 24",
                                        "items crossed; r2 the binary response (N, Y)")),
    Arabidopsis = list(lme4::Arabidopsis, paste("lme4::Arabidopsis: fruit counts of 625 plants",
                                                "(9 populations, 24 genotypes)")),
    Contraception = list(mlmRev::Contraception, paste(
      "mlmRev::Contraception: contraceptive use of 1934 Bangladeshi women in 60 districts",
      "(age centred)"), "mlmRev"),
    Mmmec = list(mlmRev::Mmmec, paste(
      "mlmRev::Mmmec: malignant melanoma deaths in 354 counties of 78 regions in 9 nations,",
      "with the deaths expected from the population (for an offset) and UVB exposure"), "mlmRev"),
    ChickWeight = list(chick_weight(), paste(
      "datasets::ChickWeight: weights of 50 chicks on 4 diets over 21 days (578 rows,",
      "unbalanced: chicks drop out); Chick as an unordered factor (ordered in R, same levels)"),
      "R-datasets"),
    cbpp_binary = list(cbpp_binary(), paste(
      "derived from lme4::cbpp: one row per animal (842), y = 1 for each of the incidence new",
      "cases and 0 for the other size - incidence animals of the herd and period; herd and",
      "period keep cbpp's levels"), "lme4-derived")
  )
}

main <- function() {
  args <- commandArgs(trailingOnly = TRUE)
  out_dir <- if (length(args) >= 1) args[1] else file.path(dirname(script_dir()), "harness", "data")
  dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
  meta_path <- file.path(out_dir, "datasets.yaml")
  # y/n/Y/N stay strings, as PyYAML reads them (R's yaml would take them for booleans)
  handlers <- list("bool#yes" = function(x) if (x %in% c("y", "Y")) x else TRUE,
                   "bool#no" = function(x) if (x %in% c("n", "N")) x else FALSE)
  old <- if (file.exists(meta_path)) yaml::read_yaml(meta_path, handlers = handlers)$datasets
  if (is.null(old)) old <- list()
  new <- list()
  for (nm in names(lme4_datasets())) {
    item <- lme4_datasets()[[nm]]
    source <- if (length(item) >= 3) item[[3]] else "lme4"
    new[[nm]] <- write_dataset(nm, item[[1]], out_dir, item[[2]], source)
    cat(sprintf("wrote %s (%d rows)\n", file.path(out_dir, new[[nm]]$file), nrow(item[[1]])))
  }
  for (nm in names(old)) {
    if (!isTRUE(old[[nm]]$source %in% OWN_SOURCES)) new[[nm]] <- old[[nm]]
  }
  header <- paste0(
    "# Dataset metadata for this folder (read by harness/core/datasets.py, r_scripts/catalog.R).\n",
    "# Entries with source lme4, mlmRev or lme4-derived are written by\n",
    "# r_scripts/export_datasets.R, entries with source simulated by\n",
    "# `python -m harness.generate.simulate --write`; each writer keeps the other's entries.\n")
  # precision 15: as.yaml's default (7 digits) would round the simulated entries' truth
  writeLines(c(header, yaml::as.yaml(list(datasets = new), precision = 15)), meta_path, sep = "")
  cat(sprintf("wrote %s\n", meta_path))
}

main()
