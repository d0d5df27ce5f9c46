"""The stress grid: generated cases design × size × signal-to-noise × distance from the boundary.

Each *cell* of the grid is one case of the harness (one dataset, one formula, one method), with
its own seed, derived from the cell's name, and its true parameters. The axes:

- ``design`` (the model): ``intercept`` ``y ~ x + (1 | g)``; ``slopes`` ``y ~ x + (x | g)``
  (correlated intercept and slope); ``uncorrelated`` ``y ~ x + (x || g)``; ``nested``
  ``y ~ x + (1 | a/b)``; ``crossed`` ``y ~ x + (1 | a) + (1 | b)``; ``glmm`` a binomial (logit)
  ``y ~ x + (1 | g)`` fitted by glmer;
- ``size``: S, M, L (about 40, 160 and 400 rows; :data:`SIZES` gives each design's layout);
- ``snr`` (signal-to-noise): the fixed slope of x in units of sigma, lo 0.1, mid 1, hi 10
  (the GLMM: 0.1, 0.5 and 2 on the logit scale);
- ``boundary`` (distance from the boundary of the parameter space) b0 to b4, a distance d of
  0, 1e-3, 1e-2, 1e-1, 1: the true variance ratio of the design's second (or only) variance
  component to sigma² (the GLMM: the variance of the logit-scale intercept), and for
  ``slopes`` one minus the absolute true correlation (|rho| = 1 - d: b0 is a correlation of ±1,
  the sign alternating with the replicate);
- the method (REML, ML; the GLMM ML only) and the replicate (1, 2; the GLMM 1 to 3).

That is 5 × 3 × 3 × 5 × 2 × 2 + 3 × 3 × 5 × 3 = 1035 cells. Every cell's data are generated
from its seed by elementwise arithmetic (as harness/generate/simulate.py's designs), so
regenerating a
cell gives the same bytes; the SHA-256 of its CSV text is written with it and recorded with
lme4's answers (harness/references/grid_lme4.json.gz, by r_scripts/record_grid.R), so a
recording made for other data is refused.

    python -m harness.commands.grid --write-data [DIR]   # catalog.yaml + data/ (default
    build/grid/)
    Rscript r_scripts/record_grid.R DIR OUT      # lme4's answers -> OUT (.json.gz)
    python -m harness.commands.grid run [pytest args]     # ./dev grid: the whole grid, -n 2,
    recorded

The generated files (build/grid/: catalog.yaml, data/ with datasets.yaml, cells.json with each
cell's axes and truth; about 5 MB) are not committed: they come back from the seeds in seconds.
They are not under harness/: the plugin does not collect a catalog given by a path inside the
harness package's folder (its collect-once guard sees that file twice).

The package's rooms: :mod:`harness.generate.grid_cells` generates (axes, cells, data, catalog),
:mod:`harness.commands.grid.runner` checks the recording and runs the grid,
:mod:`harness.pytest_plugin.grid_hook` is
the pytest hook drawing the status map, ``python -m harness.commands.grid`` (``__main__``) the
command.
The generator's and the runner's names are importable from here.
"""

from __future__ import annotations

from harness.commands.grid.runner import (
    DIVERGENCES,
    DURATIONS,
    RECORDING,
    TIGHT_RECORDING,
    read_recording,
    recording_problems,
    run,
)
from harness.generate.grid_cells import (
    BOUNDARY,
    DESIGNS,
    GLMM_SNR,
    GRID_DIR,
    SIGMA,
    SIZES,
    SNR,
    SPEC,
    Cell,
    GridDesign,
    catalog_entry,
    cell_of,
    cells,
    data_sha256,
    generate,
    write_grid,
)

__all__ = ["BOUNDARY", "DESIGNS", "DIVERGENCES", "DURATIONS", "GLMM_SNR", "GRID_DIR",
           "RECORDING", "SIGMA", "SIZES", "SNR", "SPEC", "TIGHT_RECORDING", "Cell", "GridDesign",
           "catalog_entry", "cell_of", "cells", "data_sha256", "generate", "read_recording",
           "recording_problems", "run", "write_grid"]
