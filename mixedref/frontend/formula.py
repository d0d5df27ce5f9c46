"""lme4's formula grammar: parse ``resp ~ fixed + (expr | g) + (expr || g)`` into a response, a
fixed part and the random-effects ("bar") terms, and expand R's term algebra.

R's own parser and ``terms()`` are reproduced for the subset used in mixed models: operators
``~ | || + - * / : ^ %in%``, parentheses, calls such as ``I(x^2)`` or ``log(x)``. The random
terms are expanded as lme4 1.1-31's ``findbars`` does (``||`` split per term label, ``g1/g2``
into ``g2:g1`` and ``g1``), and every expression can be printed back as R's ``deparse`` prints
it, because R's column and group names are deparsed expressions.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from mixedref.errors import FormulaError

__all__ = [
    "Bar",
    "BinOp",
    "Call",
    "Name",
    "Keyword",
    "Node",
    "Num",
    "Paren",
    "ParsedFormula",
    "Unary",
    "deparse",
    "expand_terms",
    "parse_expr",
    "parse_formula",
    "variables",
]


# ----------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Name:
    """A variable name (backquotes removed)."""

    id: str


@dataclass(frozen=True)
class Num:
    """A numeric literal."""

    value: float


@dataclass(frozen=True)
class Call:
    """A function call ``fn(args...)``."""

    fn: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class BinOp:
    """A binary operator application."""

    op: str
    lhs: Node
    rhs: Node


@dataclass(frozen=True)
class Unary:
    """A prefix operator: ``-``, ``+`` or ``!``."""

    op: str
    operand: Node


@dataclass(frozen=True)
class Paren:
    """Explicit parentheses, kept because R keeps them (they show in deparsed names)."""

    inner: Node


@dataclass(frozen=True)
class Keyword:
    """A named argument of a call, ``raw = TRUE`` in ``poly(x, 2, raw = TRUE)``."""

    name: str
    value: Node


Node = Name | Num | Call | BinOp | Unary | Paren | Keyword

# R's operator precedence (?Syntax), as Pratt binding powers; higher binds tighter.
_BINARY = {
    "~": 10, "|": 20, "||": 20, "&": 30, "&&": 30,
    "<": 50, ">": 50, "<=": 50, ">=": 50, "==": 50, "!=": 50,
    "+": 60, "-": 60, "*": 70, "/": 70, "%in%": 80, ":": 90, "^": 110,
}  # fmt: skip
_RIGHT_ASSOC = {"^"}
_PREFIX = {"-": 100, "+": 100, "!": 40, "~": 10}
_SPACED = {"~", "|", "||", "&", "&&", "<", ">", "<=", ">=", "==", "!=", "+", "-", "*", "%in%"}

# R's syntactic names: a letter (any Unicode letter, as R in a UTF-8 locale), or a dot not
# followed by a digit, then letters, digits, dots and underscores.
_NAME = r"(?:[^\W\d_]|\.(?![0-9]))[\w.]*"
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)"
    rf"|(?P<name>{_NAME}|\.)"
    r"|`(?P<bq>[^`]+)`"
    r"|(?P<op>\|\||&&|<=|>=|==|!=|\*\*|%in%|[~|&<>!+\-*/^:(),=]))"
)
_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "in"}
# (TRUE, FALSE, NULL, NA, Inf are read as names and deparse as constants: bare)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FormulaError(
                f"cannot read formula {text!r}: unexpected character {text[pos:].strip()[:1]!r} "
                f"at position {pos + len(text[pos:]) - len(text[pos:].lstrip())}"
            )
        pos = m.end()
        if m.group("num") is not None:
            tokens.append(("num", m.group("num").rstrip("L")))
        elif m.group("name") is not None:
            tokens.append(("name", m.group("name")))
        elif m.group("bq") is not None:
            tokens.append(("name", m.group("bq")))
        else:
            op = m.group("op")
            tokens.append(("op", "^" if op == "**" else op))
    return tokens


class _Parser:
    """Pratt parser over R's expression grammar (the part formulas use)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def _error(self, what: str) -> FormulaError:
        return FormulaError(f"cannot read formula {self.text!r}: {what}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self._error("it ends too early (an operator or parenthesis is missing a side)")
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        tok = self.peek()
        if tok != ("op", op):
            found = "the end" if tok is None else repr(tok[1])
            raise self._error(f"expected {op!r} but found {found} (unbalanced parentheses?)")
        self.i += 1

    def parse(self) -> Node:
        node = self.expr(0)
        if self.peek() is not None:
            tok = self.peek()
            assert tok is not None
            if tok == ("op", ")"):
                raise self._error("unbalanced parentheses (a ')' without its '(')")
            raise self._error(f"unexpected {tok[1]!r}")
        return node

    def expr(self, min_bp: int) -> Node:
        kind, val = self.take()
        if kind == "num":
            lhs: Node = Num(float(val))
        elif kind == "name":
            if self.peek() == ("op", "("):
                self.i += 1
                args: list[Node] = []
                if self.peek() != ("op", ")"):
                    while True:
                        tok = self.peek()
                        if (tok is not None and tok[0] == "name"
                                and self.i + 1 < len(self.tokens)
                                and self.tokens[self.i + 1] == ("op", "=")):
                            self.i += 2
                            if self.peek() in (None, ("op", ")"), ("op", ",")):
                                raise self._error(f"argument {tok[1]!r} = has no value")
                            args.append(Keyword(tok[1], self.expr(0)))
                        else:
                            args.append(self.expr(0))
                        if self.peek() == ("op", ","):
                            self.i += 1
                            continue
                        break
                self.expect(")")
                lhs = Call(val, tuple(args))
            else:
                lhs = Name(val)
        elif val == "(":
            if self.peek() == ("op", ")"):
                raise self._error("empty parentheses '()'")
            inner = self.expr(0)
            self.expect(")")
            lhs = Paren(inner)
        elif val in _PREFIX:
            lhs = Unary(val, self.expr(_PREFIX[val]))
        else:
            raise self._error(f"unexpected {val!r} (an operator is missing its left side)")
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op" or tok[1] not in _BINARY:
                if tok is not None and tok[0] != "op":
                    raise self._error(f"missing operator before {tok[1]!r}")
                return lhs
            op = tok[1]
            bp = _BINARY[op]
            if bp < min_bp or (bp == min_bp and op not in _RIGHT_ASSOC):
                return lhs
            self.i += 1
            if self.peek() is None or self.peek() in {("op", ")"), ("op", ",")}:
                raise self._error(f"operator {op!r} has nothing on its right side")
            rhs = self.expr(bp + (0 if op in _RIGHT_ASSOC else 1))
            lhs = BinOp(op, lhs, rhs)


def parse_expr(text: str) -> Node:
    """Parse one R expression (or a whole formula) into a syntax tree."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("formula must be a non-empty string such as 'y ~ x + (1 | g)'")
    return _Parser(text).parse()


# ----------------------------------------------------------------------------- deparse


def _num_text(v: float) -> str:
    return f"{v:.15g}"


@functools.lru_cache(maxsize=1024)
def is_syntactic(name: str) -> bool:
    """R's rule for a name that deparses without backquotes (cached: deparse asks a few dozen
    times per model for the same few names)."""
    return bool(re.fullmatch(_NAME, name)) and name not in _RESERVED


def deparse(node: Node) -> str:
    """Print an expression as R's ``deparse`` does (R's column and group names)."""
    if isinstance(node, Name):
        if is_syntactic(node.id):
            return node.id
        return f"`{node.id}`"
    if isinstance(node, Keyword):
        return f"{node.name} = {deparse(node.value)}"
    if isinstance(node, Num):
        return _num_text(node.value)
    if isinstance(node, Call):
        return f"{node.fn}({', '.join(deparse(a) for a in node.args)})"
    if isinstance(node, Paren):
        return f"({deparse(node.inner)})"
    if isinstance(node, Unary):
        return f"{node.op}{deparse(node.operand)}"
    bp = _BINARY[node.op]
    left, right = deparse(node.lhs), deparse(node.rhs)
    # R adds parentheses where the tree disagrees with precedence (e.g. c:(b:a)).
    if isinstance(node.lhs, BinOp) and (
        _BINARY[node.lhs.op] < bp or (_BINARY[node.lhs.op] == bp and node.op in _RIGHT_ASSOC)
    ):
        left = f"({left})"
    if isinstance(node.rhs, BinOp) and (
        _BINARY[node.rhs.op] < bp or (_BINARY[node.rhs.op] == bp and node.op not in _RIGHT_ASSOC)
    ):
        right = f"({right})"
    sep = f" {node.op} " if node.op in _SPACED else node.op
    return f"{left}{sep}{right}"


# ----------------------------------------------------------------------------- term algebra

Term = tuple[str, ...]  # variable labels (deparsed), in the formula's variable order


def variables(node: Node | None) -> dict[str, Node]:
    """The formula-level variables of a right-hand side (names and calls), keyed by their R
    label, in order of first appearance (R's order for the variables inside a term)."""
    out: dict[str, Node] = {}

    def walk(n: Node) -> None:
        if isinstance(n, Name | Call):
            out.setdefault(deparse(n), n)
        elif isinstance(n, Paren):
            walk(n.inner)
        elif isinstance(n, Unary):
            walk(n.operand)
        elif isinstance(n, BinOp):
            walk(n.lhs)
            walk(n.rhs)

    if node is not None:
        walk(node)
    return out


def expand_terms(node: Node | None) -> tuple[list[Term], bool]:
    """R's ``terms()``: the term labels of a right-hand side, each a tuple of variable labels,
    sorted by order (main effects, then two-way interactions, ...; stable otherwise), and
    whether the model has an intercept."""
    if node is None:
        return [], True
    order = {v: i for i, v in enumerate(variables(node))}
    state = {"intercept": True}

    def norm(t: set[str] | frozenset[str]) -> Term:
        return tuple(sorted(t, key=order.__getitem__))

    def dedup(ts: list[Term]) -> list[Term]:
        return list(dict.fromkeys(ts))

    def product(a: list[Term], b: list[Term]) -> list[Term]:
        return dedup([norm(set(x) | set(y)) for y in b for x in a])

    def ex(n: Node) -> list[Term]:
        if isinstance(n, Name | Call):
            return [(deparse(n),)]
        if isinstance(n, Num):
            if n.value == 0:
                state["intercept"] = False
                return []
            if n.value == 1:
                state["intercept"] = True
                return [()]
            raise FormulaError(f"invalid model term {deparse(n)!r}: only 0 and 1 may stand alone")
        if isinstance(n, Paren):
            return ex(n.inner)
        if isinstance(n, Unary):
            if n.op == "+":
                return ex(n.operand)
            if n.op == "-":
                removed = ex(n.operand)
                if () in removed or (isinstance(n.operand, Num) and n.operand.value in (0, 1)):
                    state["intercept"] = n.operand == Num(0.0)
                return []
            raise FormulaError(f"invalid model term {deparse(n)!r}")
        op = n.op
        if op == "+":
            return dedup(ex(n.lhs) + ex(n.rhs))
        if op == "-":
            left = ex(n.lhs)
            if isinstance(n.rhs, Num) and n.rhs.value in (0, 1):
                state["intercept"] = n.rhs.value == 0
                return left
            saved = state["intercept"]
            right = set(ex(n.rhs))
            state["intercept"] = saved and () not in right
            return [t for t in left if t not in right]
        if op == ":" or op == "%in%":
            return product(ex(n.lhs), ex(n.rhs))
        if op == "*":
            a, b = ex(n.lhs), ex(n.rhs)
            return dedup(a + b + product(a, b))
        if op == "/":
            a, b = ex(n.lhs), ex(n.rhs)
            allvars: Term = norm({v for t in a for v in t})
            return dedup(a + product([allvars], b))
        if op == "^":
            if not isinstance(n.rhs, Num) or n.rhs.value < 1 or n.rhs.value % 1:
                raise FormulaError(
                    f"invalid power in formula term {deparse(n)!r}: use I({deparse(n)}) for "
                    "arithmetic"
                )
            base = ex(n.lhs)
            out = list(base)
            for _ in range(int(n.rhs.value) - 1):
                out = dedup(out + product(out, base))
            return out
        if op in ("|", "||"):
            raise FormulaError(
                f"random-effects term {deparse(n)!r} must be enclosed in parentheses "
                "and added to the formula"
            )
        raise FormulaError(
            f"operator {op!r} in {deparse(n)!r} is not a formula operator; "
            f"wrap arithmetic in I(), e.g. I({deparse(n)})"
        )

    terms = [t for t in ex(node) if t != ()]
    terms = sorted(dedup(terms), key=len)  # stable: R's keep.order = FALSE
    return terms, state["intercept"]


def _term_node(term: Term, nodes: dict[str, Node]) -> Node:
    node = nodes[term[0]]
    for v in term[1:]:
        node = BinOp(":", node, nodes[v])
    return node


# ----------------------------------------------------------------------------- formula


@dataclass(frozen=True)
class Bar:
    """One random-effects term ``(lhs | group)`` after ``||`` and ``/`` expansion."""

    lhs: Node
    group: Node

    @property
    def group_name(self) -> str:
        """The grouping factor's name as lme4 prints it ("Subject", "cask:batch"). R deparses a
        bare symbol without backquotes, so ``(1 | `my g`)`` is the group "my g"."""
        if isinstance(self.group, Name):
            return self.group.id
        return deparse(self.group)

    @property
    def label(self) -> str:
        """The term as lme4 names it in messages ("0 + Days | Subject")."""
        return deparse(BinOp("|", self.lhs, self.group))


@dataclass(frozen=True)
class ParsedFormula:
    """A mixed-model formula split into response, fixed part and random-effects terms."""

    text: str
    response: Node | None
    fixed: Node | None  # right-hand side without the bar terms; None means "1"
    bars: tuple[Bar, ...]

    @property
    def response_name(self) -> str:
        """The response as R deparses it: a bare symbol without backquotes ("y 1")."""
        if isinstance(self.response, Name):
            return self.response.id
        return "" if self.response is None else deparse(self.response)


def _expand_double(lhs: Node, group: Node) -> list[Bar]:
    """lme4 1.1-31's expandDoubleVerts: ``(a + b || g)`` -> ``(1|g) + (0 + a|g) + (0 + b|g)``."""
    terms, intercept = expand_terms(lhs)
    nodes = variables(lhs)
    bars = [Bar(Num(1.0), group)] if intercept else []
    bars += [Bar(BinOp("+", Num(0.0), _term_node(t, nodes)), group) for t in terms]
    if not bars:
        raise FormulaError(f"random-effects term ({deparse(lhs)} || {deparse(group)}) is empty")
    return bars


def _expand_slash(group: Node) -> list[Node]:
    """lme4's expandSlash: ``a/b/c`` -> ``c:(b:a)``, ``b:a``, ``a``."""
    inner = group.inner if isinstance(group, Paren) else group
    if not (isinstance(inner, BinOp) and inner.op == "/"):
        return [group]
    parts: list[Node] = []

    def flatten(n: Node) -> None:
        if isinstance(n, BinOp) and n.op == "/":
            flatten(n.lhs)
            flatten(n.rhs)
        else:
            parts.append(n)

    flatten(inner)
    chain = [parts[0]]
    for p in parts[1:]:
        chain.append(BinOp(":", p, chain[-1]))
    return chain[::-1]


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 formula; raise FormulaError naming what is wrong if it is malformed."""
    if not isinstance(text, str):
        raise FormulaError(f"formula must be a string, got {type(text).__name__}")
    return _parse_formula(text)


@functools.lru_cache(maxsize=256)
def _parse_formula(text: str) -> ParsedFormula:
    """:func:`parse_formula` of a string, memoized: the result (frozen syntax trees) depends on
    the text alone, and refits of one formula (update, anova, profile, simulations) reuse it."""
    if text.count("(") != text.count(")"):
        raise FormulaError(
            f"cannot read formula {text!r}: unbalanced parentheses "
            f"({text.count('(')} '(' and {text.count(')')} ')')"
        )
    tree = parse_expr(text)
    if not (isinstance(tree, BinOp) and tree.op == "~") and not (
        isinstance(tree, Unary) and tree.op == "~"
    ):
        raise FormulaError(f"formula {text!r} has no '~' (write it as 'response ~ terms')")
    response = tree.lhs if isinstance(tree, BinOp) else None
    rhs = tree.rhs if isinstance(tree, BinOp) else tree.operand
    if response is None:
        raise FormulaError(f"formula {text!r} has no response on the left of '~'")
    if isinstance(rhs, BinOp) and rhs.op == "~" or isinstance(response, BinOp) and (
        response.op == "~"
    ):
        raise FormulaError(f"formula {text!r} has more than one '~'")

    bars: list[Bar] = []

    def strip(n: Node) -> Node | None:
        """Collect the bars (findbars) and return the rest (nobars)."""
        if isinstance(n, Paren):
            if isinstance(n.inner, BinOp) and n.inner.op in ("|", "||"):
                collect(n.inner)
                return None
            inner = strip(n.inner)
            return None if inner is None else Paren(inner)
        if isinstance(n, BinOp) and n.op in ("|", "||"):
            collect(n)
            return None
        if isinstance(n, BinOp) and n.op in ("+", "-", "*", ":"):
            left, right = strip(n.lhs), strip(n.rhs)
            if left is None:  # lme4's nobars: "(1 | g) - 1" leaves "1"
                return right if n.op == "+" else None
            if right is None:
                return left
            return BinOp(n.op, left, right)
        return n

    def collect(b: BinOp) -> None:
        for group in _expand_slash(b.rhs):
            if b.op == "||":
                bars.extend(_expand_double(b.lhs, group))
            else:
                bars.append(Bar(b.lhs, group))

    fixed = strip(rhs)
    if not bars:
        raise FormulaError(
            f"No random effects terms specified in formula {text!r} "
            "(add a term such as (1 | group))"
        )
    return ParsedFormula(text=text, response=response, fixed=fixed, bars=tuple(bars))
