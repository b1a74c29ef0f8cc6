"""A small, safe grammar for metadata filters (a tokenizer and a recursive-descent parser, no ``eval``).

```
expression := term (("|" | "or") term)*
term       := factor (("&" | "and") factor)*
factor     := ("~" | "!" | "not") factor | "(" expression ")" | comparison
comparison := column ("==" | "!=" | "<" | "<=" | ">" | ">=") literal
            | column ["not"] "in" "[" literal ("," literal)* "]"
            | column                                 (a boolean column: "column == true")
column     := identifier | `any text in backquotes`
literal    := "text" | 'text' | number | true | false | null
```
Example: ``cell_type == "CD4T" & condition in ["control", "stim"] & ~(dose >= 10)``. Missing values
never match a comparison (``~`` of one does). Errors point at the position in the text.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
import pandas as pd

from .format import StoreError

__all__ = ["FilterError", "parse_filter", "Filter"]

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<op>==|!=|<=|>=|<|>|&|\||~|!|\(|\)|\[|\]|,)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*|`[^`]+`)
""", re.VERBOSE)
_KEYWORDS = {"and": "&", "or": "|", "not": "~", "in": "in", "true": True, "false": False, "null": None, "none": None}


class FilterError(StoreError):
    """A filter that does not parse, or names what the store does not have; points at the position."""

    def __init__(self, text: str, position: int, message: str) -> None:
        super().__init__(f"{message} at position {position} of the filter:\n  {text}\n  {' ' * position}^")
        self.position = position


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str  # "string" | "number" | "op" | "name" | "keyword" | "end"
    value: Any
    position: int


