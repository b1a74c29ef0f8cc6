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
Example: ``cell_type == "CD4T" & condition in ["control", "stimulated"] & ~(dose >= 10)``. Values are
compared by the column's type (:mod:`.compare`): ``leiden == "1"`` and ``leiden in [1]`` agree on
integer categories. Missing values never match a comparison (``~`` of one does). Errors point at the
position in the text.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
import pandas as pd

from .compare import ComparisonError, compare
from .format import StoreError

__all__ = ["FilterError", "parse_filter", "Filter", "MAX_DEPTH", "MAX_COMPARISONS"]

#: nesting of parentheses and negations, and comparisons in one filter, at most
MAX_DEPTH, MAX_COMPARISONS = 100, 100_000

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
    """A parsed filter: ``("cmp", column, op, value, position)``, ``("and"|"or", [nodes])`` or ``("not", node)``.

    ``and``/``or`` nodes hold all their operands in one list, so a long chain of terms is one flat
    level (no recursion per term); nesting by parentheses and ``not`` is limited to :data:`MAX_DEPTH`.
    """

    text: str
    tree: tuple

    def columns(self) -> set[str]:
        """The obs columns the filter reads."""
        return {column for column, _ in self.references()}

    def references(self) -> list[tuple[str, int]]:
        """``(column, position in the text)`` of every comparison."""
        found, pending = [], [self.tree]
        while pending:
            node = pending.pop()
            if node[0] == "cmp":
                found.append((node[1], node[4]))
            else:
                pending.extend(reversed(node[1]) if node[0] in ("and", "or") else [node[1]])
        return found

    def check_columns(self, known) -> None:
        """``FilterError`` at the first column not in ``known``, listing the known columns."""
        for column, position in self.references():
            if column not in list(known):
                raise FilterError(self.text, position, f"obs has no column {column!r} (columns: {list(known)})")

    def evaluate(self, obs: pd.DataFrame) -> np.ndarray:
        """Boolean mask [n_rows] of ``obs``."""
        def walk(node):
            if node[0] in ("and", "or"):
                combine = np.logical_and if node[0] == "and" else np.logical_or
                return combine.reduce([walk(n) for n in node[1]])
            if node[0] == "not":
                return ~walk(node[1])
            return self._compare(obs, *node[1:])
        return np.asarray(walk(self.tree), dtype=bool)

    def _compare(self, obs: pd.DataFrame, column: str, op: str, value: Any, position: int) -> np.ndarray:
        if column not in obs.columns:
            raise FilterError(self.text, position, f"obs has no column {column!r} (columns: {list(obs.columns)})")
        try:
            return compare(obs[column], op, value, column)
        except ComparisonError as error:
            raise FilterError(self.text, position, str(error)) from None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.at, self.n_comparisons = text, tokenize(text), 0, 0

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

    def chain(self, symbol: str, kind: str, operand) -> tuple:
        """``operand (symbol operand)*`` as one flat ``(kind, [nodes])`` node (or the single operand)."""
        nodes = [operand()]
        while self.is_op(symbol):
            self.take()
            nodes.append(operand())
        return nodes[0] if len(nodes) == 1 else (kind, nodes)

    def expression(self, depth: int = 0) -> tuple:
        return self.chain("|", "or", lambda: self.term(depth))

    def term(self, depth: int) -> tuple:
        return self.chain("&", "and", lambda: self.factor(depth))

    def factor(self, depth: int) -> tuple:
        if depth >= MAX_DEPTH and self.is_op("~", "!", "("):
            raise FilterError(self.text, self.peek().position, f"the filter nests parentheses and negations deeper "
                              f"than {MAX_DEPTH} levels; write it flatter (e.g. column in [a, b, ...])")
        if self.is_op("~", "!"):
            self.take()
            return ("not", self.factor(depth + 1))
        if self.is_op("("):
            self.take()
            node = self.expression(depth + 1)
            if not self.is_op(")"):
                raise self.error(self.peek(), "')'")
            self.take()
            return node
        return self.comparison()

    def comparison(self) -> tuple:
        self.n_comparisons += 1
        if self.n_comparisons > MAX_COMPARISONS:
            raise FilterError(self.text, self.peek().position, f"the filter has more than {MAX_COMPARISONS} "
                              "comparisons; list the values instead (column in [a, b, ...])")
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
