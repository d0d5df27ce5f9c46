"""Adapters for the Python mixed-model ecosystem on PyPI (``pip install mixedref[peers]``):
one module per package, the formula translation shared in :mod:`._formula`.

Each adapter translates lme4's formula into the package's own interface or declines with
``NotImplementedError("<package> cannot express ...: why")``; it never fits a different model.
The packages are imported only inside ``fit`` (in the harness's worker process)."""

from harness.adapters.peers.glmm_impl import GlmmPeer
from harness.adapters.peers.interlace_impl import InterlacePeer
from harness.adapters.peers.lme_python_impl import LmePythonPeer
from harness.adapters.peers.mixedlm_impl import MixedlmPeer
from harness.adapters.peers.mixedlm_rs_impl import MixedlmRsPeer
from harness.adapters.peers.pyreml_impl import PyremlPeer

#: registry name -> adapter class, in the order the league table lists them
PEERS = {
    "mixedlm": MixedlmPeer,
    "mixedlm-rs": MixedlmRsPeer,
    "lme-python": LmePythonPeer,
    "interlace-lme": InterlacePeer,
    "glmm": GlmmPeer,
    "pyreml": PyremlPeer,
}

__all__ = ["PEERS", "GlmmPeer", "InterlacePeer", "LmePythonPeer", "MixedlmPeer",
           "MixedlmRsPeer", "PyremlPeer"]
