"""Adapters for the Python mixed-model ecosystem on PyPI (``pip install mixedref[peers]``):
one module per package, the formula translation shared in :mod:`._formula`.

Each adapter translates lme4's formula into the package's own interface or declines with
``NotImplementedError("<package> cannot express ...: why")``; it never fits a different model.
The packages are imported only inside ``fit`` (in the harness's worker process).

:data:`REQUIREMENTS` is the one list of what each peer's release is: ``python -m harness
ecosystem`` installs each peer alone into a virtual environment of its own from it (plus
:data:`HARNESS_REQUIREMENTS`, what the harness's worker needs there), and pyproject.toml's
``peers`` extra repeats it for ``pip install mixedref[peers]`` (tests/test_peers.py checks that
they agree)."""

from harness.adapters.peers.edi_kernels_impl import EdiKernelsPeer
from harness.adapters.peers.glmm_impl import GlmmPeer
from harness.adapters.peers.gpboost_impl import GpboostPeer
from harness.adapters.peers.interlace_impl import InterlacePeer
from harness.adapters.peers.kamino_impl import KaminoPeer
from harness.adapters.peers.lme_python_impl import LmePythonPeer
from harness.adapters.peers.mixedlm_impl import MixedlmPeer
from harness.adapters.peers.mixedlm_rs_impl import MixedlmRsPeer
from harness.adapters.peers.pymixef_impl import PymixefPeer
from harness.adapters.peers.pyreml_impl import PyremlPeer

#: registry name -> adapter class, in the order the league table lists them
PEERS = {
    "mixedlm": MixedlmPeer,
    "mixedlm-rs": MixedlmRsPeer,
    "lme-python": LmePythonPeer,
    "interlace-lme": InterlacePeer,
    "glmm": GlmmPeer,
    "pyreml": PyremlPeer,
    "kamino-lme": KaminoPeer,
    "gpboost": GpboostPeer,
    "edi-kernels": EdiKernelsPeer,
    "pymixef": PymixefPeer,
}

#: registry name -> what its users install: its pinned release (pyreml: and torch, pinned to the
#: CPU build; an unpinned torch pulls a CUDA build)
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "mixedlm": ("mixedlm==1.3.0",),
    "mixedlm-rs": ("mixedlm-rs==0.2.0",),
    "lme-python": ("lme-python==0.2.7",),
    "interlace-lme": ("interlace-lme==0.3.2",),
    "glmm": ("glmm==0.6.2",),
    "pyreml": ("pyreml==0.5.4", "torch==2.13.0"),
    "kamino-lme": ("kamino-lme==0.0.1",),
    "gpboost": ("gpboost==1.8.0",),
    "edi-kernels": ("edi-kernels==1.0.2",),
    "pymixef": ("pymixef==0.1.1",),
}

#: what the harness's worker needs in a peer's environment besides the peer, installed after it
#: (what the peer pulled in is kept): harness.core.isolation.WORKER_REQUIREMENTS (numpy, pandas,
#: pyyaml: the catalog and its data); mixedref's own dependencies, because a peer adapter's
#: module imports harness.adapters and mixedref (formula parsing, VarCorr rows, singularity);
#: and patsy, with which the adapters evaluate offsets and build statsmodels-style designs
#: (_formula.offset_vector, fixed_design). mixedref's part is pyproject.toml's [project]
#: dependencies (tests/test_peers.py checks it).
HARNESS_REQUIREMENTS: tuple[str, ...] = ("numpy>=1.26", "scipy>=1.11", "pandas>=2.1",
                                         "nlopt>=2.7", "threadpoolctl>=3", "pyyaml>=6",
                                         "patsy>=0.5")

__all__ = ["HARNESS_REQUIREMENTS", "PEERS", "REQUIREMENTS", "GlmmPeer", "InterlacePeer",
           "LmePythonPeer", "MixedlmPeer", "MixedlmRsPeer", "PyremlPeer"]
