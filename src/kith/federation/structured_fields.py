"""The part of RFC 8941 (Structured Field Values) that HTTP Message Signatures need: parse
and serialize Dictionaries of Items and Inner Lists, with Parameters.

RFC 9421 signs the *serialized* form of its covered components and parameters, so values
keep their type (a Token is written bare, a String quoted) and round-trip exactly."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

BareItem = int | float | str | bytes | bool


class Token(str):
    """An sf-token (serialized without quotes), as opposed to an sf-string."""


class StructuredFieldError(ValueError):
    """A header is not a valid structured field."""


@dataclass
class Item:
    value: BareItem
    params: dict[str, BareItem] = field(default_factory=dict)


@dataclass
class InnerList:
    items: list[Item]
    params: dict[str, BareItem] = field(default_factory=dict)


_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?\d{1,15}(\.\d{1,3})?")


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def fail(self, what: str) -> StructuredFieldError:
        return StructuredFieldError(f"{what} at {self.i} in {self.s[:200]!r}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip(self, chars: str = " ") -> None:
        while self.peek() and self.peek() in chars:
            self.i += 1

    def key(self) -> str:
        m = _KEY.match(self.s, self.i)
        if not m:
            raise self.fail("expected a key")
        self.i = m.end()
        return m.group()

    def bare_item(self) -> BareItem:
        c = self.peek()
        if c == '"':
            return self.string()
        if c == ":":
            end = self.s.find(":", self.i + 1)
            if end < 0:
                raise self.fail("unterminated byte sequence")
            raw = self.s[self.i + 1 : end]
            self.i = end + 1
            try:
                return base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise self.fail("bad base64") from exc
        if c == "?":
            value = self.s[self.i + 1 : self.i + 2]
            if value not in ("0", "1"):
                raise self.fail("bad boolean")
            self.i += 2
            return value == "1"
        m = _NUMBER.match(self.s, self.i)
        if m and (c == "-" or c.isdigit()):
            self.i = m.end()
            return float(m.group()) if m.group(1) else int(m.group())
        m = _TOKEN.match(self.s, self.i)
        if m:
            self.i = m.end()
            return Token(m.group())
        raise self.fail("expected an item")

    def string(self) -> str:
        self.i += 1
        out = []
        while True:
            c = self.peek()
            if not c:
                raise self.fail("unterminated string")
            self.i += 1
            if c == "\\":
                nxt = self.peek()
                if nxt not in ('"', "\\"):
                    raise self.fail("bad escape")
                out.append(nxt)
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif not (" " <= c <= "~"):
                raise self.fail("non-ASCII in string")
            else:
                out.append(c)

    def params(self) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.i += 1
            self.skip()
            name = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare_item()
            params[name] = value
        return params

    def item_or_inner_list(self) -> Item | InnerList:
        if self.peek() != "(":
            value = self.bare_item()
            return Item(value, self.params())
        self.i += 1
        items: list[Item] = []
        while True:
            self.skip()
            if self.peek() == ")":
                self.i += 1
                return InnerList(items, self.params())
            value = self.bare_item()
            items.append(Item(value, self.params()))
            if self.peek() not in (" ", ")"):
                raise self.fail("expected a space or ')'")

    def dictionary(self) -> dict[str, Item | InnerList]:
        out: dict[str, Item | InnerList] = {}
        self.skip(" \t")
        while self.peek():
            name = self.key()
            if self.peek() == "=":
                self.i += 1
                out[name] = self.item_or_inner_list()
            else:
                out[name] = Item(True, self.params())
            self.skip(" \t")
            if not self.peek():
                break
            if self.peek() != ",":
                raise self.fail("expected ','")
            self.i += 1
            self.skip(" \t")
            if not self.peek():
                raise self.fail("trailing comma")
        return out


def parse_dictionary(text: str) -> dict[str, Item | InnerList]:
    """Parse a Dictionary header value (several field lines joined with ', ')."""
    return _Parser(text.strip()).dictionary()


def parse_item(text: str) -> Item:
    """Parse one Item, such as a covered component identifier `"@query-param";name="x"`."""
    parser = _Parser(text.strip())
    value = parser.bare_item()
    item = Item(value, parser.params())
    if parser.peek():
        raise parser.fail("trailing characters")
    return item


def serialize_bare(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode() + ":"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.1f}"
    return str(value)


def serialize_params(params: dict[str, BareItem]) -> str:
    return "".join(f";{k}" if v is True else f";{k}={serialize_bare(v)}" for k, v in params.items())


def serialize_item(item: Item) -> str:
    return serialize_bare(item.value) + serialize_params(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    return (
        "("
        + " ".join(serialize_item(i) for i in inner.items)
        + ")"
        + serialize_params(inner.params)
    )
