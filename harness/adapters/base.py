"""What every implementation adapter provides: a name, whether it can run here, whether it can
express a case, and a fit that returns a FitRecord (or a mapping with some of its fields)."""

from __future__ import annotations

from typing import Any


class Adapter:
    """Base class of the adapters. ``interruptible`` says the fit is Python code that the
    runner may stop with SIGALRM at the case's timeout (R code is judged after it returns)."""

    name: str = "?"
    interruptible: bool = True

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
