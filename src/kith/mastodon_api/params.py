"""Read API parameters the way Mastodon clients send them: JSON, form or query, with
`key[]` arrays and nested `poll[options][]`; unknown parameters are ignored."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

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
                except ValueError:
                    raise ValidationFailed("Malformed JSON body", field="body") from None
                if not isinstance(parsed, dict):
                    raise ValidationFailed("The JSON body must be an object", field="body")
                data.update(parsed)
        elif ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            for key, value in form.multi_items():
                if isinstance(value, str):  # uploads are read by the media endpoints themselves
                    _nest(data, key, value)
    return Params(data)
