"""No green without a gate: what a run must have done before its exit code can mean "agrees".

Two rules, both about the candidates a run names:

- before any fit, every requested implementation must load (module, attribute, a callable whose
  signature takes ``(formula, data, REML)``): otherwise a usage error naming it and the cause;
- after the run, every candidate named with --impl must have been compared with the reference
  on at least one case: a candidate that every case skipped ("not supported", no reference)
  gated nothing, and the run fails saying so, unless the user allows an empty gate.

The per-candidate count ("compared k of n") is printed in every run's summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from harness.core.outcome import OUTCOMES

#: the outcomes (harness.core.outcome.OUTCOMES) of an item whose candidate was not held against
#: the reference, and how the count names them; every other outcome is a comparison
_OTHER = {"skipped": "not supported", "no-verdict": "without a reference answer",
          "failed": "failed", "error": "errors"}
COMPARED = tuple(o for o in OUTCOMES if o not in _OTHER)


class GateError(Exception):
    """A requested implementation that cannot take part: the message is one line."""


def check_requested(names: Iterable[str]) -> None:
    """Raise GateError for the first requested implementation that cannot be loaded here (an
    unknown name, a module that does not import, a missing attribute, not a callable, a
    signature that cannot take ``(formula, data, REML)``); user callables are loaded in their
    own worker process."""
    from harness.adapters import get_adapter

    for name in names:
        try:
            adapter = get_adapter(name)
        except Exception as exc:  # noqa: BLE001 - an entry point that fails to load, too
            raise GateError(f"--impl {name}: {' '.join(str(exc).split())}") from None
        reason = adapter.unavailable()
        if reason:
            raise GateError(f"--impl {name}: {' '.join(str(reason).split())}")


def counts(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Counter[str]]:
    """Per candidate, its items' outcomes (the live-vs-recorded check of lme4 is not one)."""
    out: dict[str, Counter[str]] = {}
    for e in entries.values():
        if e.get("outcome") and e.get("impl") != "lme4":
            out.setdefault(str(e["impl"]), Counter())[str(e["outcome"])] += 1
    return out


def line(impl: str, outcomes: Counter[str]) -> str:
    """"mypkg:fit compared 3 of 94 (91 not supported)"."""
    n = sum(outcomes.values())
    k = sum(outcomes[o] for o in COMPARED)
    rest = [f"{c} {_OTHER.get(o, o)}" for o, c in outcomes.items() if o not in COMPARED and c]
    return f"{impl} compared {k} of {n}" + (f" ({', '.join(rest)})" if rest else "")


def empty(entries: Mapping[str, Mapping[str, Any]],
          requested: Iterable[str] = ()) -> list[str]:
    """The "nothing gated" messages: one per candidate named with --impl that was compared on
    no case (one with no item at all included). The default candidates are not gates: a -k
    selection that leaves one of them nothing it can express is no failure."""
    per = counts(entries)
    return [f"nothing gated: {line(name, per.get(name, Counter()))}"
            for name in dict.fromkeys(requested)
            if not any(per.get(name, Counter())[o] for o in COMPARED)]
