# R side of the harness catalog: read harness/catalog.yaml and the datasets in harness/data/.
#
# Source it from another R script (e.g. r_scripts/record_references.R):
#     source("r_scripts/catalog.R")
#     cases <- read_catalog()                    # or read_catalog("path/to/my_catalog.yaml")
#     d <- read_dataset(cases[[1]]$dataset, cases[[1]]$data_dirs)
#
# read_catalog() expands every entry into one case per method with the same ids as Python's
# harness.core.catalog.load_catalog ("<dataset>-<spec>-<method>"); Python is the validator of the
# schema, this file only checks what it needs to expand. read_dataset() rebuilds R factors and
# ordered factors with the level order recorded in datasets.yaml, so the data R fits are exactly
# the data Python fits.

suppressPackageStartupMessages({
  library(yaml)
  library(jsonlite)
})

# Folder of this file, recorded when it is sourced (source() sets ofile); falls back to the
# working directory's r_scripts/ when sourced some other way.
.catalog_r_dir <- local({
  f <- tryCatch(sys.frame(1)$ofile, error = function(e) NULL)
  if (is.null(f)) file.path(getwd(), "r_scripts") else dirname(normalizePath(f))
})

# Read YAML as Python's PyYAML does: R's yaml package takes unquoted y/n/Y/N for booleans,
# PyYAML (and YAML 1.2) keeps them strings (a factor level "n", a column "y").
.yaml_handlers <- list(
  "bool#yes" = function(x) if (x %in% c("y", "Y")) x else TRUE,
  "bool#no" = function(x) if (x %in% c("n", "N")) x else FALSE)

read_yaml_as_python <- function(path) yaml::read_yaml(path, handlers = .yaml_handlers)

# The datasets that travel with the harness package.
harness_data_dir <- function() {
  env <- Sys.getenv("MIXEDREF_HARNESS_DATA", "")
  if (nzchar(env)) return(normalizePath(env))
  normalizePath(file.path(.catalog_r_dir, "..", "harness", "data"), mustWork = FALSE)
}

default_catalog_path <- function() {
  normalizePath(file.path(.catalog_r_dir, "..", "harness", "catalog.yaml"), mustWork = FALSE)
}

read_dataset_meta <- function(data_dir) {
  path <- file.path(data_dir, "datasets.yaml")
  if (!file.exists(path)) return(list())
  meta <- read_yaml_as_python(path)$datasets
  if (is.null(meta)) list() else meta
}

# Read dataset `name` from the first folder of `data_dir` (a vector of folders) that lists it.
read_dataset <- function(name, data_dir = harness_data_dir()) {
  for (dir in data_dir) {
    meta <- read_dataset_meta(dir)
    if (!is.null(meta[[name]])) return(.read_dataset_file(name, meta[[name]], dir))
  }
  known <- unique(unlist(lapply(data_dir, function(d) names(read_dataset_meta(d)))))
  stop(sprintf("unknown dataset '%s'; known datasets: %s", name, paste(known, collapse = ", ")))
}

.read_dataset_file <- function(name, entry, dir) {
  file <- if (is.null(entry$file)) paste0(name, ".csv.gz") else entry$file
  cols <- entry$columns
  col_names <- vapply(cols, function(c) c$name, "")
  raw <- utils::read.csv(file.path(dir, file), colClasses = "character", check.names = FALSE,
                         na.strings = character(0), stringsAsFactors = FALSE)
  if (!identical(names(raw), col_names))
    stop(sprintf("dataset '%s': file columns (%s) differ from metadata (%s)", name,
                 paste(names(raw), collapse = ", "), paste(col_names, collapse = ", ")))
  out <- lapply(cols, function(c) {
    x <- raw[[c$name]]
    switch(c$type,
      numeric = as.numeric(x),
      integer = as.integer(x),
      factor = , ordered = {
        lev <- as.character(unlist(c$levels))
        f <- factor(x, levels = lev, ordered = identical(c$type, "ordered"))
        if (anyNA(f)) stop(sprintf("dataset '%s', column %s: values not among its levels: %s",
                                   name, c$name, paste(head(unique(x[is.na(f)]), 5), collapse = ", ")))
        f
      },
      stop(sprintf("dataset '%s', column %s: unknown type '%s'", name, c$name, c$type)))
  })
  names(out) <- col_names
  as.data.frame(out, stringsAsFactors = FALSE, optional = TRUE)
}

