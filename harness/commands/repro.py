"""``python -m harness repro CASE IMPL --out DIR``: a standalone reproducer of one catalog case
fitted by one Python package, for the package's maintainers.

DIR gets ``data.csv`` (the frame the harness fits; factors written as their labels, their
levels and order stated in the script), ``repro.py`` (runs with only the package, numpy and
pandas installed: the package's own call as its adapter makes it, copied from
harness/adapters/peers/calls.py, then its estimates next to lme4's recorded answer, the best
known criterion, and the quantity that disagrees with its size, from the divergence registry's
rows for the pair or else from a fit and comparison made now) and ``README.md``.

``python -m harness repro --findings --out DIR`` writes one such folder per registered finding
about a Python package (``DIR/<finding id>/``, the finding's first row's case).

A case, implementation or combination that cannot be reproduced is refused (:class:`ReproError`,
exit code 2) before anything is written; the folder is written beside DIR and renamed into place,
so DIR never holds half a reproducer."""

from __future__ import annotations

import fnmatch
import inspect
import os
import pprint
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.commands import repro_runtime
from harness.commands.repro_recipes import RECIPES, SCRIPT_FILE, packages, uncovered

DATA_FILE = "data.csv"
README_FILE = "README.md"
RUNTIME = (repro_runtime.read_frame, repro_runtime.unpack_vech, repro_runtime.pick_block,
           repro_runtime.varcorr_rows, repro_runtime.quantities,
           repro_runtime.certified_differences, repro_runtime._matches, repro_runtime._truth,
           repro_runtime._num, repro_runtime.report, repro_runtime.main)


class ReproError(Exception):
    """A reproducer cannot be written: the message names the case, implementation or folder."""


@dataclass
class Reproducer:
    """The files of one reproducer (name -> text) and what it is about."""

    case: str
    impl: str
    files: dict[str, str]


def _case(case_id: str, catalog: str | None = None) -> Any:
    import difflib

    from harness.core.catalog import load_catalog

    cases = {c.id: c for c in load_catalog(catalog)}
    if case_id not in cases:
        near = difflib.get_close_matches(case_id, list(cases), n=3)
        raise ReproError(f"unknown case {case_id!r}" + (f" (did you mean {', '.join(near)}?)"
                                                        if near else "")
                         + "; the case ids are the catalog's, e.g. sleepstudy-slopes-REML")
    return cases[case_id]


def _check_impl(impl: str) -> None:
    known = packages()
    if impl not in known:
        raise ReproError(f"unknown implementation {impl!r} for a reproducer: use one of "
                         f"{', '.join(known)}")
    if impl not in RECIPES:
        raise ReproError(uncovered(impl, None))


def _refusal(case: Any, impl: str, data: Any) -> str | None:
    """Why ``impl`` cannot express ``case`` (its adapter says), or None."""
    from harness.adapters import get_adapter
    from harness.adapters.peers._base import Peer

    adapter = get_adapter(impl)
    why = (getattr(case, "skip", None) or {}).get(impl) or adapter.supports(case)
    if why is None and isinstance(adapter, Peer):
        try:
            adapter.prepare(case, data)  # the checks that need the data
        except NotImplementedError as exc:
            why = str(exc)
    return why


def _lme4(case: Any) -> dict[str, Any]:
    from harness.adapters.lme4 import Lme4Recorded

    ref = Lme4Recorded()
    why = ref.unavailable() or ref.supports(case)
    if why:
        raise ReproError(f"{case.id}: no recorded lme4 answer to compare with: {why}")
    rec = ref.fit(case, None)
    out = {k: rec.get(k) for k in ("fixef", "fixef_se", "sigma", "varcorr", "loglik",
                                   "objective")}
    if rec.get("fixef_se_rx"):  # a GLMM's RX-based SEs, which some packages give instead
        out["fixef_se_rx"] = rec["fixef_se_rx"]
    out["coef_tests"] = [{k: r.get(k) for k in ("ddf", "term", "se", "df")}
                         for r in rec.get("coef_tests") or []]
    return out


def _best_known(case: Any) -> dict[str, Any] | None:
    from harness.commands.best_known import best_known

    entry = best_known(case.id) or {}
    best = entry.get("best") or {}
    if best.get("objective") is None:
        return None
    return {"criterion": entry.get("criterion") or "criterion",
            "objective": float(best["objective"]), "source": best.get("source")}


