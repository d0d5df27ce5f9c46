"""YAML read with libyaml's C parser when PyYAML has it: the registry and the catalog are read
by every pytest session and every xdist worker, and the pure-Python parser takes seconds on them."""

from __future__ import annotations

from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` (same types, same errors), through libyaml where it is installed."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python
