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

**Another interpreter** (``call(..., python="/path/to/venv/bin/python")``: a candidate's own
environment, so that it is gated as its users install it). The lane's worker (one per (lane,
python)) runs that interpreter as given (a venv's ``bin/python`` is not resolved: the link is
what makes it the venv's). Its sys.path is that environment's own, behind one folder this
process makes (a temporary folder of links to this process's ``harness`` and ``mixedref``
packages, nothing else); neither this process's sys.path nor its PYTHONPATH, PYTHONHOME or
VIRTUAL_ENV reach it, nor the current folder (the worker still runs in it). What crosses the
pipe must load in both: arguments are pickled by reference to their classes (harness's own,
or the candidate's, importable there), and the worker sends back its value as plain Python
(numpy scalars and arrays become floats, ints and lists; numpy 2's pickles do not load under
numpy 1). The environment must hold, besides the candidate:

- Python >= 3.11 (the harness's own code runs there);
- :data:`WORKER_REQUIREMENTS`: numpy, pandas and pyyaml (harness.core.runner and
harness.core.catalog:
  the worker unpickles the catalog's Case and loads the case's data from the catalog's files);
- whatever the adapter's module imports: an adapter from ``harness.adapters`` (the PyPI peers',
  a user's ``module:callable``) imports that package, hence mixedref and its dependencies
  (scipy, nlopt, threadpoolctl; see harness.adapters.peers.HARNESS_REQUIREMENTS).

A worker whose interpreter lacks one of :data:`WORKER_REQUIREMENTS` is stopped at its start,
and every call answers an error naming what is missing, the interpreter and its environment;
a module missing later (in a call) is named the same way.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from harness import HOME

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

#: what a worker running another interpreter needs in that interpreter's environment, import
#: name -> distribution: harness.core.runner and harness.core.catalog (pandas, pyyaml) and numpy
WORKER_REQUIREMENTS = {"numpy": "numpy", "pandas": "pandas", "yaml": "pyyaml"}
#: distributions whose import name differs from theirs, for the advice in an error
_DISTRIBUTIONS = {**WORKER_REQUIREMENTS, "sksparse": "scikit-sparse", "sklearn": "scikit-learn",
                  "dateutil": "python-dateutil"}
#: the thread pools a candidate's fit may use (OpenBLAS: numpy's, scipy's, a peer's; OpenMP:
#: gpboost, edi-kernels; MKL; Rust's rayon: mixedlm-rs): each worker runs them on one thread
#: (CANDIDATE_THREADS), as lme4's references were recorded, whatever the machine's cores, so
#: that a verdict does not depend on where the gate runs. Some peers' answers depend on the
#: thread count, deterministically for each (docs/findings.md).
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "RAYON_NUM_THREADS")
CANDIDATE_THREADS = 1
#: the harness's environment, which a worker of another interpreter must not see
_FOREIGN_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONEXECUTABLE",
                     "__PYVENV_LAUNCHER__")


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
         memory: int | None = None, python: str | None = None) -> Outcome:
    """Run ``target`` ("package.module:function") with ``args`` in ``lane``'s worker.

    ``timeout`` (seconds; None or <= 0: no limit) kills the worker when it passes. ``memory``
    (bytes; None: :data:`DEFAULT_MEMORY`, <= 0: no limit) bounds the memory of the call.
    ``python``: run it with that interpreter, in its environment (see the module's text); the
    value comes back as plain Python then."""
    try:
        payload = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return Outcome(error=f"{describe(exc)} (the arguments cannot be sent to a worker)",
                       kind="exception")
    limit = DEFAULT_MEMORY if memory is None else (int(memory) if memory > 0 else None)
    wait_for = timeout if timeout is not None and timeout > 0 else None
    return _lane(lane, python or None).call(target, payload, wait_for, limit)


def lanes() -> frozenset[tuple[str, str | None]]:
    """The lanes this process has now, as (lane, python): what :func:`shutdown` can keep."""
    with _registry_lock:
        return frozenset(_lanes) if _owner == os.getpid() else frozenset()


def shutdown(keep: Collection[tuple[str, str | None]] = ()) -> None:
    """Stop every lane's worker (idle ones exit, busy ones are killed) but those of ``keep``
    (:func:`lanes` taken earlier: a pytest session run inside another, pytester's in-process
    runs, stops the lanes it started and leaves the outer session's running), and, when no lane
    is left, remove the folder of links other interpreters import the harness from. Runs at
    exit too (keeping none)."""
    global _path_dir
    folder = None
    with _registry_lock:
        mine = _owner == os.getpid()
        gone = [key for key in _lanes if not (mine and key in keep)]
        lanes = [_lanes.pop(key) for key in gone]
        if not mine:
            lanes = []
        if not _lanes:
            folder, _path_dir = _path_dir, None
    try:
        for lane in lanes:
            lane.stop()
    finally:
        if folder is not None and folder[1] == os.getpid():
            _remove_links(folder[0])


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
_lanes: dict[tuple[str, str | None], _Lane] = {}
_owner = os.getpid()  # lanes belong to the process that started them (not a fork's child)
_path_dir: tuple[str, int] | None = None  # (the folder of links, the process that made it)


def _lane(name: str, python: str | None = None) -> _Lane:
    global _owner
    with _registry_lock:
        if _owner != os.getpid():  # forked: the workers are the parent's, never reuse them
            _lanes.clear()
            _owner = os.getpid()
        if (name, python) not in _lanes:
            _lanes[name, python] = _Lane(name, python)
        return _lanes[name, python]


def harness_path() -> str:
    """A folder holding only links to this process's ``harness`` and ``mixedref`` packages
    (both pure Python): what a worker of another interpreter puts first on its sys.path, so it
    runs this harness without seeing anything else of this process's environment."""
    global _path_dir
    with _registry_lock:
        if _path_dir is not None and _path_dir[1] == os.getpid() and os.path.isdir(_path_dir[0]):
            return _path_dir[0]
        _remove_stale_links()
        folder = tempfile.mkdtemp(prefix=f"{_LINKS_PREFIX}{os.getpid()}-")
        packages = {"harness": str(HOME)}
        spec = importlib.util.find_spec("mixedref")
        if spec is not None and spec.submodule_search_locations:
            packages["mixedref"] = list(spec.submodule_search_locations)[0]
        for name, where in packages.items():
            os.symlink(where, os.path.join(folder, name), target_is_directory=True)
        _path_dir = (folder, os.getpid())
        return folder


_LINKS_PREFIX = "mixedref-harness-path-"  # + the pid of the process that made the folder


def _remove_stale_links() -> None:
    """Remove the folders of links left by processes that ended without their exit handlers
    (killed; pytest-xdist workers may end by os._exit)."""
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(_LINKS_PREFIX):].partition("-")[0]
        if not (entry.name.startswith(_LINKS_PREFIX) and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _remove_links(entry.path)
        except OSError:  # alive (another user's process): not ours to remove
            pass


def _remove_links(folder: str) -> None:
    """Remove the folder of links (the links, never what they point to)."""
    try:
        for entry in os.scandir(folder):
            os.unlink(entry.path)
        os.rmdir(folder)
    except OSError:
        pass


# The worker is a fresh interpreter (spawned, never forked: this process may hold an embedded R
# and threads). Not multiprocessing's "spawn": that re-runs the caller's __main__ in every
# worker (an unguarded script would fail there, and pytest's __main__ costs start-up time).
# This interpreter's worker takes this process's sys.path; another interpreter's keeps its own
# (without the current folder, "" under -c) behind the folder of links to the harness.
_BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
         "from harness.core.isolation import _serve; _serve(int(sys.argv[2]), int(sys.argv[3]))")
