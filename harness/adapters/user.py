"""Users' implementations: ``--impl mypkg.module:fit`` names a callable of the implementation
protocol (harness.core.protocol, docs/protocol.md), ``fit(formula, data, REML, **model)``
returning
a FitRecord or a mapping with some of its fields; packages can also register one under the
entry-point group ``mixedref_harness.impls`` (the object is such a callable, or an Adapter)."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from harness.adapters.base import Adapter
from harness.core import protocol
from harness.core.record import normalize_record
from harness.core.runner import NOT_SUPPORTED

ENTRY_POINT_GROUP = "mixedref_harness.impls"


class CallableAdapter(Adapter):
    """Wraps a callable of the implementation protocol (harness.core.protocol): ``func(formula,
    data, REML, **model)``. A ``module:attr`` is loaded in the candidate's own worker process,
    never in the harness's: there it is probed (loads? callable? its signature and declared
    capabilities) and there it fits."""

    def __init__(self, name: str, spec: str | None = None, func: Any = None) -> None:
        self.name = name
        self.spec = spec or name
        self._func = func
        self._reason: str | None = None
        self._probe: dict[str, Any] | None = None

    def _load(self) -> Any:
        """The callable, imported in this process (the worker's, when fitting)."""
        if self._func is None and self._reason is None:
            module, _, attr = self.spec.partition(":")
            try:
                obj: Any = importlib.import_module(module)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except Exception as exc:
                self._reason = f"cannot load {self.spec!r}: {type(exc).__name__}: {exc}"
                return None
            if not callable(obj):
                self._reason = f"{self.spec!r} is not callable"
                return None
            self._func = obj
        return self._func

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for the runner's worker process without the loaded callable when it can be
        loaded there by name (``module:attr``): a lambda, a partial or a decorated function
        need not be picklable."""
        state = dict(self.__dict__)
        if ":" in self.spec:
            state.update(_func=None, _reason=None)
        return state

    def probe(self) -> dict[str, Any]:
        """``{"error": None | why it cannot take part, "capabilities": {...}}``, found once:
        from the callable itself when one was given, else in the candidate's worker."""
        if self._probe is None:
            if self._func is not None:
                try:
                    caps = protocol.capabilities_of(self._func, self.spec)
                    self._probe = {"error": None, "capabilities": caps.to_dict()}
                except protocol.ProtocolError as exc:
                    self._probe = {"error": str(exc)}
            else:
                from harness.core import isolation

                out = isolation.call(self.lane, "harness.core.protocol:probe", self.spec,
                                     timeout=isolation.START_TIMEOUT, python=self.python)
                self._probe = out.value if out.kind == "ok" else {
                    "error": f"its worker could not load it: {out.error}"}
        return self._probe

    def capabilities(self) -> protocol.Capabilities:
        return protocol.Capabilities.from_dict(self.probe().get("capabilities") or {})

    def unavailable(self) -> str | None:
        return self.probe().get("error")

    def supports(self, case: Any) -> str | None:
        if self.unavailable():
            return self.unavailable()
        why = protocol.refusal(self.capabilities(), case)
        return None if why is None else NOT_SUPPORTED + why

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        func = self._load()
        if func is None:
            raise RuntimeError(self._reason)
        raw = protocol.call(func, case, data)
        if not hasattr(raw, "keys"):
            raise TypeError(f"{self.spec} returned {type(raw).__name__}, not a mapping/record")
        return normalize_record(dict(raw), self.name, case.id)


def entry_point_names() -> list[str]:
    """Names registered under the ``mixedref_harness.impls`` entry-point group."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def from_entry_point(name: str) -> Adapter | None:
    """The adapter registered under ``name`` in the entry-point group, or None."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name != name:
            continue
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, Adapter):
            obj = obj()
        if isinstance(obj, Adapter):
            obj.name = name
            return obj
        return CallableAdapter(name, ep.value, func=obj)
    return None
