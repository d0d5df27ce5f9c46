"""Which releases of each PyPI peer can be installed here, and what installing one takes.

The league's version axis (harness/commands/release_league.py) runs each peer at its last few
releases;
this module finds them by asking pip itself (``pip index versions NAME``, which reads the
machine's configured indexes and find-links, as the environments are built from them) and
turns a release into the requirements of its environment: the peer's pinned requirement
(harness.adapters.peers.REQUIREMENTS) with the pin replaced, everything else kept (pyreml's
CPU torch).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence

#: how many releases per peer the version axis runs by default
DEFAULT_RELEASES = 3

_AVAILABLE = re.compile(r"^\s*Available versions:\s*(.*)$", re.MULTILINE)
_PIN = re.compile(r"^(\s*[A-Za-z0-9._-]+(?:\[[^\]]*\])?\s*==\s*)([^\s;,]+)(.*)$")


class ReleaseLookupError(RuntimeError):
    """pip could not list a peer's releases (the command and its output in the message)."""


def parse_index_versions(text: str) -> list[str]:
    """The versions in the output of ``pip index versions NAME``, in pip's order (newest
    first); an empty list when the output has no "Available versions:" line."""
    m = _AVAILABLE.search(text)
    if not m:
        return []
    return [v.strip() for v in m.group(1).split(",") if v.strip()]


def available_releases(name: str, python: str = sys.executable,
                       timeout: float = 180.0) -> list[str]:
    """The releases of ``name`` that pip can install here (stable releases, newest first)."""
    cmd = [python, "-m", "pip", "index", "versions", name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ReleaseLookupError(f"{' '.join(cmd)}: {exc}") from None
    found = parse_index_versions(proc.stdout)
    if not found:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ReleaseLookupError(f"{' '.join(cmd)} listed no versions (exit code "
                                 f"{proc.returncode}): {tail}")
    return found


def last_releases(versions: Sequence[str], n: int = DEFAULT_RELEASES) -> list[str]:
    """The newest ``n`` of ``versions`` (given newest first, as pip lists them), oldest
    first: the order in which consecutive releases are compared."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    return list(reversed(list(versions)[:n]))


def release_requirements(name: str, version: str,
                         requirements: Mapping[str, Sequence[str]] | None = None
                         ) -> tuple[str, ...]:
    """``name``'s requirements (default harness.adapters.peers.REQUIREMENTS) with its own pin
    (the first requirement) moved to ``version``."""
    if requirements is None:
        from harness.adapters.peers import REQUIREMENTS as requirements
    if name not in requirements:
        raise KeyError(f"no peer named {name!r}; the peers are {', '.join(requirements)}")
    first, *rest = requirements[name]
    m = _PIN.match(first)
    if not m:
        raise ValueError(f"{name}'s first requirement {first!r} pins no release (name==version)")
    if not re.fullmatch(r"[A-Za-z0-9.+!_-]+", version):
        raise ValueError(f"version {version!r} of {name} is not a release number")
    return (f"{m.group(1)}{version}{m.group(3)}", *rest)


def pinned_release(name: str,
                   requirements: Mapping[str, Sequence[str]] | None = None) -> str:
    """The release of ``name`` the league pins (its first requirement's version)."""
    if requirements is None:
        from harness.adapters.peers import REQUIREMENTS as requirements
    m = _PIN.match(requirements[name][0])
    if not m:
        raise ValueError(f"{name}'s first requirement pins no release")
    return m.group(2)
