"""What a reproducer's recipe is: one package's call for one case, as the script writes it.
Its own module so that the recipes (harness/commands/repro_recipes.py and
harness/commands/repro_peer_recipes.py) both make them without importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recipe:
    """One package's call for one case: ``literals`` (name -> value, written into the script),
    ``calls`` (functions of harness.adapters.peers.calls whose source the script carries),
    ``body`` (the source of ``def estimates(data)``), ``requirements`` (what to install) and
    the ``frame`` written beside it when it is not the case's data."""

    literals: dict[str, Any]
    calls: list[Callable[..., Any]]
    body: str
    requirements: list[str] = field(default_factory=list)
    #: the frame the script reads (None: the case's data), e.g. with glmer's response added
    frame: Any = None