_BOOT_FOREIGN = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]) + [p for p in "
                 "sys.path if p]; from harness.core.isolation import _serve; "
                 "_serve(int(sys.argv[2]), int(sys.argv[3]), foreign=True)")


class _Lane:
    """One worker process and the pipe (a socket pair) to it; one call at a time. ``python``:
    the interpreter of the worker (None: this one)."""

    def __init__(self, name: str, python: str | None = None) -> None:
        self.name = name
        self.python = python
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: Any = None

    def _command(self, fd: int) -> tuple[list[str], dict[str, str] | None]:
        """The worker's command line and environment: this process's, with the thread pools
        pinned (THREAD_VARIABLES) and, for another interpreter, without the harness's paths."""
        pinned = {name: str(CANDIDATE_THREADS) for name in THREAD_VARIABLES}
        if self.python is None:
            return ([sys.executable, *_interpreter_flags(), "-c", _BOOT, json.dumps(sys.path),
                     str(fd), str(os.getpid())], {**os.environ, **pinned})
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV_DROP}
        return ([self.python, *_interpreter_flags(), "-c", _BOOT_FOREIGN,
                 json.dumps([harness_path()]), str(fd), str(os.getpid())], {**env, **pinned})

    def _where(self) -> str:
        """" (interpreter PATH)" for another interpreter's messages, else nothing."""
        return f" (interpreter {self.python})" if self.python else ""

    def _start(self) -> tuple[str, str] | None:
        """Start the worker and wait for it to be ready; None, or (kind, why it could not)."""
        here, there = socket.socketpair()
        try:
            cmd, env = self._command(there.fileno())
            self.proc = subprocess.Popen(cmd, pass_fds=[there.fileno()], env=env,
                                         stdin=subprocess.DEVNULL, process_group=0)
        except OSError as exc:
            here.close()
            return "crashed", (f"crashed: the worker process could not be started"
                               f"{self._where()}: {describe(exc)}")
        finally:
            there.close()
        self.conn = Connection(here.detach())
        if not self.conn.poll(START_TIMEOUT):
            self._kill()
            return "crashed", (f"crashed: the worker process did not start within "
                               f"{START_TIMEOUT:g} s{self._where()}")
        try:
            ready = self.conn.recv()
        except (EOFError, OSError):
            return "crashed", (f"crashed: the worker process could not start{self._where()}: "
                               "it " + self._death())
        missing = ready[1].get("missing") if isinstance(ready, tuple) else None
        if self.python is not None and missing:
            return "exception", lacks(self.python, ready[1].get("prefix"), missing)
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
                        return Outcome(error=problem[1], kind=problem[0])
                t0 = time.perf_counter()
                path = list(sys.path) if self.python is None else None  # another keeps its own
                try:
                    self.conn.send((target, path, _cwd(), memory, payload))
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
        return Outcome(error=f"crashed: the worker process{self._where()} {why}",
                       kind="crashed", seconds=seconds)

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


