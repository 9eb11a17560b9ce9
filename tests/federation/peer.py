"""A scripted remote server for inbox tests: serves its actors' documents over real HTTP
(tests/federation/local_http.py) and signs deliveries with its actors' keys — or, for the
attacks, with someone else's key, an old date, or a body changed after signing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kith.federation.signatures import sign_request, sign_request_rfc9421
from tests.federation.local_http import LocalServer, json_document

AS = "https://www.w3.org/ns/activitystreams"


@cache
def rsa_key(n: int) -> rsa.RSAPrivateKey:
    """A few RSA keys made once per test run (making one costs ~100 ms)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class Peer:
    server: LocalServer
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    counter: int = 0

    @property
    def base(self) -> str:
        return self.server.base

    def actor_uri(self, name: str) -> str:
        return f"{self.base}/users/{name}"

    def key_id(self, name: str) -> str:
        return f"{self.actor_uri(name)}#main-key"

    def add_actor(self, name: str, key: int = 0, **extra: Any) -> dict[str, Any]:
        """Serve the actor `name` at /users/NAME with test key number `key`."""
        self.keys[name] = rsa_key(key)
        uri = self.actor_uri(name)
        doc = {
            "@context": [AS, "https://w3id.org/security/v1"],
            "id": uri,
            "type": "Person",
            "preferredUsername": name,
            "name": name.title(),
            "inbox": f"{uri}/inbox",
            "outbox": f"{uri}/outbox",
            "followers": f"{uri}/followers",
            "endpoints": {"sharedInbox": f"{self.base}/inbox"},
            "publicKey": {
                "id": self.key_id(name),
                "owner": uri,
                "publicKeyPem": public_pem(rsa_key(key)),
            },
            **extra,
        }
        self.server.routes[f"/users/{name}"] = json_document(doc)
        return doc

    def activity(self, name: str, kind: str, obj: Any, **extra: Any) -> dict[str, Any]:
        self.counter += 1
        return {
            "@context": AS,
            "id": f"{self.actor_uri(name)}/activities/{self.counter}",
            "type": kind,
            "actor": self.actor_uri(name),
            "object": obj,
            **extra,
        }

    def note(self, name: str, text: str = "Hello from afar") -> dict[str, Any]:
        self.counter += 1
        return {
            "id": f"{self.actor_uri(name)}/statuses/{self.counter}",
            "type": "Note",
            "attributedTo": self.actor_uri(name),
            "content": f"<p>{text}</p>",
            "to": [f"{AS}#Public"],
        }

    def sign(
        self,
        activity: dict[str, Any] | bytes,
        *,
        signer: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        key_id: str | None = None,
        path: str = "/inbox",
        now: datetime | None = None,
        rfc9421: bool = False,
        host: str = "kith.test",
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body of a delivery to `path`, signed by `signer` (default: the
        activity's actor) with its key, or with the `key`/`key_id` given."""
        body = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
        if signer is None:
            assert isinstance(activity, dict)
            signer = activity["actor"].rsplit("/", 1)[-1]
        request = httpx.Request(
            "POST",
            f"http://{host}{path}",
            content=body,
            headers={"Content-Type": "application/activity+json"},
        )
        sign = sign_request_rfc9421 if rfc9421 else sign_request
        sign(request, key_id or self.key_id(signer), key or self.keys[signer], now=now)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        return headers, body

    def fetches_of(self, name: str) -> int:
        return sum(r.target == f"/users/{name}" for r in self.server.requests)
