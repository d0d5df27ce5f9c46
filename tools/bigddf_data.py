"""Write tests/references/bigddf_seeded.csv.gz: the seeded 20,000-row design on which
r_scripts/bigddf_references.R records lmerTest's and pbkrtest's df beyond the old size limits
(Satterthwaite on all rows, Kenward-Roger on the first 6,500).

    python tools/bigddf_data.py [OUT]

y = 10 + 0.3 x + trt effect + g intercept and slope on x (correlated) + h intercept + noise;
g has 400 levels, h 60 crossed with it, trt (A/B/C) is constant within h, so its tests have
few denominator df and the two methods have something to disagree about.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "tests" / "references" / "bigddf_seeded.csv.gz"


def seeded_design(n: int = 20_000, seed: int = 20261207) -> pd.DataFrame:
    """The design, deterministic in ``seed`` (numpy's PCG64)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 400, n)
    h = rng.integers(0, 60, n)
    trt_of_h = np.array(["A", "B", "C"])[rng.integers(0, 3, 60)]
    x = rng.normal(size=n).round(4)
    cov = np.array([[1.0, 0.3], [0.3, 0.25]])
    ug = rng.multivariate_normal([0.0, 0.0], cov, size=400)
    uh = rng.normal(scale=0.5, size=60)
    effect = {"A": 0.0, "B": 0.4, "C": -0.2}
    trt = trt_of_h[h]
    y = (10 + 0.3 * x + np.array([effect[t] for t in trt]) + ug[g, 0] + ug[g, 1] * x + uh[h]
         + rng.normal(scale=1.5, size=n))
    return pd.DataFrame({"y": y.round(6), "x": x, "trt": trt,
                         "g": [f"g{i:03d}" for i in g], "h": [f"h{i:02d}" for i in h]})


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    seeded_design().to_csv(out, index=False, compression={"method": "gzip", "mtime": 0})
    print(f"wrote {out}")
