"""Run code in killable worker processes ("lanes"), so a candidate cannot hurt the harness.

A lane is one persistent worker process, started on first use (``spawn``: a fresh interpreter
that inherits this process's environment and sys.path) and reused for later calls, so small
fits cost a pipe round trip, not an interpreter start. ``call(lane, "pkg.module:func", *args)``
runs the function there and returns an :class:`Outcome`; it never raises for what the target
does:

- an exception in the target (any BaseException) comes back as text, the worker lives on;
- ``timeout`` is hard: this process waits on the pipe and, when the limit passes, kills the
  worker's whole process group (SIGKILL), which stops it even inside one long C call;
- a worker that dies (segfault, abort, ``os._exit``) is reported with its signal or exit code;
- ``memory`` bounds the call twice: RLIMIT_AS in the worker (a big allocation fails at once
  with MemoryError) and a watchdog here that polls the worker's resident size and kills it;

and a killed or dead lane is started again on its next call. Each worker runs in its own
process group, so a terminal's Ctrl-C reaches only this process, which then kills the busy
worker and lets the KeyboardInterrupt go on.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

GiB = 2**30

#: Memory a call may use when the caller gives no limit. The machine this project runs on has
#: 24 GiB and runs 2 pytest-xdist workers, each with one busy lane at a time (idle lanes keep
#: their few hundred MB), so 2 x 6 GiB leaves room for the harness processes, the idle lanes
#: and the OS, while the largest catalog fits use far less (InstEval: lme4's R worker peaks at
#: 0.4 GiB resident, 0.8 GiB address space; mixedref's at 0.25 GiB).
#: RLIMIT_AS counts address space, which OpenBLAS, glibc's malloc arenas and R reserve without
#: using, so the worker's limit is this much on top of its address space at the call's start;
#: the resident-size watchdog bounds the memory actually used by the same number.
DEFAULT_MEMORY = 6 * GiB

POLL = 0.05  # seconds between checks of the worker's resident size while waiting
START_TIMEOUT = 120.0  # seconds a new worker may take to import and say it is ready


@dataclass
class Outcome:
    """What a call gave. ``kind`` is "ok", "exception", "not-supported" (NotImplementedError:
    ``error`` is its message alone), "timeout", "memory" or "crashed". ``seconds`` is measured
    here around the call (starting a new worker excluded), the honest time even when the
    worker was killed; ``worker_seconds`` inside the worker around the target alone."""

    value: Any = None
    error: str | None = None
    kind: str = "ok"
    seconds: float = 0.0
    worker_seconds: float | None = None


def call(lane: str, target: str, *args: Any, timeout: float | None = None,
         memory: int | None = None) -> Outcome:
    """Run ``target`` ("package.module:function") with ``args`` in ``lane``'s worker.

    ``timeout`` (seconds; None or <= 0: no limit) kills the worker when it passes. ``memory``
    (bytes; None: :data:`DEFAULT_MEMORY`, <= 0: no limit) bounds the memory of the call."""
    try:
        payload = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return Outcome(error=f"{describe(exc)} (the arguments cannot be sent to a worker)",
                       kind="exception")
    limit = DEFAULT_MEMORY if memory is None else (int(memory) if memory > 0 else None)
    wait_for = timeout if timeout is not None and timeout > 0 else None
    return _lane(lane).call(target, payload, wait_for, limit)


def shutdown() -> None:
    """Stop every lane's worker (idle ones exit, busy ones are killed). Runs at exit too."""
    with _registry_lock:
        lanes = list(_lanes.values()) if _owner == os.getpid() else []
        _lanes.clear()
    for lane in lanes:
        lane.stop()


