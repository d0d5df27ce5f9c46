"""The implementation protocol: how the harness calls a candidate and what the call carries.

A candidate is a callable ``fit(formula, data, REML, **model)``. ``model`` holds what the case
specifies beyond the formula, under lme4's argument names (:data:`KEYWORDS`); a linear mixed
model without prior weights gets none of them, so ``def fit(formula, data, REML)`` is a complete
LMM-only implementation. A case is handed only to a callable that can take every keyword it
needs: a parameter of that name or ``**kwargs``, narrowed by an optional declaration
``fit.harness_capabilities = {"families": {"binomial": ["logit"]}, ...}`` (see
:class:`Capabilities`). Otherwise the case is "not supported" with the reason, a skip, never a
comparison. The returned record must say what was fitted: a GLMM record names its family and
link (:func:`model_mismatch`). Raising ``NotImplementedError`` means "not supported", with its
message as the reason. The documentation page is docs/protocol.md.

This module is imported in candidates' worker processes too, so it needs only the standard
library at import.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Version 1 was the bare call ``fit(formula, data, REML)``; version 2 adds the model keywords,
#: the capability declaration and the family/link check of the record.
PROTOCOL_VERSION = 2

#: The keyword arguments a case may carry, lme4's names in Python form, and their meaning.
KEYWORDS: dict[str, str] = {
    "family": "the GLMM's family as R names it: binomial, poisson, Gamma, inverse.gaussian, "
              "negative.binomial (lme4's glmer.nb: θ estimated)",
    "link": "the link in use as R names it (the family's canonical link when the case names "
            "none): logit, probit, cloglog, log, identity, inverse, sqrt, 1/mu^2",
    "nAGQ": "glmer's nAGQ: 1 the Laplace approximation, > 1 adaptive Gauss-Hermite quadrature "
            "with that many points, 0 lme4's fast criterion (fixed effects inside PIRLS)",
    "weights": "the name of the data column of prior weights (binomial: the number of trials "
               "of a proportion response)",
    "offset": "the name of the data column of a known offset on the linear-predictor scale",
    "contrasts": "mapping of a factor column to its contrasts as R names them (contr.sum, ...)",
}

#: What a candidate's record must report, per model kind (the rest of the record's fields are
#: optional): without the first three the comparison is "incomplete"; a GLMM record without its
#: family and link "fitted a different model".
REPORTED = {"lmm": ("fixef", "sigma", "varcorr"),
            "glmm": ("fixef", "sigma", "varcorr", "family", "link"),
            # glmer.nb's model: the criterion depends on the dispersion θ the record reports
            "negative binomial": ("fixef", "sigma", "varcorr", "family", "link", "nb_theta")}

#: What a candidate may declare in ``harness_capabilities`` (a mapping on the callable).
CAPABILITY_KEYS = ("protocol", "families", "nAGQ", "keywords")


class ProtocolError(ValueError):
    """A callable that cannot take part: its signature, or a malformed capability declaration."""


def describe() -> dict[str, Any]:
    """The protocol as data, for the record's JSON Schema and the docs."""
    return {"version": PROTOCOL_VERSION, "call": "fit(formula, data, REML, **model)",
            "keywords": dict(KEYWORDS), "reported": {k: list(v) for k, v in REPORTED.items()},
            "capabilities": list(CAPABILITY_KEYS),
            "not_supported": "raise NotImplementedError(reason): the case is skipped with it"}


def model_arguments(case: Any) -> dict[str, Any]:
    """The keyword arguments that ``case`` passes beyond ``(formula, data, REML)``: those its
    model needs, with the values the catalog gives (the link resolved to the one in use)."""
    out: dict[str, Any] = {}
    family = getattr(case, "family", None)
    if family is not None:
        out["family"] = str(family)
        out["link"] = str(getattr(case, "link_name", None) or getattr(case, "link", None))
        out["nAGQ"] = int(getattr(case, "nAGQ", 1))
    for key in ("weights", "offset", "contrasts"):
        value = getattr(case, key, None)
        if value is not None:
            out[key] = value
    return out


@dataclass(frozen=True)
class Capabilities:
    """What a callable can be handed. ``keywords``: the keyword names it takes (None: any,
    ``**kwargs``). ``families``: family -> the links it fits (None: not declared, so any family
    it can take by keyword; an empty tuple of links: every link of that family). ``nAGQ``: the
    largest nAGQ it fits (None: any)."""

    keywords: frozenset[str] | None = frozenset()
    families: Mapping[str, tuple[str, ...]] | None = None
    nAGQ: int | None = None
    protocol: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"keywords": None if self.keywords is None else sorted(self.keywords),
                "families": None if self.families is None else
                {k: list(v) for k, v in self.families.items()},
                "nAGQ": self.nAGQ, "protocol": self.protocol}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Capabilities:
        kw, fam = d.get("keywords"), d.get("families")
        return cls(None if kw is None else frozenset(kw),
                   None if fam is None else {k: tuple(v) for k, v in fam.items()},
                   d.get("nAGQ"), int(d.get("protocol", PROTOCOL_VERSION)))

    def accepts(self, keyword: str) -> bool:
        return self.keywords is None or keyword in self.keywords


