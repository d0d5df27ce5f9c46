"""Adapters: one per implementation, each giving FitRecords for catalog cases.

Built in: ``lme4`` (live, through R), ``lme4-recorded``, ``mixedref``, ``mixedref-literal``,
``statsmodels``. Others: a name registered in the ``mixedref_harness.impls`` entry-point
group, or ``module:callable`` (see :mod:`harness.adapters.user`).
"""

from __future__ import annotations

from collections.abc import Callable

from harness.adapters.base import Adapter
from harness.adapters.glmmtmb import GlmmTMBLive, GlmmTMBRecorded
from harness.adapters.lme4 import Lme4Live, Lme4Recorded
from harness.adapters.mixedref_impl import Mixedref, MixedrefLiteral
from harness.adapters.peers import PEERS
from harness.adapters.statsmodels_impl import Statsmodels
from harness.adapters.user import CallableAdapter, entry_point_names, from_entry_point

BUILTIN: dict[str, Callable[[], Adapter]] = {
    "lme4": Lme4Live,
    "lme4-recorded": Lme4Recorded,
    "mixedref": Mixedref,
    "mixedref-literal": MixedrefLiteral,
    "statsmodels": Statsmodels,
    "glmmTMB": GlmmTMBLive,
    "glmmTMB-recorded": GlmmTMBRecorded,
    **PEERS,  # mixedlm, mixedlm-rs, lme-python, interlace-lme, glmm, pyreml (mixedref[peers])
}

DEFAULT_IMPLS = ("mixedref", "statsmodels", "mixedref-literal")

#: the Python candidates compared with lme4 in the league and the benchmarks, in the order they
#: are listed: mixedref, statsmodels, then every registered peer (a new peer joins by PEERS alone)
PYTHON_CANDIDATES: tuple[str, ...] = ("mixedref", "statsmodels", *PEERS)

_instances: dict[str, Adapter] = {}
_interpreters: dict[str, str] = {}  # implementation -> the python its fits run with


def set_interpreters(mapping: dict[str, str]) -> None:
    """Fit the named implementations with these interpreters (--impl-python NAME=PYTHON):
    their worker processes start with that python and its environment, not the harness's."""
    _interpreters.clear()
    _interpreters.update(mapping)
    for name, adapter in _instances.items():
        adapter.python = _interpreters.get(name)


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name`` (one instance per process): built-in, entry point, or
    ``module:callable``. Raises ValueError naming the known implementations otherwise."""
    if name not in _instances:
        if name in BUILTIN:
            adapter: Adapter | None = BUILTIN[name]()
        else:
            adapter = from_entry_point(name)
            if adapter is None and ":" in name:
                adapter = CallableAdapter(name)
        if adapter is None:
            known = sorted(BUILTIN) + entry_point_names()
            raise ValueError(f"unknown implementation {name!r}: use one of {known}, "
                             "or module:callable")
        adapter.python = _interpreters.get(name)
        _instances[name] = adapter
    return _instances[name]


def clear_instances() -> None:
    """Forget the adapter instances (a new pytest session starts from scratch)."""
    _instances.clear()


__all__ = ["BUILTIN", "DEFAULT_IMPLS", "PYTHON_CANDIDATES", "Adapter", "CallableAdapter",
           "GlmmTMBLive", "GlmmTMBRecorded", "Lme4Live", "Lme4Recorded", "Mixedref",
           "MixedrefLiteral", "Statsmodels", "get_adapter"]
