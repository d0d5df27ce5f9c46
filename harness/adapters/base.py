"""What every implementation adapter provides: a name, whether it can run here, whether it can
express a case, and a fit that returns a FitRecord (or a mapping with some of its fields)."""

from __future__ import annotations

from typing import Any


class Adapter:
    """Base class of the adapters.

    The runner fits in a worker process (harness.core.isolation), the adapter's ``lane``: by
    default one per adapter name; adapters that need the same heavy state (the embedded R)
    name the same lane. The adapter instance is pickled to that worker for each fit, so it
    should hold settings, not caches it cannot rebuild. ``handles_timeout`` says ``fit``
    takes ``timeout=`` and stops itself (the worker is killed only if it does not).
    ``runs_code = False`` marks an adapter that runs no implementation at all (it reads
    recorded answers): the runner reads those in the harness process. ``python`` names another
    interpreter (a candidate's own environment) for its worker."""

    name: str = "?"
    handles_timeout: bool = False
    runs_code: bool = True
    #: the interpreter its worker runs (--impl-python); None: the harness's own
    python: str | None = None

    @property
    def lane(self) -> str:
        """The worker process the runner fits in: the adapter's name unless set."""
        return self.__dict__.get("_lane") or self.name

    @lane.setter
    def lane(self, value: str) -> None:
        self.__dict__["_lane"] = value

    def unavailable(self) -> str | None:
        """None when the implementation can be used in this process, else the reason."""
        return None

    def supports(self, case: Any) -> str | None:
        """None when the implementation can fit ``case``, else the reason it cannot."""
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        """Fit ``case`` to ``data`` and return its record (raise on failure)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
