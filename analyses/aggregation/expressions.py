"""Expressions over aggregates: a small tokenizer (never ``eval``).

::

    parsed = parse_expression("max(v1) - min(v2)")
    parsed.calls                                   # [max(v1), min(v2)]
    parsed.render({c: f"c{i}" for i, c in enumerate(parsed.calls)})   # '"c0" - "c1"'

The aggregate calls ``fn(column)`` of the text are split out (computed as hidden metrics by the
kernel); the rest is Polars SQL over the columns that hold their values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

__all__ = ["EXPRESSION_FUNCTIONS", "AggregateCall", "ParsedExpression", "parse_expression",
           "sql_expr"]

#: aggregate call names in expressions -> Metric.function
EXPRESSION_FUNCTIONS: Mapping[str, str] = {
    "sum": "sum",
    "mean": "mean",
    "avg": "mean",
    "min": "min",
    "max": "max",
    "count": "count",
    "median": "median",
    "std": "std",
    "stddev": "std",
    "stddev_samp": "std",
    "var": "var",
    "variance": "var",
    "var_samp": "var",
    "first": "first",
    "last": "last",
    "corr": "corr",
}

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")+")
    | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[^\W\d]\w*)
    | (?P<comment>--|/\*)
    | (?P<symbol><>|!=|<=|>=|\|\||::|[-+*/%(),<>=!|&^~:.\[\]])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class AggregateCall:
    """One aggregate call of an expression: ``function(column[, other])``."""

    function: str
    column: str | None
    other: str | None = None

    def __str__(self) -> str:
        args = "*" if self.column is None else self.column
        return f"{self.function}({args}{'' if self.other is None else ', ' + self.other})"


@dataclass(frozen=True)
class ParsedExpression:
    """An expression split into SQL text and aggregate calls, in the order they appear."""

    pieces: tuple[str | AggregateCall, ...]

    @property
    def calls(self) -> list[AggregateCall]:
        """The distinct aggregate calls, in order of first appearance."""
        return list(dict.fromkeys(p for p in self.pieces if isinstance(p, AggregateCall)))

    def render(self, names: Mapping[AggregateCall, str]) -> str:
        """The SQL text with each call replaced by the quoted column that holds its value."""
        return "".join(
            _quote(names[p]) if isinstance(p, AggregateCall) else p for p in self.pieces
        )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) of every token, whitespace included."""
    out = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"unexpected character {text[pos]!r} at position {pos} of {text!r}")
        kind = match.lastgroup or ""
        if kind == "comment":
            raise ValueError(f"comments are not allowed in expressions ({text!r})")
        out.append((kind, match.group(), pos))
        pos = match.end()
    return out


def parse_expression(text: str) -> ParsedExpression:
    """Split ``text`` into SQL pieces and aggregate calls; ValueError names what is wrong.

    ``parse_expression("max(v1) - min(v2)")`` has the calls ``max(v1)`` and ``min(v2)``;
    ``render({max(v1): "a", min(v2): "b"})`` gives ``"a" - "b"``.
    """
    tokens = _tokens(text)
    significant = [i for i, t in enumerate(tokens) if t[0] != "space"]
    pieces: list[str | AggregateCall] = []
    s = 0  # index into significant
    emitted = 0  # tokens[:emitted] are in pieces
    while s < len(significant):
        i = significant[s]
        kind, value, pos = tokens[i]
        is_call = (
            kind == "name"
            and value.lower() in EXPRESSION_FUNCTIONS
            and s + 1 < len(significant)
            and tokens[significant[s + 1]][1] == "("
        )
        if not is_call:
            s += 1
            continue
        call, s = _parse_call(tokens, significant, s, text)
        pieces.extend(t[1] for t in tokens[emitted:i])
        pieces.append(call)
        emitted = significant[s - 1] + 1
    pieces.extend(t[1] for t in tokens[emitted:])
    return ParsedExpression(tuple(pieces))


def _parse_call(
    tokens: list[tuple[str, str, int]], significant: list[int], s: int, text: str
) -> tuple[AggregateCall, int]:
    """The call starting at significant token ``s`` and the index just after its ``)``."""
    name, pos = tokens[significant[s]][1], tokens[significant[s]][2]
    function = EXPRESSION_FUNCTIONS[name.lower()]
    arity = 2 if function == "corr" else 1
    usage = f"{name}(x, y)" if arity == 2 else f"{name}(column)"
    problem = (
        f"{name}(...) at position {pos} of {text!r}: an aggregate's arguments must be column "
        f"names, as in {usage}" + (" or count(*)" if function == "count" else "")
    )
    args: list[str | None] = []
    s += 2  # past the name and "("
    while True:
        if s >= len(significant):
            raise ValueError(problem)
        kind, value, _ = tokens[significant[s]]
        if kind == "name":
            args.append(value)
        elif kind == "quoted":
            args.append(value[1:-1].replace('""', '"'))
        elif value == "*" and function == "count" and not args:
            args.append(None)
        else:
            raise ValueError(problem)
        if s + 1 >= len(significant):
            raise ValueError(problem)
        separator = tokens[significant[s + 1]][1]
        s += 2
        if separator == ")":
            break
        if separator != ",":
            raise ValueError(problem)
    if len(args) != arity:
        raise ValueError(problem)
    return AggregateCall(function, args[0], args[1] if arity == 2 else None), s


def sql_expr(text: str, where: str) -> pl.Expr:
    """The Polars expression of SQL text; ValueError naming ``where`` when it does not parse."""
    try:
        return pl.sql_expr(text)
    except pl.exceptions.PolarsError as err:
        raise ValueError(f"{where}: {err}") from None
