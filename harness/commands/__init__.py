"""The commands (report, ecosystem, grid, best-known, divergences --measure, repro): thin callers
of harness.core."""
