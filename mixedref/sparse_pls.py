"""The sparse PLS engine's public names; it lives in :mod:`mixedref.engines.sparse`.

Importing this module loads scikit-sparse's CHOLMOD where it is installed.
"""

from mixedref.engines.sparse import (
    INSTALL_HINT,
    SparsePattern,
    SparsePLSObjective,
    Symbolic,
    available,
    require,
    symbolic,
    ut_pattern,
)

__all__ = ["INSTALL_HINT", "SparsePLSObjective", "SparsePattern", "Symbolic", "available",
           "require", "symbolic", "ut_pattern"]
