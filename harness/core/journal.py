"""The report's journal: what survives an interrupted ``--report DIR`` run.

A run that writes a report into ``DIR`` keeps a staging area ``DIR.partial/`` beside it:

- ``records.jsonl``: one JSON line per finished item (its summary entry: node id, case, impl,
  outcome, verdict, headline and the comparison and records the report needs), appended, flushed
  and fsync'd as each item finishes, so an interrupted run keeps every finished item;
- ``state.json``: the planned item count, the start time, the command, and how the run ended
  (``running``, ``complete``, ``interrupted`` with the reason);
- ``lock``: pid, host, start time and command line of the run using the folder; a second run
  into the same folder is refused while the first is alive, a stale lock (dead pid) is taken over.

The report itself (report.json, report.md, index.html) is built into a temporary folder next to
DIR and moved into place whole (:func:`replace_dir`), so DIR holds one run's files or another's,
never a mix. After a complete report the staging area is removed; after an interrupted one it
stays, and ``python -m harness report --resume DIR`` continues from it.

Under pytest-xdist only the controller writes (it sees every item's report).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

RECORDS = "records.jsonl"
STATE = "state.json"
LOCK = "lock"

#: environment variable the resumed pytest run gets: append to the journal, do not restart it
RESUME_ENV = "HARNESS_REPORT_RESUME"


class JournalError(Exception):
    """The report folder cannot be used (not writable, a file, or in use by another run)."""


def staging(report_dir: str | Path) -> Path:
    """``DIR.partial``, the journal's folder beside the report folder."""
    p = Path(os.path.abspath(os.fspath(report_dir)))
    return p.with_name(p.name + ".partial")


def is_catalog_item(nodeid: str) -> bool:
    """True for the node id of a catalog item (``<catalog>.yaml::<case>[<impl>-vs-<ref>]``)."""
    path, sep, name = nodeid.partition("::")
    return bool(sep) and path.endswith((".yaml", ".yml")) and "[" in name


# ----------------------------------------------------------------------------- checks, lock


#: the files a report folder holds (it is replaced as a whole, so it may hold only these)
REPORT_FILES = ("report.json", "report.md", "index.html")


def not_replaceable(out: Path) -> str | None:
    """Why the existing folder ``out`` must not be replaced by a report (it holds a subfolder,
    or files but none of a report's), or None. Replacing removes everything in it."""
    if not out.is_dir():
        return None
    names = list(os.listdir(out))
    if any((out / n).is_dir() for n in names):
        return (f"{out} holds subfolders, so it is not a report folder (a report replaces "
                "its folder whole); give a new folder or a previous report's")
    if names and not set(names) & set(REPORT_FILES):
        return (f"{out} holds files that are not a report's ({', '.join(sorted(names)[:3])}"
                f"{', ...' if len(names) > 3 else ''}); give a new folder or a previous "
                "report's (a report replaces its folder whole)")
    return None