def capabilities_of(func: Any, name: str = "") -> Capabilities:
    """The capabilities of ``func`` from its signature and its ``harness_capabilities``
    declaration. Raises ProtocolError when it cannot be called as ``fit(formula, data, REML)``
    or its declaration is malformed."""
    label = name or getattr(func, "__qualname__", repr(func))
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin without a signature: take it as (f, d, R)
        sig = None
    keywords: frozenset[str] | None = frozenset()
    if sig is not None:
        try:
            sig.bind("y ~ x + (1 | g)", None, True)
        except TypeError as exc:
            raise ProtocolError(f"{label}{sig} cannot be called as fit(formula, data, REML): "
                                f"{exc}") from None
        params = sig.parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            keywords = None
        else:
            keywords = frozenset(p.name for p in params if p.name in KEYWORDS and p.kind in (
                inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    declared = getattr(func, "harness_capabilities", None)
    if declared is None:
        return Capabilities(keywords)
    return _declared(declared, keywords, label)


def _declared(declared: Any, keywords: frozenset[str] | None, label: str) -> Capabilities:
    if not isinstance(declared, Mapping):
        raise ProtocolError(f"{label}.harness_capabilities must be a mapping with keys "
                            f"{list(CAPABILITY_KEYS)}, not {type(declared).__name__}")
    unknown = sorted(set(declared) - set(CAPABILITY_KEYS))
    if unknown:
        raise ProtocolError(f"{label}.harness_capabilities: unknown keys {unknown}; known: "
                            f"{list(CAPABILITY_KEYS)}")
    version = declared.get("protocol", PROTOCOL_VERSION)
    if not isinstance(version, int) or version > PROTOCOL_VERSION:
        raise ProtocolError(f"{label} declares protocol {version!r}; this harness speaks "
                            f"protocol {PROTOCOL_VERSION} (upgrade mixedref[harness])")
    families = declared.get("families")
    if families is not None:
        if isinstance(families, str) or not isinstance(families, Mapping | list | tuple):
            raise ProtocolError(f"{label}.harness_capabilities['families'] must map a family "
                                "to its links (or list the families)")
        families = ({f: () for f in families} if not isinstance(families, Mapping) else
                    {str(f): tuple(links or ()) for f, links in families.items()})
    extra = declared.get("keywords")
    if extra is not None:
        bad = sorted(set(extra) - set(KEYWORDS))
        if bad:
            raise ProtocolError(f"{label}.harness_capabilities['keywords']: {bad} are not "
                                f"protocol keywords ({list(KEYWORDS)})")
        keywords = frozenset(extra) if keywords is None else keywords & frozenset(extra)
    nagq = declared.get("nAGQ")
    return Capabilities(keywords, families, None if nagq is None else int(nagq), version)


def refusal(caps: Capabilities, case: Any) -> str | None:
    """None when a callable with ``caps`` can be handed ``case``, else why not (naming the
    family, the keyword or the value)."""
    args = model_arguments(case)
    family = args.get("family")
    if family is not None:
        what = f"a {family} GLMM (link {args['link']}, nAGQ {args['nAGQ']})"
        if not caps.accepts("family"):
            return f"{what}: the callable takes no family argument (an LMM-only fit)"
        if caps.families is not None:
            if family not in caps.families:
                return f"{what}: its declared families are {sorted(caps.families) or 'none'}"
            links = caps.families[family]
            if links and args["link"] not in links:
                return f"{what}: its declared {family} links are {list(links)}"
        if caps.nAGQ is not None and args["nAGQ"] > caps.nAGQ:
            return f"{what}: it declares nAGQ up to {caps.nAGQ}"
    for key, value in args.items():
        if not caps.accepts(key):
            return f"the case needs {key}={value!r}, which the callable does not take"
    return None


def call(func: Any, case: Any, data: Any) -> Any:
    """The call itself: ``func(formula, data, REML, **model_arguments(case))``."""
    return func(case.formula, data, bool(case.REML), **model_arguments(case))


def model_mismatch(case: Any, record: Mapping[str, Any]) -> str | None:
    """None when ``record`` says it fitted the case's kind of model, else "fitted a different
    model: ..." naming both. A GLMM record must name the case's family and link; an LMM record
    must name no family other than gaussian."""
    family = getattr(case, "family", None)
    got_family, got_link = record.get("family"), record.get("link")
    if family is None:
        if got_family in (None, "gaussian"):
            return None
        return (f"fitted a different model: the case is a linear mixed model, the record says "
                f"family {got_family} (link {got_link})")
    link = str(getattr(case, "link_name", None) or getattr(case, "link", None))
    if got_family == family and got_link == link:
        return None
    said = ("names no family" if got_family is None else
            f"says {got_family} with link {got_link if got_link is not None else 'none'}")
    return (f"fitted a different model: the case is a {family} GLMM with link {link}; the "
            f"record {said}")


def probe(spec: str) -> dict[str, Any]:
    """Load ``module:attr`` and describe it as the protocol sees it: ``{"error": None,
    "capabilities": {...}}`` or ``{"error": "the cause"}``. Runs in the candidate's own worker
    process (its interpreter and environment), never in the harness's."""
    module, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except BaseException as exc:  # noqa: BLE001 - any failure of the import is the answer
        text = " ".join(str(exc).split())
        return {"error": f"cannot be loaded: {type(exc).__name__}: {text}"}
    if not attr:
        return {"error": f"{spec!r} names a module; give module:callable"}
    if not callable(obj):
        return {"error": f"{attr} is a {type(obj).__name__}, not callable"}
    try:
        return {"error": None, "capabilities": capabilities_of(obj, spec).to_dict()}
    except ProtocolError as exc:
        return {"error": str(exc)}