def lacks(python: str, prefix: str | None, missing: dict[str, str]) -> str:
    """The error of a worker whose interpreter lacks what it needs: ``missing`` maps each
    distribution to how its import failed."""
    names = ", ".join(missing)
    how = "; ".join(f"{dist}: {why}" for dist, why in missing.items())
    env = f" (environment {prefix})" if prefix else ""
    return (f"environment: the interpreter {python}{env} lacks {names}, which the harness's "
            f"worker needs there ({how}); install {'it' if len(missing) == 1 else 'them'} "
            f"into that environment, e.g. {python} -m pip install {' '.join(missing)}")


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
PRELOAD = ("numpy", "pandas", "harness.core.runner", "harness.core.catalog")


def _preload() -> dict[str, str]:
    """Import :data:`PRELOAD`; {distribution: why} for the :data:`WORKER_REQUIREMENTS` that do
    not import."""
    missing = {}
    for name in (*WORKER_REQUIREMENTS, *PRELOAD):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a call that needs it will say why
            if name in WORKER_REQUIREMENTS:
                missing[WORKER_REQUIREMENTS[name]] = f"import {name}: {_error_text(exc)}"
    return missing


def _serve(fd: int, parent: int, foreign: bool = False) -> None:
    """The worker's loop: read a call, run it, send back (kind, value, error, seconds).

    It runs in its own process group (killpg reaches its children, a terminal's Ctrl-C does
    not) and dies with the harness process (PR_SET_PDEATHSIG), even when stuck in C code.
    ``foreign``: another interpreter than the harness's (its sys.path is kept, values go back
    as plain Python, a missing module is named with the interpreter)."""
    _die_with_parent(parent)
    conn = Connection(fd)
    missing = _preload()
    conn.send(("ready", {"missing": missing, "prefix": sys.prefix,
                         "python": sys.executable, "version": sys.version.split()[0]}))
    while True:
        try:
            target, path, cwd, memory, payload = conn.recv()
        except (EOFError, OSError):  # the harness closed the pipe or died: nothing left to do
            return
        if path is not None and path != sys.path:  # as the caller would: its imports
            sys.path[:] = path
        if cwd and cwd != _cwd():
            try:
                os.chdir(cwd)
            except OSError:
                pass
        reply = _run(target, payload, memory, foreign)
        if foreign and reply[0] == "ok":
            try:
                reply = (reply[0], _plain(reply[1]), *reply[2:])
            except Exception:  # noqa: BLE001 - e.g. a cycle: sent as it is (the caller says)
                pass
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable return value
            conn.send(("exception", None, f"{describe(exc)} (the return value cannot be sent "
                                          "back from the worker)", reply[3]))


def _run(target: str, payload: bytes, memory: int | None,
         foreign: bool = False) -> tuple[str, Any, str | None, float | None]:
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
    except ModuleNotFoundError as exc:
        text = _error(exc)
        if foreign and exc.name:  # name the interpreter, whose environment lacks it
            top = exc.name.partition(".")[0]
            dist = _DISTRIBUTIONS.get(top, top)
            text = (f"{text}: the interpreter {sys.executable} (environment {sys.prefix}) has "
                    f"no {top!r}; install it into that environment if the harness's adapter or "
                    f"the candidate needs it, e.g. {sys.executable} -m pip install {dist}")
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


def _error_text(exc: BaseException) -> str:
    """"TypeName: message", without where (for a failed import at the worker's start)."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


_SCALARS = (bool, int, float, str, bytes, type(None))


def _plain(value: Any) -> Any:
    """``value`` as plain Python for another interpreter's reply: numpy scalars and arrays (and
    whatever has ``tolist``) become Python numbers and lists, inside dicts, lists and tuples;
    subclasses of bool, int, float and str (np.float64 is one) their base type, of dict, list
    and tuple (a namedtuple) theirs. Other objects are left as they are (the caller says so if
    it cannot read them back)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if callable(getattr(value, "tolist", None)):
        try:
            return _plain(value.tolist())
        except Exception:  # noqa: BLE001 - left as it is
            return value
    for base in (bool, int, float, str, bytes):
        if isinstance(value, base):
            return base(value)
    return value


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
    """Hold the BLAS and OpenMP libraries loaded so far to CANDIDATE_THREADS (threadpoolctl).
    Libraries loaded later read THREAD_VARIABLES themselves (the worker's environment); this
    covers any that do not, whenever new modules were imported (a few ms each time)."""
    global _blas_modules
    if len(sys.modules) == _blas_modules:
        return
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(CANDIDATE_THREADS)
    except Exception:  # threadpoolctl missing: the variables alone hold
        pass
    _blas_modules = len(sys.modules)