def check_writable(report_dir: str | Path, option: str = "--report") -> Path:
    """Create the staging area now (before any fit); a JournalError naming the folder when the
    report cannot be written there. Returns the staging folder."""
    out = Path(os.path.abspath(os.fspath(report_dir)))
    if out.exists() and not out.is_dir():
        raise JournalError(f"{option} {report_dir}: {out} exists and is not a folder")
    why = not_replaceable(out)
    if why:
        raise JournalError(f"{option} {report_dir}: {why}")
    stage = staging(out)
    try:
        stage.mkdir(parents=True, exist_ok=True)
        probe = stage / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise JournalError(f"{option} {report_dir}: the report folder cannot be written "
                           f"({exc.strerror or exc}: {exc.filename or stage})") from None
    return stage


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(report_dir: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((staging(report_dir) / LOCK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def acquire_lock(report_dir: str | Path, command: str, option: str = "--report") -> str | None:
    """Take ``DIR.partial/lock``; a JournalError when a live run holds it. Returns a note when
    a stale lock was taken over (else None)."""
    stage = staging(report_dir)
    path = stage / LOCK
    host = socket.gethostname()
    mine = {"pid": os.getpid(), "host": host, "started": time.time(),
            "started_text": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command}
    note = None
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            held = read_lock(report_dir)
            if held is None:  # being written this instant, or garbage: look again, then take
                time.sleep(0.1)
                held = read_lock(report_dir) or {}
            pid = int(held.get("pid") or 0)
            if pid == os.getpid():
                return None
            same_host = held.get("host") in (None, host)
            if pid and (not same_host or _alive(pid)):
                started = time.strftime("%H:%M", time.localtime(held.get("started") or 0))
                where = "" if same_host else f" on {held.get('host')}"
                raise JournalError(
                    f"{option} {report_dir}: report folder {report_dir} is in use by pid {pid}"
                    f"{where} ({held.get('command') or '?'} started {started}); wait for it or "
                    "choose another folder") from None
            note = (f"report folder {report_dir}: took over the stale lock of pid {pid or '?'} "
                    f"({held.get('command') or '?'}), which is no longer running")
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(mine, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return note
    raise JournalError(f"{option} {report_dir}: could not take the lock {path}")


def release_lock(report_dir: str | Path) -> None:
    """Remove the lock if this process holds it."""
    held = read_lock(report_dir)
    if held is not None and int(held.get("pid") or 0) == os.getpid():
        try:
            (staging(report_dir) / LOCK).unlink()
        except FileNotFoundError:
            pass


# ----------------------------------------------------------------------------- the journal


def _fsync_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_state(report_dir: str | Path) -> dict[str, Any]:
    try:
        return json.loads((staging(report_dir) / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_records(report_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The journal's entries by node id (a torn last line, from a kill mid-write, is ignored;
    a later line for the same item replaces an earlier one)."""
    out: dict[str, dict[str, Any]] = {}
    try:
        text = (staging(report_dir) / RECORDS).read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("nodeid"):
            out[entry["nodeid"]] = entry
    return out


class Journal:
    """The staging area of one run into ``report_dir``: appends records, keeps the state."""

    def __init__(self, report_dir: str | Path, *, command: str, argv: list[str] | None = None,
                 kind: str = "pytest", resume: bool = False, cwd: str | None = None) -> None:
        self.report_dir = Path(os.path.abspath(os.fspath(report_dir)))
        self.stage = staging(self.report_dir)
        self.stage.mkdir(parents=True, exist_ok=True)
        self.previous: dict[str, dict[str, Any]] = {}
        old = read_state(self.report_dir)
        if resume:
            self.previous = read_records(self.report_dir)
            self.state = old or {}
            self.state.setdefault("started", time.time())
            self.state["resumed"] = time.time()
        else:
            for name in (RECORDS, STATE):
                try:
                    (self.stage / name).unlink()
                except FileNotFoundError:
                    pass
            self.state = {"started": time.time(), "planned": None}
        self.state.update({"status": "running", "reason": None, "kind": kind,
                           "command": command, "pid": os.getpid()})
        if argv is not None and not resume:
            self.state["argv"] = list(argv)
            self.state["cwd"] = cwd or os.getcwd()
        records = self.stage / RECORDS
        torn = records.exists() and records.stat().st_size > 0 and \
            not records.read_bytes().endswith(b"\n")
        self._fh = open(records, "a", encoding="utf-8")  # noqa: SIM115
        if torn:  # a kill mid-write: the next record starts on a line of its own
            self._fh.write("\n")
        self.finished: set[str] = set(self.previous)
        self.write_state()

    def write_state(self) -> None:
        _fsync_write(self.stage / STATE, json.dumps(self.state, indent=1, default=str) + "\n")

    def set_planned(self, count: int) -> None:
        """The number of items this run (with the ones a resumed run already had) will run."""
        self.state["planned"] = int(count) + len(self.previous)
        self.write_state()

    def append(self, nodeid: str, entry: Mapping[str, Any]) -> None:
        """One finished item, on disk before this returns."""
        line = json.dumps({"nodeid": nodeid, **entry}, default=str)
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.finished.add(nodeid)

    def end(self, status: str, reason: str | None = None) -> None:
        self.state["status"] = status
        self.state["reason"] = reason
        self.state["ended"] = time.time()
        self.write_state()

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass

    def discard(self) -> None:
        """Remove the staging area (after a complete report)."""
        self.close()
        shutil.rmtree(self.stage, ignore_errors=True)


# ----------------------------------------------------------------------------- completeness


def completeness(entries: Mapping[str, Mapping[str, Any]], planned: int | None,
                 interrupted: bool, reason: str | None,
                 report_dir: str | Path | None = None) -> dict[str, Any]:
    """The report's completeness block: planned, finished, crashed, interrupted, reason, and
    ``complete`` (every planned item has a result, none crashed, not interrupted)."""
    done = [e for e in entries.values() if e.get("outcome")]
    crashed = [e for e in done if e.get("crashed")]
    finished = len(done)
    planned = finished if planned is None else max(int(planned), finished)
    missing = planned - finished
    complete = not interrupted and missing == 0 and not crashed
    if interrupted:
        text = f"interrupted after {finished} of {planned} items"
        if reason:
            text += f" ({reason})"
    elif missing:
        text = f"incomplete: {missing} of {planned} items have no result"
    elif crashed:
        text = f"incomplete: {finished} of {planned} items finished"
    else:
        text = f"complete: {finished} of {planned} items"
    if crashed:
        text += f"; {len(crashed)} item{'s' if len(crashed) != 1 else ''} crashed"
    return {"planned": planned, "finished": finished, "crashed": len(crashed),
            "missing": missing, "interrupted": bool(interrupted), "reason": reason,
            "complete": complete, "text": text,
            "resume": None if complete or report_dir is None
            else f"python -m harness report --resume {report_dir}"}


# ----------------------------------------------------------------------------- atomic folder


def replace_dir(report_dir: str | Path, write: Callable[[Path], Any]) -> Any:
    """Build the report into a temporary folder next to ``report_dir`` with ``write(tmp)``,
    then replace ``report_dir`` by it as a unit (old -> backup, new -> place, backup removed).
    Returns what ``write`` returned, its paths re-rooted from tmp to ``report_dir``."""
    out = Path(os.path.abspath(os.fspath(report_dir)))
    why = not_replaceable(out)
    if why:
        raise JournalError(why)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.new-{os.getpid()}")
    backup = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        result = write(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if out.exists():
            os.replace(out, backup)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup.exists() and not out.exists():
            os.replace(backup, out)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    if isinstance(result, dict):
        return {k: out / Path(v).name if isinstance(v, Path) else v for k, v in result.items()}
    return result


# ----------------------------------------------------------------------------- signals


def handle_sigterm() -> Callable[[], None]:
    """SIGTERM raises KeyboardInterrupt in the main thread (as SIGINT does), so an interrupted
    run writes its partial report; returns a function restoring the previous handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def _raise(signum: int, frame: Any) -> None:
        # a second signal while the partial report is written: let that finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, _raise)
    return lambda: signal.signal(signal.SIGTERM, previous)


def shield_signals() -> Callable[[], None]:
    """Ignore SIGINT and SIGTERM while the (partial) report is being written; returns the
    function restoring the handlers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in saved.items():
            signal.signal(s, h)
    return restore


# ----------------------------------------------------------------------------- pytest side


class PytestJournal:
    """Registered by the plugin on the controller when ``--report DIR`` is given: counts the
    planned catalog items after collection and releases the lock at the end."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.interrupt_reason: str | None = None
        self.restore_sigterm = handle_sigterm()

    def pytest_collection_finish(self, session: Any) -> None:
        if getattr(session.config, "workerinput", None) is None and not _xdist(session.config):
            self.journal.set_planned(sum(is_catalog_item(i.nodeid) for i in session.items))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Iterable[str]) -> None:
        self.journal.set_planned(sum(is_catalog_item(i) for i in ids))

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        msg = str(excinfo.value) if excinfo is not None else ""
        self.interrupt_reason = msg if msg.startswith("signal ") else "signal SIGINT"

    def pytest_unconfigure(self, config: Any) -> None:
        self.restore_sigterm()  # an in-process (pytester) run leaves its caller's handler
        self.journal.close()
        release_lock(self.journal.report_dir)


def _xdist(config: Any) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and \
        getattr(config.option, "dist", "no") != "no"


def command_line(argv: list[str] | None = None) -> str:
    args = sys.argv if argv is None else argv
    text = " ".join(args)
    return text if len(text) < 300 else text[:297] + "..."
