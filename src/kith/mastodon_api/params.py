"""Read API parameters the way Mastodon clients send them: JSON, form or query, with
`key[]` arrays and nested `poll[options][]`; unknown parameters are ignored."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException

from kith.errors import ValidationFailed


class Params(dict[str, Any]):
    """Request parameters with typed accessors that raise ValidationFailed(field=name)."""

    def text(self, name: str, default: str | None = None) -> str | None:
        v = self.get(name, default)
        if v is None:
            return default
        if isinstance(v, bool | int | float):
            return str(v).lower() if isinstance(v, bool) else str(v)
        if not isinstance(v, str):
            raise ValidationFailed(f"{name} must be a string", field=name)
        return v

    def flag(self, name: str, default: bool = False) -> bool:
        v = self.get(name)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "1", "on", "yes"):
            return True
        if isinstance(v, str) and v.lower() in ("false", "0", "off", "no"):
            return False
        if isinstance(v, int):
            return bool(v)
        raise ValidationFailed(f"{name} must be a boolean", field=name)

    def integer(self, name: str, default: int | None = None) -> int | None:
        v = self.get(name)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            raise ValidationFailed(f"{name} must be an integer", field=name)
        if isinstance(v, int):
            return v
        if isinstance(v, str) and v.strip().lstrip("-").isdigit() and len(v) < 20:
            return int(v)
        raise ValidationFailed(f"{name} must be an integer", field=name)

    def many(self, name: str) -> list[Any]:
        v = self.get(name)
        if v is None:
            return []
        return v if isinstance(v, list) else [v]

    def obj(self, name: str) -> Params:
        v = self.get(name)
        if v is None:
            return Params()
        if not isinstance(v, dict):
            raise ValidationFailed(f"{name} must be an object", field=name)
        return Params(v)


def _nest(target: dict[str, Any], key: str, value: Any) -> None:
    """Put `poll[options][]`-style keys into nested dicts and lists."""
    parts = key.replace("]", "").split("[")
    node = target
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if last:
            if part == "":
                continue
            if key.endswith("[]"):
                node.setdefault(part, [])
                if isinstance(node[part], list):
                    node[part].append(value)
            else:
                node[part] = value
            return
        nxt = parts[i + 1]
        if nxt == "" and i + 1 == len(parts) - 1:
            existing = node.setdefault(part, [])
            if isinstance(existing, list):
                existing.append(value)
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return
        node = child


async def read_params(request: Request) -> Params:
    """Query + body parameters (body wins), in any of the encodings clients use."""
    data: dict[str, Any] = {}
    for k, v in request.query_params.multi_items():
        _nest(data, k, v)
    ctype = request.headers.get("content-type", "")
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        if ctype.startswith("application/json"):
            body = await request.body()
            if body.strip():
                try:
                    parsed = json.loads(body)
                except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
                    raise ValidationFailed("Malformed JSON body", field="body") from None
                if not isinstance(parsed, dict):
                    raise ValidationFailed("The JSON body must be an object", field="body")
                data.update(parsed)
        elif ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            try:
                form = await request.form()
            except HTTPException:  # Starlette's answer to a multipart body it cannot parse
                raise ValidationFailed("Malformed form body", field="body") from None
            for key, value in form.multi_items():
                if isinstance(value, str):  # uploads are read by the media endpoints themselves
                    _nest(data, key, value)
    _check_values(data)
    return Params(data)


MAX_DEPTH = 16  # Mastodon's deepest parameters (poll[options][], keywords_attributes) are 3


def _check_values(data: dict[str, Any]) -> None:
    """Refuse, with a 422 rather than a 500 later: NUL characters, which PostgreSQL can neither
    store nor compare (paths and queries: kith.edge.Edge refuses them), and nesting deeper
    than any parameter goes, which would exhaust the stack of whatever serializes it next.
    Iterative, so the check itself cannot."""
    pending: list[tuple[str, Any, int]] = [("body", data, 0)]
    while pending:
        name, value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ValidationFailed(f"{name} is nested too deeply", field=name)
        if isinstance(value, str):
            if "\x00" in value:
                raise ValidationFailed(f"{name} must not contain NUL characters", field=name)
        elif isinstance(value, dict):
            for key, item in value.items():
                pending.append((name, key, depth))
                pending.append((str(key) if name == "body" else name, item, depth + 1))
        elif isinstance(value, list):
            pending.extend((name, item, depth + 1) for item in value)
