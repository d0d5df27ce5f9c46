# Reference fits for mixedref's sparse engine (tests/test_sparse.py), from lme4.
#
# A crossed design with 9,000 x 8,500 levels, past the blocked dense engine's limit (8,000
# effects in the terms after the first), built from a closed formula (no random numbers), so
# Python rebuilds exactly the same data: row i = 0, ..., n - 1 has a = i mod 9000,
# b = 7919 i mod 8500, x = sin(0.37 i + 1), y = 1 + 0.5 x + 0.8 sin(1.7 a + 0.3)
# + 0.6 cos(2.9 b + 0.1) + sin(12.9898 i + 78.233). For REML and ML this writes lme4's
# optimum (objective, theta, fixef, se, sigma), its devfun at a fixed theta, and the
# conditional modes and SDs of the first levels (labels as R orders them, LC_COLLATE=C).
#
# Run from the repository root:  Rscript r_scripts/sparse_references.R

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
Sys.setlocale("LC_COLLATE", "C")

n <- 27000
i <- 0:(n - 1)
a <- i %% 9000
b <- (7919 * i) %% 8500
x <- sin(0.37 * i + 1)
y <- 1 + 0.5 * x + 0.8 * sin(1.7 * a + 0.3) + 0.6 * cos(2.9 * b + 0.1) +
  sin(12.9898 * i + 78.233)
d <- data.frame(y = y, x = x, a = factor(a), b = factor(b))
form <- y ~ x + (1 | a) + (1 | b)
theta_fixed <- c(0.7, 0.4)

out <- list(n = n, formula = "y ~ x + (1 | a) + (1 | b)", theta_fixed = theta_fixed,
            lme4 = as.character(packageVersion("lme4")), fits = list())
for (reml in c(TRUE, FALSE)) {
  secs <- system.time(m <- lmer(form, d, REML = reml))[["elapsed"]]
  dev <- as.function(lmer(form, d, REML = reml, devFunOnly = TRUE))
  re <- ranef(m, condVar = TRUE)
  modes <- lapply(c("a", "b"), function(g) {
    r <- re[[g]]
    k <- 1:5
    list(levels = rownames(r)[k], mode = r[k, 1],
         condsd = sqrt(attr(r, "postVar")[1, 1, k]))
  })
  names(modes) <- c("a", "b")
  out$fits[[if (reml) "REML" else "ML"]] <- list(
    objective = unname(m@devcomp$cmp[[if (reml) "REML" else "dev"]]),
    theta = unname(getME(m, "theta")), fixef = unname(fixef(m)),
    se = unname(sqrt(diag(as.matrix(vcov(m))))), sigma = sigma(m),
    devfun_at_fixed = dev(theta_fixed), seconds = secs, ranef = modes)
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path("tests", "references", "sparse_crossed.json"))