def _certified(case: Any, data: Any) -> dict[str, Any] | None:
    """A certified case's exact truth (harness.adapters.certified: ``input``, the limit of the
    float64 data; ``nist``, NIST's values) by quantity, for the script's ``certified[q]`` and
    ``nist[q]`` rows; otherwise None."""
    from harness.adapters.certified import CertifiedTruth

    truth = CertifiedTruth()
    if truth.supports(case) is not None:
        return None
    found = (truth.fit(case, data).get("optinfo") or {}).get("certified") or {}
    return {k: dict(found[k]) for k in ("input", "nist") if k in found} or None


def _saturated(case: Any, data: Any) -> float | None:
    """Under nAGQ > 1: -2 x the saturated log-likelihood, the constant lme4's quadrature
    criterion leaves out (harness.core.judge), so the script can state a package's full
    criterion on lme4's scale; otherwise None."""
    if not getattr(case, "is_glmm", False):
        return None
    from harness.core.judge import _saturated_constant

    return _saturated_constant(case, data)


def registered(case: Any, impl: str, registry_path: str | Path | None = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The registry's rows for (case, impl) as the script lists them, and their findings'
    causes."""
    from harness.core import divergences

    path = Path(registry_path) if registry_path else divergences.default_registry_path()
    doc = divergences.read_document(path)
    rows, causes = [], []
    for f in doc.get("findings") or []:
        if f["impl"] != impl:
            continue
        mine = [r for r in f["rows"] if fnmatch.fnmatchcase(case.id, r["case"])]
        rows += [{"quantity": r["quantity"], "size": float(r["size"]),
                  "direction": r["direction"], "finding": f["id"]} for r in mine]
        if mine:
            causes.append({"finding": f["id"], "cause": " ".join(str(f["cause"]).split())})
    return rows, causes


def _peer_python(impl: str) -> str | None:
    """The interpreter of the peer's own environment when it is not installed here."""
    from harness.adapters import get_adapter
    from harness.adapters.peers import PEERS

    if impl not in PEERS or get_adapter(impl).unavailable() is None:
        return None
    from harness.commands.ecosystem import peer_environment

    return str(peer_environment(impl)["python"])


def measured(case: Any, impl: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fit the case with the harness's adapter (in its worker; a peer not installed here in its
    own environment) and compare with lme4's recorded answer: the rows outside tolerance as
    the script lists them, and the candidate's record."""
    from harness.adapters import get_adapter, set_interpreters
    from harness.adapters.lme4 import Lme4Recorded
    from harness.core.compare import compare_records
    from harness.core.runner import fit_case

    python = _peer_python(impl)
    if python:
        set_interpreters({impl: python})
    try:
        rec = fit_case(get_adapter(impl), case)
    finally:
        if python:
            set_interpreters({})
    if rec.get("error"):
        return [], rec
    comp = compare_records(fit_case(Lme4Recorded(), case), rec, case)
    rows = [{"quantity": r.name, "size": abs(r.difference),
             "direction": "higher" if r.difference > 0 else "lower", "finding": None}
            for r in comp.failures if r.difference is not None]
    return rows, rec


def _columns(data: Any) -> dict[str, Any]:
    """Each column's dtype as read_frame takes it; a factor's levels and order."""
    out: dict[str, Any] = {}
    for col in data.columns:
        dtype = data[col].dtype
        if str(dtype) == "category":
            levels = [x.item() if hasattr(x, "item") else x for x in dtype.categories]
            out[col] = {"levels": levels, "ordered": bool(dtype.ordered)}
        elif str(dtype) in ("object", "str", "string"):
            out[col] = "object"
        else:
            out[col] = str(dtype)
    return out


def _version(impl: str, record: dict[str, Any] | None, recipe: Any) -> str:
    versions = (record or {}).get("versions") or {}
    for key in (impl, impl.replace("-", "_")):
        if key in versions:
            return str(versions[key])
    req = recipe.requirements[0] if recipe.requirements else ""
    return req.split("==", 1)[1] if "==" in req else ""


def _literal(name: str, value: Any) -> str:
    text = pprint.pformat(value, width=96 - len(name) - 3, compact=True, sort_dicts=False)
    return f"{name} = " + text.replace("\n", "\n" + " " * (len(name) + 3)) + "\n"


def script_text(info: dict[str, Any], recipe: Any) -> str:
    """The reproducer: its literals, the runtime's and the package call's source, the recipe's
    ``estimates``."""
    head = (f'"""Reproducer: {info["impl"]} on the mixedref harness case {info["case"]}\n\n'
            f'{info["formula"]} ({"REML" if info["REML"] else "ML"}),\ndata in {DATA_FILE} '
            "beside this file.\nRun: python repro.py   (needs only: "
            f'{", ".join(info["requirements"])}, numpy, pandas)\n'
            "Generated by `python -m harness repro`; the package call below is the one\n"
            'the harness\'s adapter makes (harness/adapters/peers/calls.py)."""\n\n'
            "from __future__ import annotations\n\nimport json\nimport math\nimport os\n"
            "import re\n"
            "import sys\nfrom pathlib import Path\nfrom typing import Any\n\n"
            "import numpy as np\nimport pandas as pd\n\n"
            "nan, inf = float('nan'), float('inf')\n\n")
    parts = [head, "# What the harness knows: the case, lme4's recorded answer, what disagrees\n",
             _literal("INFO", info), "\n# The package call's inputs, as the adapter builds "
             "them\n"]
    parts += [_literal(k, v) for k, v in recipe.literals.items()]
    for fn in RUNTIME:
        parts.append("\n\n" + inspect.getsource(fn))
    for fn in recipe.calls:
        parts.append("\n\n" + inspect.getsource(fn))
    parts.append("\n" + recipe.body.strip("\n") + "\n")
    parts.append('\n\nif __name__ == "__main__":\n    sys.exit(main(sys.argv[1:], estimates, '
                 f'INFO, Path(__file__).with_name("{DATA_FILE}")))\n')
    return "".join(parts)


def readme_text(info: dict[str, Any]) -> str:
    """What to install, what to run, what to expect."""
    lines = [f"# {info['impl']} on {info['case']}", "",
             f"The model: `{info['formula']}` fitted by {'REML' if info['REML'] else 'ML'} "
             f"on `{DATA_FILE}` (the mixedref harness's case `{info['case']}`).", "",
             "Run it with only the package installed:", "", "```sh",
             f"python -m pip install {' '.join(info['requirements'])} numpy pandas",
             "python repro.py          # the comparison",
             "python repro.py --json   # the package's answer in lme4's quantities", "```", "",
             f"It makes {info['impl']}'s own call (the one the harness's adapter makes) and "
             "prints each estimate next to lme4's recorded answer "
             f"(lme4 {info.get('lme4_version') or '?'}) and the difference."]
    best = info.get("best_known")
    if best:
        lines += ["", f"The best known {best['criterion']} of this case (lme4's objective, the "
                  f"lowest over lme4, its allFit optimizers, glmmTMB and mixedref) is "
                  f"{best['objective']:.10g}."]
    lines += ["", "## Expected", ""]
    if info.get("error"):
        lines.append(f"The harness's fit failed: {info['error']}")
    for d in info.get("disagrees") or []:
        src = f"registered finding `{d['finding']}`" if d.get("finding") else "measured"
        lines.append(f"- `{d['quantity']}`: |{info['impl']} - lme4| = {d['size']:.4g} "
                     f"({d['direction']}; {src})")
    if not info.get("disagrees") and not info.get("error"):
        lines.append("Agreement with lme4 within the harness's tolerance (nothing disagreed "
                     "when this folder was generated).")
    for c in info.get("causes") or []:
        lines += ["", f"Finding `{c['finding']}`: {c['cause']}"]
    return "\n".join(lines) + "\n"


def build(case_id: str, impl: str, *, catalog: str | None = None,
          registry_path: str | Path | None = None, measure: bool = True) -> Reproducer:
    """The reproducer of ``case_id`` fitted by ``impl``; raises :class:`ReproError` with the
    reason when there is none. ``measure``: fit and compare now when the registry has no row
    for the pair."""
    from harness.core.runner import case_data

    case = _case(case_id, catalog)
    _check_impl(impl)
    data = case_data(case)
    why = _refusal(case, impl, data)
    if why:
        raise ReproError(f"{impl} cannot express {case.id}: {why}")
    try:
        recipe = RECIPES[impl](case, data)
    except NotImplementedError as exc:
        raise ReproError(f"{impl} on {case.id}: {exc}") from exc
    frame = data if recipe.frame is None else recipe.frame
    lme4 = _lme4(case)
    rows, causes = registered(case, impl, registry_path)
    record = None
    if not rows and measure:
        rows, record = measured(case, impl)
    from harness.adapters.lme4 import Lme4Recorded

    info = {"case": case.id, "impl": impl, "version": _version(impl, record, recipe),
            "formula": case.formula, "REML": bool(case.REML),
            "requirements": recipe.requirements,
            "lme4_version": ((Lme4Recorded()._load() or {}).get("versions") or {}).get("lme4"),
            "columns": _columns(frame), "lme4": lme4, "best_known": _best_known(case),
            "disagrees": rows, "causes": causes, "saturated": _saturated(case, data),
            "certified": _certified(case, data),
            "error": (record or {}).get("error")}
    files = {DATA_FILE: frame.to_csv(index=False), SCRIPT_FILE: script_text(info, recipe),
             README_FILE: readme_text(info)}
    return Reproducer(case.id, impl, files)


def write(rep: Reproducer, out: str | Path) -> Path:
    """Write the folder beside ``out`` and rename it into place (an existing ``out`` is
    replaced only when it is empty or an earlier reproducer)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / SCRIPT_FILE).is_file())):
        raise ReproError(f"--out {out}: exists and is not an earlier reproducer; choose an "
                         "empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for name, text in rep.files.items():
            (tmp / name).write_text(text)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def finding_cases(registry_path: str | Path | None = None, catalog: str | None = None
                  ) -> list[tuple[str, str, str | None]]:
    """(finding id, implementation, its first row's case) per finding about a Python package
    (None: the row's glob matches no case)."""
    from harness.core import divergences
    from harness.core.catalog import load_catalog

    path = Path(registry_path) if registry_path else divergences.default_registry_path()
    ids = [c.id for c in load_catalog(catalog)]
    out = []
    for f in divergences.read_document(path).get("findings") or []:
        if f["impl"] not in packages():
            continue
        glob = f["rows"][0]["case"]
        out.append((f["id"], f["impl"], next((i for i in ids if fnmatch.fnmatchcase(i, glob)),
                                             None)))
    return out


def write_findings(out: str | Path, registry_path: str | Path | None = None,
                   catalog: str | None = None) -> dict[str, str]:
    """One reproducer per finding about a Python package in ``out/<finding id>/``: {finding:
    its folder, or "no reproducer: why"}."""
    result = {}
    for fid, impl, case_id in finding_cases(registry_path, catalog):
        if case_id is None:
            result[fid] = "no reproducer: its first row's case matches no catalog case"
            continue
        try:
            rep = build(case_id, impl, catalog=catalog, registry_path=registry_path,
                        measure=False)
            result[fid] = str(write(rep, Path(out) / fid))
        except ReproError as exc:
            result[fid] = f"no reproducer: {exc}"
    return result


def main(case_id: str | None, impl: str | None, out: str | None, *, findings: bool = False,
         catalog: str | None = None) -> int:
    """The ``repro`` command."""
    if not out:
        print("harness repro: give --out DIR", file=sys.stderr)
        return 2
    if findings:
        if case_id or impl:
            print("harness repro: --findings takes no CASE or IMPL", file=sys.stderr)
            return 2
        for fid, where in write_findings(out, catalog=catalog).items():
            print(f"{fid}: {where}")
        return 0
    if not case_id or not impl:
        print("harness repro: give CASE and IMPL (or --findings)", file=sys.stderr)
        return 2
    try:
        path = write(build(case_id, impl, catalog=catalog), out)
    except ReproError as exc:
        print(f"harness repro: {exc}", file=sys.stderr)
        return 2
    print(f"harness repro: wrote {path}/{SCRIPT_FILE} (run: cd {path} && python {SCRIPT_FILE})")
    return 0