# Expand the catalog into one case per method: list(id, dataset, spec, formula, REML, method,
# notes, expect, xfail, skip, tags, timeout, family, link, nAGQ, weights, anova, anova_formula,
# predict_grid, data_dirs); anova_formula is the partner model's formula (NULL without one); family is
# NULL for a linear mixed model (lmer), else the GLMM's family name (glmer).
read_catalog <- function(path = default_catalog_path()) {
  path <- normalizePath(path, mustWork = TRUE)
  doc <- read_yaml_as_python(path)
  data_dirs <- c(file.path(dirname(path), "data"), harness_data_dir(),
                 file.path(harness_data_dir(), "nist_anova"))  # the certified sets (NIST)
  data_dirs <- unique(data_dirs[dir.exists(data_dirs)])
  cases <- list()
  for (i in seq_along(doc$cases)) {
    e <- doc$cases[[i]]
    for (field in c("spec", "dataset", "formula", "methods"))
      if (is.null(e[[field]])) stop(sprintf("catalog entry %d: missing field '%s'", i - 1, field))
    for (m in unlist(e$methods)) {
      if (!m %in% c("REML", "ML")) stop(sprintf("catalog entry %d: bad method '%s'", i - 1, m))
      id <- paste(e$dataset, e$spec, m, sep = "-")
      if (!is.null(cases[[id]])) stop(sprintf("catalog entry %d: duplicate id '%s'", i - 1, id))
      cases[[id]] <- list(
        id = id, dataset = e$dataset, spec = e$spec, formula = e$formula,
        REML = identical(m, "REML"), method = m,
        notes = if (is.null(e$notes)) "" else e$notes,
        expect = if (is.null(e$expect)) list() else e$expect,
        xfail = if (is.null(e$xfail)) list() else e$xfail,
        skip = if (is.null(e$skip)) list() else e$skip,
        tags = as.character(unlist(e$tags)),
        timeout = if (is.null(e$timeout)) 60 else as.numeric(e$timeout),
        family = e$family, link = e$link,
        nAGQ = if (is.null(e$nAGQ)) 1L else as.integer(e$nAGQ),
        weights = e$weights,
        anova = e$anova,
        predict_grid = e$predict_grid,
        data_dirs = data_dirs)
    }
  }
  # the anova partner (another spec on the same dataset) resolved to its formula
  formulas <- list()
  for (case in cases) formulas[[paste(case$dataset, case$spec)]] <- case$formula
  for (id in names(cases)) {
    partner <- cases[[id]]$anova
    if (is.null(partner)) next
    f <- formulas[[paste(cases[[id]]$dataset, partner)]]
    if (is.null(f)) stop(sprintf("catalog case %s: anova partner spec '%s' not found", id, partner))
    cases[[id]]$anova_formula <- f
  }
  unname(cases)
}

# The cases a recording script fits: those whose id matches `pattern` (NULL: every case) and,
# when `out` already exists, its document and the ids of the other catalog cases it holds, which
# the script keeps as they are: list(cases, ids = the catalog's order, keep, old).
select_cases <- function(cases, pattern, out) {
  ids <- vapply(cases, function(x) x$id, "")
  if (is.null(pattern)) return(list(cases = cases, ids = ids, keep = character(0), old = NULL))
  chosen <- cases[grepl(pattern, ids)]
  if (!length(chosen)) stop(sprintf("no catalog case id matches '%s'", pattern))
  old <- if (file.exists(out)) jsonlite::fromJSON(out, simplifyVector = FALSE) else NULL
  keep <- if (is.null(old)) character(0) else
    setdiff(intersect(names(old$records), ids), vapply(chosen, function(x) x$id, ""))
  list(cases = chosen, ids = ids, keep = keep, old = old)
}

# ---- checks called by tests/test_catalog.py and tests/test_datasets.py (Rscript one-liners) ----

# Print the expanded ids of a catalog as a JSON array.
print_catalog_ids <- function(path = default_catalog_path()) {
  cat(jsonlite::toJSON(vapply(read_catalog(path), function(x) x$id, ""), auto_unbox = FALSE))
}

# Compare every lme4 dataset file with lme4's own copy: column names and classes, values,
# factor levels and ordered flags. sleepstudy's added fDays must equal factor(Days).
# Prints a JSON object {checked: [...], problems: [...]} (problems empty when all agree).
print_lme4_dataset_check <- function(data_dir = harness_data_dir()) {
  suppressPackageStartupMessages(library(lme4))
  meta <- read_dataset_meta(data_dir)
  names_lme4 <- names(meta)[vapply(meta, function(e) identical(e$source, "lme4"), TRUE)]
  problems <- character(0)
  for (nm in names_lme4) {
    mine <- read_dataset(nm, data_dir)
    ref <- get(nm, envir = asNamespace("lme4"))
    if (nm == "sleepstudy") {
      if (!identical(mine$fDays, factor(ref$Days, levels = sort(unique(ref$Days)))))
        problems <- c(problems, "sleepstudy: fDays differs from factor(Days)")
      mine$fDays <- NULL
    }
    if (!identical(names(mine), names(ref))) {
      problems <- c(problems, sprintf("%s: columns %s vs lme4 %s", nm,
                                      paste(names(mine), collapse = ","),
                                      paste(names(ref), collapse = ",")))
      next
    }
    for (col in names(ref)) {
      a <- mine[[col]]
      b <- ref[[col]]
      attributes(b) <- attributes(b)[intersect(names(attributes(b)), c("levels", "class"))]
      if (!identical(class(a), class(b)))
        problems <- c(problems, sprintf("%s$%s: class %s vs lme4 %s", nm, col,
                                        paste(class(a), collapse = "/"),
                                        paste(class(b), collapse = "/")))
      else if (!identical(levels(a), levels(b)))
        problems <- c(problems, sprintf("%s$%s: levels differ", nm, col))
      else if (!identical(a, b))
        problems <- c(problems, sprintf("%s$%s: values differ", nm, col))
    }
  }
  cat(jsonlite::toJSON(list(checked = names_lme4, problems = problems)))
}

# Print dataset `name` as JSON for an exact comparison with Python's copy: per column its R
# class, numbers as "%.17g" text (every double read back exactly), factors as levels + labels.
print_dataset_exact <- function(name, data_dir = harness_data_dir()) {
  d <- read_dataset(name, data_dir)
  cols <- lapply(d, function(x) {
    if (is.factor(x)) list(class = class(x), levels = levels(x), values = as.character(x))
    else list(class = class(x), values = sprintf(if (is.integer(x)) "%d" else "%.17g", x))
  })
  cat(jsonlite::toJSON(list(names = names(d), columns = unname(cols)), auto_unbox = FALSE))
}