def describe(exc: BaseException) -> str:
    """"TypeName: message (at file:line)", the line being where the exception was raised."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text + where


def memory_error(limit: int, detail: str) -> str:
    """The error text of a call stopped at its memory limit."""
    return (f"memory: the fit needed more than the {limit / GiB:.1f} GiB limit "
            f"(--case-memory) [{detail}]")


# ----------------------------------------------------------------------------- parent side

_registry_lock = threading.Lock()
_lanes: dict[str, _Lane] = {}
_owner = os.getpid()  # lanes belong to the process that started them (not a fork's child)


def _lane(name: str) -> _Lane:
    global _owner
    with _registry_lock:
        if _owner != os.getpid():  # forked: the workers are the parent's, never reuse them
            _lanes.clear()
            _owner = os.getpid()
        if name not in _lanes:
            _lanes[name] = _Lane(name)
        return _lanes[name]


# The worker is a fresh interpreter (spawned, never forked: this process may hold an embedded R
# and threads). Not multiprocessing's "spawn": that re-runs the caller's __main__ in every
# worker (an unguarded script would fail there, and pytest's __main__ costs start-up time).
_BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
         "from harness.isolation import _serve; _serve(int(sys.argv[2]), int(sys.argv[3]))")


class _Lane:
    """One worker process and the pipe (a socket pair) to it; one call at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: Any = None

    def _start(self) -> str | None:
        """Start the worker and wait for it to be ready; None, or why it could not start."""
        here, there = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, *_interpreter_flags(), "-c", _BOOT, json.dumps(sys.path),
                 str(there.fileno()), str(os.getpid())],
                pass_fds=[there.fileno()], stdin=subprocess.DEVNULL, process_group=0)
        except OSError as exc:
            here.close()
            return f"crashed: the worker process could not be started: {describe(exc)}"
        finally:
            there.close()
        self.conn = Connection(here.detach())
        if not self.conn.poll(START_TIMEOUT):
            self._kill()
            return f"crashed: the worker process did not start within {START_TIMEOUT:g} s"
        try:
            self.conn.recv()
        except (EOFError, OSError):
            return "crashed: the worker process could not start: it " + self._death()
        return None

    def call(self, target: str, payload: bytes, timeout: float | None,
             memory: int | None) -> Outcome:
        with self.lock:
            try:
                if self.proc is None or self.proc.poll() is not None:  # new, or died idle
                    self._reset()
                    problem = self._start()
                    if problem:
                        self._kill()
                        return Outcome(error=problem, kind="crashed")
                t0 = time.perf_counter()
                try:
                    self.conn.send((target, list(sys.path), _cwd(), memory, payload))
                    return self._wait(t0, timeout, memory)
                except (OSError, EOFError):  # the pipe broke: the worker died
                    return self._crashed(t0)
            except BaseException:  # Ctrl-C or the like here: the worker's state is unknown
                self._kill()
                raise

    def _wait(self, t0: float, timeout: float | None, memory: int | None) -> Outcome:
        assert self.proc is not None
        deadline = None if timeout is None else t0 + timeout
        while True:
            step = POLL if deadline is None else max(0.0, min(POLL, deadline - time.perf_counter()))
            if self.conn.poll(step):
                reply = self.conn.recv_bytes()  # EOFError: it died
                seconds = time.perf_counter() - t0
                try:
                    kind, value, error, worker_seconds = pickle.loads(reply)
                except Exception as exc:  # a value of a class this process cannot import
                    return Outcome(error=f"{describe(exc)} (the return value cannot be read "
                                   "back from the worker)", kind="exception", seconds=seconds)
                return Outcome(value, error, kind, seconds, worker_seconds)
            if self.proc.poll() is not None:
                return self._crashed(t0)
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                self._kill()
                return Outcome(error=f"timeout: killed after {now - t0:.1f} s (the case's "
                               f"limit is {timeout:g} s)", kind="timeout", seconds=now - t0)
            rss = _resident(self.proc.pid) if memory else None
            if memory and rss is not None and rss > memory:
                self._kill()
                return Outcome(error=memory_error(memory, f"killed at {rss / GiB:.2f} GiB "
                                                          "resident"),
                               kind="memory", seconds=time.perf_counter() - t0)

    def _crashed(self, t0: float) -> Outcome:
        seconds = time.perf_counter() - t0
        why = self._death()
        self._kill()
        return Outcome(error=f"crashed: the worker process {why}", kind="crashed",
                       seconds=seconds)

    def _death(self) -> str:
        """How the worker ended ("was killed by signal SIGSEGV (11)", "exited with code 3")."""
        assert self.proc is not None
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return "closed its pipe and did not exit (killed)"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "signal"
            return f"was killed by signal {name} ({-code})"
        return f"exited with code {code}"

    def _kill(self) -> None:
        """SIGKILL the worker's process group (its threads and children with it), reap it."""
        proc = self.proc
        if proc is not None:
            kills = [os.killpg] if proc.poll() is not None else [os.killpg, os.kill]
            for kill in kills:  # the group outlives a dead worker while its children live
                try:
                    kill(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): let it be
                pass
        self._reset()

    def _reset(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    def stop(self) -> None:
        """Let an idle worker exit (it reads end-of-file), kill it if it does not."""
        if not self.lock.acquire(timeout=0.1):
            self._kill()  # busy in another thread: nothing to wait for
            return
        try:
            if self.proc is not None:
                self.conn.close()
                self.conn = None
                try:
                    self.proc.wait(2)
                except subprocess.TimeoutExpired:
                    pass
                self._kill()
        finally:
            self.lock.release()


def _interpreter_flags() -> list[str]:
    """This interpreter's -X/-W/-O... options, for the worker (as multiprocessing does)."""
    try:
        return list(subprocess._args_from_interpreter_flags())  # type: ignore[attr-defined]
    except Exception:
        return []


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the folder was removed
        return None


def _resident(pid: int) -> int | None:
    """The process's resident set size in bytes (VmRSS), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


atexit.register(shutdown)


# ----------------------------------------------------------------------------- worker side


#: imported before the worker says it is ready (within START_TIMEOUT, not a call's limit): the
#: harness's own machinery, so a fit's time limit counts the fit, not numpy's and pandas' import
PRELOAD = ("numpy", "pandas", "harness.runner", "harness.catalog")


def _preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a call that needs it will say why
            pass


def _serve(fd: int, parent: int) -> None:
    """The worker's loop: read a call, run it, send back (kind, value, error, seconds).

    It runs in its own process group (killpg reaches its children, a terminal's Ctrl-C does
    not) and dies with the harness process (PR_SET_PDEATHSIG), even when stuck in C code."""
    _die_with_parent(parent)
    conn = Connection(fd)
    _preload()
    conn.send("ready")
    while True:
        try:
            target, path, cwd, memory, payload = conn.recv()
        except (EOFError, OSError):  # the harness closed the pipe or died: nothing left to do
            return
        if path != sys.path:  # run where and as the caller would: its imports, its folder
            sys.path[:] = path
        if cwd and cwd != _cwd():
            try:
                os.chdir(cwd)
            except OSError:
                pass
        reply = _run(target, payload, memory)
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable return value
            conn.send(("exception", None, f"{describe(exc)} (the return value cannot be sent "
                                          "back from the worker)", reply[3]))


def _run(target: str, payload: bytes, memory: int | None) -> tuple[str, Any, str | None,
                                                                    float | None]:
    """Call the target under the memory limit; (kind, value, error, seconds of the target)."""
    t0 = time.perf_counter()
    restore = None
    try:
        restore = _limit_address_space(memory)
        func = _resolve(target)
        args = pickle.loads(payload)
        _limit_blas_threads()
        t0 = time.perf_counter()
        value = func(*args)
        return "ok", value, None, time.perf_counter() - t0
    except NotImplementedError as exc:
        return ("not-supported", None, " ".join(str(exc).split()) or "not implemented",
                time.perf_counter() - t0)
    except MemoryError as exc:  # numpy's _ArrayMemoryError named as what it is
        text = "MemoryError" + _error(exc)[len(type(exc).__name__):]
        if memory:
            return "memory", None, memory_error(memory, text), time.perf_counter() - t0
        return "exception", None, text, time.perf_counter() - t0
    except BaseException as exc:  # KeyboardInterrupt, SystemExit, ... are the target's too
        return "exception", None, _error(exc), time.perf_counter() - t0
    finally:
        if restore is not None:
            restore()


def _error(exc: BaseException) -> str:
    """describe(exc) without this module's frame (a C function raising has no line then)."""
    tb = exc.__traceback__
    return describe(exc.with_traceback(tb.tb_next if tb is not None else None))


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _limit_address_space(memory: int | None) -> Any:
    """Set RLIMIT_AS's soft limit to the address space in use plus ``memory``; returns the
    function that restores the previous limit."""
    import resource

    if not memory:
        return lambda: None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    new = _address_space() + memory
    if hard != resource.RLIM_INFINITY:
        new = min(new, hard)
    resource.setrlimit(resource.RLIMIT_AS, (new, hard))
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when the process that started it ends."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except Exception:  # not Linux: an idle worker still ends when its pipe closes
        return
    if os.getppid() != parent:  # the parent ended before prctl took effect
        os._exit(1)


_blas_modules = -1  # len(sys.modules) when the BLAS limit was last applied


def _limit_blas_threads() -> None:
    """Apply OPENBLAS_NUM_THREADS (the harness's choice, inherited) through threadpoolctl to
    the BLAS libraries loaded so far. Libraries loaded later read the variable themselves;
    this covers any that do not, whenever new modules were imported (a few ms each time)."""
    global _blas_modules
    n = os.environ.get("OPENBLAS_NUM_THREADS")
    if not n or len(sys.modules) == _blas_modules:
        return
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(n), "blas")
    except Exception:  # threadpoolctl missing or the value not a number: the variable stays
        pass
    _blas_modules = len(sys.modules)
