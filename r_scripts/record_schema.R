# The FitRecord's JSON Schema (harness/core/record.schema.json, written from harness/core/record.py's
# dataclass) read here, and validate_record(): the R side checks every record it writes
# against the same file the Python side checks, with the same rules (type, properties,
# required, additionalProperties, items, anyOf).
# Sourced by harness/core/rbridge.py (functions only; nothing runs on sourcing). Needs jsonlite.

# The schema: $MIXEDREF_RECORD_SCHEMA (the bridge sets it), else harness/core/record.schema.json
# under the working directory (the recording scripts run from the repository's root).
record_schema <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      paths <- c(Sys.getenv("MIXEDREF_RECORD_SCHEMA"), "harness/core/record.schema.json")
      path <- paths[nzchar(paths) & file.exists(paths)][1]
      if (is.na(path)) stop("harness/core/record.schema.json not found")
      cache <<- jsonlite::fromJSON(path, simplifyVector = FALSE)
    }
    cache
  }
})

# The record's field names, in the schema's order.
record_fields <- function() unlist(record_schema()$required)

.json_is <- function(x, kind) {
  switch(kind,
         null = is.null(x),
         boolean = is.logical(x) && length(x) == 1 && !is.na(x),
         integer = is.numeric(x) && length(x) == 1 && !is.na(x) && x == round(x),
         number = is.numeric(x) && length(x) == 1 && !is.na(x),
         string = is.character(x) && length(x) == 1,
         object = is.list(x) && (length(x) == 0 || !is.null(names(x))),
         array = is.list(x) && (length(x) == 0 || is.null(names(x))) || is.atomic(x) &&
           length(x) != 1 && !is.null(x),
         FALSE)
}

# Problems of `value` under `schema`, one string each (character(0) when it conforms).
validate_record <- function(value, schema = record_schema(), where = "record") {
  if (!is.null(schema$anyOf)) {
    ok <- vapply(schema$anyOf, function(s) length(validate_record(value, s, where)) == 0, TRUE)
    return(if (any(ok)) character(0) else paste0(where, ": matches none of its allowed shapes"))
  }
  kinds <- unlist(schema$type)
  if (length(kinds) && !any(vapply(kinds, function(k) .json_is(value, k), TRUE)))
    return(sprintf("%s: expected %s, got %s", where, paste(kinds, collapse = " or "),
                   class(value)[1]))
  out <- character(0)
  if (is.list(value) && !is.null(names(value))) {
    props <- schema$properties
    missing <- setdiff(unlist(schema$required), names(value))
    out <- c(out, sprintf("%s: missing field '%s'", where, missing))
    extra <- schema$additionalProperties
    for (k in names(value)) {
      if (!is.null(props[[k]])) out <- c(out, validate_record(value[[k]], props[[k]],
                                                              paste0(where, ".", k)))
      else if (isFALSE(extra)) out <- c(out, sprintf("%s: unknown field '%s'", where, k))
      else if (is.list(extra)) out <- c(out, validate_record(value[[k]], extra,
                                                             sprintf("%s['%s']", where, k)))
    }
  } else if (!is.null(schema$items) && length(value)) {
    items <- if (is.list(value)) value else as.list(value)
    for (i in seq_along(items))
      out <- c(out, validate_record(items[[i]], schema$items, sprintf("%s[%d]", where, i - 1)))
  }
  out
}
