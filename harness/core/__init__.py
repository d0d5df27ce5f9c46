"""The one road from a case to an outcome: catalog, record, runner, judge, comparison, tolerance,
findings registry and baseline."""