def tokenize(text: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(text, position, f"unexpected character {text[position]!r}")
        kind, raw = match.lastgroup, match.group()
        if kind == "string":
            tokens.append(Token("string", re.sub(r"\\(.)", r"\1", raw[1:-1]), position))
        elif kind == "number":
            tokens.append(Token("number", float(raw) if re.search(r"[.eE]", raw) else int(raw), position))
        elif kind == "name" and raw.lower() in _KEYWORDS:
            tokens.append(Token("keyword", raw.lower(), position))
        elif kind == "name":
            tokens.append(Token("name", raw.strip("`"), position))
        elif kind == "op":
            tokens.append(Token("op", raw, position))
        position = match.end()
    return tokens + [Token("end", None, len(text))]


@dataclasses.dataclass(frozen=True)
class Filter:
    """A parsed filter: ``("cmp", column, op, value, position)``, ``("and"|"or", a, b)`` or ``("not", a)``."""

    text: str
    tree: tuple

    def columns(self) -> set[str]:
        """The obs columns the filter reads."""
        return {column for column, _ in self.references()}

    def references(self) -> list[tuple[str, int]]:
        """``(column, position in the text)`` of every comparison."""
        def walk(node):
            return [(node[1], node[4])] if node[0] == "cmp" else [r for n in node[1:] for r in walk(n)]
        return walk(self.tree)

    def check_columns(self, known) -> None:
        """``FilterError`` at the first column not in ``known``, listing the known columns."""
        for column, position in self.references():
            if column not in list(known):
                raise FilterError(self.text, position, f"obs has no column {column!r} (columns: {list(known)})")

    def evaluate(self, obs: pd.DataFrame) -> np.ndarray:
        """Boolean mask [n_rows] of ``obs``."""
        def walk(node):
            if node[0] == "and":
                return walk(node[1]) & walk(node[2])
            if node[0] == "or":
                return walk(node[1]) | walk(node[2])
            if node[0] == "not":
                return ~walk(node[1])
            return self._compare(obs, *node[1:])
        return np.asarray(walk(self.tree), dtype=bool)

    def _compare(self, obs: pd.DataFrame, column: str, op: str, value: Any, position: int) -> np.ndarray:
        if column not in obs.columns:
            raise FilterError(self.text, position, f"obs has no column {column!r} (columns: {list(obs.columns)})")
        series = obs[column]
        values = value if op in ("in", "not in") else [value]
        numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
        if numeric and any(isinstance(v, str) for v in values):
            raise FilterError(self.text, position, f"column {column!r} holds numbers ({series.dtype}); compare it with a number")
        if not numeric and op in ("<", "<=", ">", ">=") and not pd.api.types.is_datetime64_any_dtype(series.dtype):
            raise FilterError(self.text, position, f"column {column!r} holds {series.dtype}, which has no order; use == or in")
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            values = [pd.Timestamp(v) if v is not None else None for v in values]
        elif not numeric and not pd.api.types.is_bool_dtype(series.dtype):
            series = series.astype(object).where(series.notna(), None)
            values = [v if v is None or isinstance(v, bool) else str(v) for v in values]
        present = series.notna().to_numpy()
        if op in ("in", "not in"):
            mask = series.isin([v for v in values if v is not None]).to_numpy(dtype=bool) & present
            mask |= ~present if None in values else False
            return ~mask if op == "not in" else mask
        if value is None:
            return ~present if op == "==" else present
        result = {"==": series == value, "!=": series != value, "<": series < value, "<=": series <= value,
                  ">": series > value, ">=": series >= value}[op]
        return pd.Series(result).fillna(False).to_numpy(dtype=bool) & present


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.at = text, tokenize(text), 0

    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def error(self, token: Token, expected: str) -> FilterError:
        found = "the end" if token.kind == "end" else repr(token.value)
        return FilterError(self.text, token.position, f"expected {expected}, found {found}")

    def is_op(self, *symbols: str) -> bool:
        token = self.peek()
        return (token.kind == "op" and token.value in symbols) or (token.kind == "keyword" and _KEYWORDS.get(token.value) in symbols)

    def expression(self) -> tuple:
        node = self.term()
        while self.is_op("|"):
            self.take()
            node = ("or", node, self.term())
        return node

    def term(self) -> tuple:
        node = self.factor()
        while self.is_op("&"):
            self.take()
            node = ("and", node, self.factor())
        return node

    def factor(self) -> tuple:
        if self.is_op("~", "!"):
            self.take()
            return ("not", self.factor())
        if self.is_op("("):
            self.take()
            node = self.expression()
            if not self.is_op(")"):
                raise self.error(self.peek(), "')'")
            self.take()
            return node
        return self.comparison()

    def comparison(self) -> tuple:
        name = self.take()
        if name.kind != "name":
            raise self.error(name, "a column name")
        token = self.take()
        if token.kind == "op" and token.value in ("==", "!=", "<", "<=", ">", ">="):
            return ("cmp", name.value, token.value, self.literal(), name.position)
        negate = token.kind == "keyword" and token.value == "not"
        if negate:
            token = self.take()
        if token.kind == "keyword" and token.value == "in":
            return ("cmp", name.value, "not in" if negate else "in", self.listing(), name.position)
        if not negate and (token.kind == "end" or (token.kind == "op" and token.value in ("&", "|", ")"))
                           or (token.kind == "keyword" and token.value in ("and", "or"))):
            self.at -= 1  # a bare column: true where it is true (a boolean column)
            return ("cmp", name.value, "==", True, name.position)
        raise self.error(token, "a comparison (==, !=, <, <=, >, >=, in)")

    def literal(self) -> Any:
        token = self.take()
        if token.kind in ("string", "number") or (token.kind == "keyword" and token.value in ("true", "false", "null", "none")):
            return _KEYWORDS[token.value] if token.kind == "keyword" else token.value
        raise self.error(token, "a value (\"text\", a number, true, false or null)")

    def listing(self) -> list:
        if not self.is_op("["):
            raise self.error(self.peek(), "'[' starting a list of values")
        self.take()
        values = [self.literal()]
        while self.is_op(","):
            self.take()
            values.append(self.literal())
        if not self.is_op("]"):
            raise self.error(self.peek(), "',' or ']'")
        self.take()
        return values


def parse_filter(text: str) -> Filter:
    """Parse ``text`` (see the module docstring) into a :class:`Filter`; ``FilterError`` points at the position."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError(str(text), 0, "empty filter")
    parser = _Parser(text)
    tree = parser.expression()
    if parser.peek().kind != "end":
        raise parser.error(parser.peek(), "'&', '|' or the end")
    return Filter(text, tree)
