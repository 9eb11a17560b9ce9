"""HTTP signatures: verify the two kinds the fediverse sends, sign the one everybody reads.

- draft-cavage-http-signatures-12, as Mastodon uses it: a `Signature` header with `keyId`,
  `algorithm` (`rsa-sha256`, or `hs2019` meaning the same for an RSA key), `headers` and
  `signature`; RSASSA-PKCS1-v1_5 over SHA-256.
- RFC 9421 (HTTP Message Signatures): `Signature-Input` and `Signature` dictionaries,
  `rsa-v1_5-sha256` and `rsa-pss-sha512`.

Verification is split so that the inbox can look the key up (and fetch it again once after a
rotation) between the two halves: `parse_signature` checks everything that does not need the
key — the signature covers the request target, the host, the date (within 12 hours back and
1 hour ahead) and, with a body, a `Digest` / `Content-Digest` that matches the body — and
returns a `VerifiableSignature` whose `verify(public_key_pem)` does the cryptography.

Outbound requests are signed the cavage way (`sign_request`), which every server accepts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote_plus

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kith.federation.structured_fields import (
    InnerList,
    Item,
    StructuredFieldError,
    parse_dictionary,
    serialize_inner_list,
    serialize_item,
)

MAX_AGE = timedelta(hours=12)
MAX_AHEAD = timedelta(hours=1)
RSA_V1_5_SHA256 = "rsa-v1_5-sha256"
RSA_PSS_SHA512 = "rsa-pss-sha512"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class SignatureError(Exception):
    """The request's signature is missing, malformed, stale or wrong (401)."""

    status = 401


class DigestMismatch(SignatureError):
    """The body is not the one the digest (and so the signature) vouches for (400)."""

    status = 400


@dataclass(frozen=True)
class RequestParts:
    """What a verifier needs of a request: exactly as received, nothing re-encoded."""

    method: str
    scheme: str
    authority: str  # the Host header
    path: str  # raw, percent-encoded
    query: str  # raw, without "?"
    headers: tuple[tuple[str, str], ...]  # (lowercase name, value), in order, repeats kept
    body: bytes | None = None

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def request_target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")

    @property
    def target_uri(self) -> str:
        return f"{self.scheme}://{self.authority}{self.request_target}"

    @classmethod
    def of_httpx(cls, request: httpx.Request) -> RequestParts:
        """The parts of an outgoing httpx request (for signing it)."""
        url = request.url
        return cls(
            method=request.method,
            scheme=url.scheme,
            authority=request.headers.get("host", url.netloc.decode()),
            path=url.raw_path.decode().split("?", 1)[0] or "/",
            query=url.query.decode(),
            headers=tuple((k.lower(), v) for k, v in request.headers.multi_items()),
            body=request.content,
        )


@dataclass
class VerifiableSignature:
    """A well-formed, fresh signature waiting for its key. `candidates` are (algorithm,
    signed bytes) pairs: one, except where the sender left the algorithm open."""

    scheme: str  # "cavage" | "rfc9421"
    key_id: str
    signature: bytes
    candidates: list[tuple[str, bytes]] = field(default_factory=list)
    covered: tuple[str, ...] = ()

    def verify(self, public_key_pem: str) -> bool:
        """True if the signature was made by the private half of this public key."""
        key = load_public_key(public_key_pem)
        if key is None:
            return False
        return any(_verify_one(key, alg, data, self.signature) for alg, data in self.candidates)


@lru_cache(maxsize=4096)
def load_public_key(pem: str) -> rsa.RSAPublicKey | None:
    """The RSA public key of a PEM (SubjectPublicKeyInfo or PKCS#1), or None."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def _verify_one(key: rsa.RSAPublicKey, alg: str, data: bytes, signature: bytes) -> bool:
    try:
        if alg == RSA_V1_5_SHA256:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == RSA_PSS_SHA512:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
            key.verify(signature, data, pss, hashes.SHA512())
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise SignatureError(f"{what} is not valid base64") from exc


def _check_time(when: datetime, now: datetime, what: str) -> None:
    if when < now - MAX_AGE:
        raise SignatureError(f"{what} is more than 12 hours old")
    if when > now + MAX_AHEAD:
        raise SignatureError(f"{what} is in the future")


def _check_date_header(req: RequestParts, now: datetime) -> None:
    values = req.values("date")
    if len(values) != 1:
        raise SignatureError("the signed Date header is missing")
    try:
        when = parsedate_to_datetime(values[0])
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"unparsable Date header {values[0][:60]!r}") from exc
    _check_time(when if when.tzinfo else when.replace(tzinfo=UTC), now, "the Date header")


# -- digests ------------------------------------------------------------------------------

_DIGEST_ALGORITHMS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


def body_digest_header(body: bytes) -> str:
    """The `Digest` header value Mastodon expects for a body."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def content_digest_header(body: bytes) -> str:
    """The RFC 9530 `Content-Digest` header value of a body."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _check_digests(pairs: Iterable[tuple[str, bytes]], body: bytes, header: str) -> None:
    checked = 0
    for alg, expected in pairs:
        hasher = _DIGEST_ALGORITHMS.get(alg.lower())
        if hasher is None:
            continue
        if not hmac.compare_digest(hasher(body).digest(), expected):
            raise DigestMismatch(f"the {header} header does not match the body")
        checked += 1
    if not checked:
        raise DigestMismatch(f"the {header} header has no SHA-256 or SHA-512 digest")


def _digest_pairs(value: str) -> list[tuple[str, bytes]]:
    pairs = []
    for part in value.split(","):
        alg, sep, encoded = part.strip().partition("=")
        if not sep:
            raise DigestMismatch("malformed Digest header")
        pairs.append((alg.strip(), _b64decode(encoded.strip(), "the Digest header")))
    return pairs


def _content_digest_pairs(value: str) -> list[tuple[str, bytes]]:
    try:
        members = parse_dictionary(value)
    except StructuredFieldError as exc:
        raise DigestMismatch("malformed Content-Digest header") from exc
    pairs = []
    for alg, member in members.items():
        if isinstance(member, Item) and isinstance(member.value, bytes):
            pairs.append((alg, member.value))
    return pairs


def check_body_digest(req: RequestParts, covered: Iterable[str]) -> None:
    """A request with a body must carry a signed digest of it, and the digest must match."""
    covered = set(covered)
    body = req.body or b""
    used = False
    if "content-digest" in covered and req.values("content-digest"):
        _check_digests(
            _content_digest_pairs(", ".join(req.values("content-digest"))), body, "Content-Digest"
        )
        used = True
    if "digest" in covered and req.values("digest"):
        _check_digests(_digest_pairs(", ".join(req.values("digest"))), body, "Digest")
        used = True
    if not used:
        raise SignatureError("a request with a body must sign its Digest or Content-Digest")


# -- draft-cavage -------------------------------------------------------------------------

_CAVAGE_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([0-9.]+))\s*(,|$)')


def _cavage_params(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        m = _CAVAGE_PARAM.match(value, pos)
        if not m or m.end() == pos:
            raise SignatureError("malformed Signature header")
        name = m.group(1)
        if name in params:
            raise SignatureError(f"Signature header repeats {name}")
        params[name] = m.group(2) if m.group(2) is not None else m.group(3)
        pos = m.end()
    return params


def cavage_signing_string(
    req: RequestParts, headers: list[str], params: dict[str, str], *, with_query: bool = True
) -> str:
    """The string a cavage signature covers: one `name: value` line per signed header."""
    lines = []
    for name in headers:
        if name == "(request-target)":
            target = req.request_target if with_query else req.path
            lines.append(f"(request-target): {req.method.lower()} {target}")
        elif name in ("(created)", "(expires)"):
            value = params.get(name[1:-1])
            if value is None:
                raise SignatureError(f"{name} is signed but the parameter is missing")
            lines.append(f"{name}: {value}")
        else:
            values = req.values(name)
            if not values:
                raise SignatureError(f"the signed header {name} is missing")
            lines.append(f"{name}: {', '.join(v.strip() for v in values)}")
    return "\n".join(lines)


def _parse_cavage(req: RequestParts, now: datetime) -> VerifiableSignature:
    values = req.values("signature")
    if not values:
        authorization = req.values("authorization")
        if authorization and authorization[0].startswith("Signature "):
            values = [authorization[0][len("Signature ") :]]
    if len(values) != 1:
        raise SignatureError("the request is not signed")
    params = _cavage_params(values[0])
    key_id, encoded = params.get("keyId"), params.get("signature")
    if not key_id or not encoded:
        raise SignatureError("the Signature header needs keyId and signature")
    if params.get("algorithm", "hs2019").lower() not in ("rsa-sha256", "hs2019"):
        raise SignatureError(f"unsupported signature algorithm {params['algorithm'][:40]!r}")
    headers = params.get("headers", "date").lower().split()
    for required in ("(request-target)", "host"):
        if required not in headers:
            raise SignatureError(f"the signature must cover {required}")
    if "date" in headers:
        _check_date_header(req, now)
    elif "(created)" in headers and params.get("created", "").isdigit():
        _check_time(datetime.fromtimestamp(int(params["created"]), UTC), now, "(created)")
    else:
        raise SignatureError("the signature must cover the date")
    try:
        expired = float(params.get("expires") or "inf") < now.timestamp()
    except ValueError as exc:
        raise SignatureError("malformed expires parameter") from exc
    if expired:
        raise SignatureError("the signature has expired")
    if req.method.upper() in BODY_METHODS or req.body:
        check_body_digest(req, headers)
    signature = _b64decode(encoded, "the signature")
    strings = [cavage_signing_string(req, headers, params)]
    if req.query:
        # Mastodon's compatibility quirk: some servers sign the path without its query.
        strings.append(cavage_signing_string(req, headers, params, with_query=False))
    return VerifiableSignature(
        "cavage",
        key_id,
        signature,
        [(RSA_V1_5_SHA256, s.encode()) for s in strings],
        tuple(headers),
    )


# -- RFC 9421 -----------------------------------------------------------------------------


def _authority(req: RequestParts) -> str:
    host = req.authority.strip().lower()
    default = ":443" if req.scheme == "https" else ":80"
    return host[: -len(default)] if host.endswith(default) else host


def _query_param(req: RequestParts, name: str) -> str:
    for pair in req.query.split("&"):
        key, _, value = pair.partition("=")
        if unquote_plus(key) == name:
            return quote(unquote_plus(value), safe="")
    raise SignatureError(f"the signed query parameter {name!r} is missing")


def component_value(req: RequestParts, item: Item) -> str:
    """The value RFC 9421 signs for one covered component of a request."""
    if not isinstance(item.value, str):
        raise SignatureError("a covered component must be a string")
    name = item.value
    if name == "@query-param" and isinstance(item.params.get("name"), str):
        return _query_param(req, str(item.params["name"]))
    if item.params:
        raise SignatureError(f"unsupported component parameters on {name!r}")
    derived = {
        "@method": lambda: req.method.upper(),
        "@target-uri": lambda: req.target_uri,
        "@authority": lambda: _authority(req),
        "@scheme": lambda: req.scheme.lower(),
        "@request-target": lambda: req.request_target,
        "@path": lambda: req.path or "/",
        "@query": lambda: f"?{req.query}",
    }
    if name.startswith("@"):
        if name not in derived:
            raise SignatureError(f"unsupported derived component {name!r}")
        return derived[name]()
    values = req.values(name.lower())
    if not values:
        raise SignatureError(f"the signed header {name} is missing")
    return ", ".join(" ".join(v.split("\n")).strip() for v in values)


def signature_base(req: RequestParts, inner: InnerList) -> bytes:
    """The bytes an RFC 9421 signature covers."""
    lines = [f"{serialize_item(item)}: {component_value(req, item)}" for item in inner.items]
    lines.append(f'"@signature-params": {serialize_inner_list(inner)}')
    return "\n".join(lines).encode()


def _parse_rfc9421(req: RequestParts, now: datetime) -> VerifiableSignature:
    try:
        inputs = parse_dictionary(", ".join(req.values("signature-input")))
        signatures = parse_dictionary(", ".join(req.values("signature")))
    except StructuredFieldError as exc:
        raise SignatureError(f"malformed Signature-Input or Signature: {exc}") from exc
    label = next((k for k in inputs if k in signatures), None)
    if label is None:
        raise SignatureError("Signature-Input names no signature the request carries")
    inner, sig = inputs[label], signatures[label]
    if not isinstance(inner, InnerList) or not (
        isinstance(sig, Item) and isinstance(sig.value, bytes)
    ):
        raise SignatureError("malformed Signature-Input or Signature")
    key_id, created = inner.params.get("keyid"), inner.params.get("created")
    if not isinstance(key_id, str) or not key_id:
        raise SignatureError("the signature has no keyid")
    if not isinstance(created, int) or isinstance(created, bool):
        raise SignatureError("the signature has no created time")
    _check_time(datetime.fromtimestamp(created, UTC), now, "the signature's created time")
    expires = inner.params.get("expires")
    if isinstance(expires, int) and expires < now.timestamp():
        raise SignatureError("the signature has expired")
    covered = tuple(str(i.value).lower() for i in inner.items)
    if "@method" not in covered or not (
        "@target-uri" in covered or {"@authority", "@path"} <= set(covered)
    ):
        raise SignatureError("the signature must cover @method and @target-uri")
    if "date" in covered:
        _check_date_header(req, now)
    if req.method.upper() in BODY_METHODS or req.body:
        check_body_digest(req, covered)
    alg = inner.params.get("alg")
    if alg is None:
        algorithms = [RSA_V1_5_SHA256, RSA_PSS_SHA512]
    elif alg in (RSA_V1_5_SHA256, RSA_PSS_SHA512):
        algorithms = [str(alg)]
    else:
        raise SignatureError(f"unsupported signature algorithm {str(alg)[:40]!r}")
    base = signature_base(req, inner)
    return VerifiableSignature(
        "rfc9421", key_id, sig.value, [(a, base) for a in algorithms], covered
    )


def parse_signature(req: RequestParts, now: datetime | None = None) -> VerifiableSignature:
    """Check a request's signature as far as it can be without the key (see the module's
    docstring); raises SignatureError (401) or DigestMismatch (400)."""
    now = now or datetime.now(UTC)
    if req.values("signature-input"):
        return _parse_rfc9421(req, now)
    return _parse_cavage(req, now)


# -- signing ------------------------------------------------------------------------------


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def sign_request(
    request: httpx.Request,
    key_id: str,
    private_key: rsa.RSAPrivateKey,
    now: datetime | None = None,
) -> None:
    """Sign an outgoing request the cavage way, as Mastodon does: `(request-target) host
    date` plus `digest` when there is a body (adds Date, Digest and Signature headers)."""
    request.headers["Date"] = http_date(now or datetime.now(UTC))
    signed = ["(request-target)", "host", "date"]
    if request.method.upper() in BODY_METHODS or request.content:
        request.headers["Digest"] = body_digest_header(request.content)
        signed.append("digest")
    text = cavage_signing_string(RequestParts.of_httpx(request), signed, {})
    signature = private_key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    request.headers["Signature"] = (
        f'keyId="{key_id}",algorithm="rsa-sha256",headers="{" ".join(signed)}",'
        f'signature="{base64.b64encode(signature).decode()}"'
    )


def sign_request_rfc9421(
    request: httpx.Request,
    key_id: str,
    private_key: rsa.RSAPrivateKey,
    now: datetime | None = None,
    label: str = "sig1",
) -> None:
    """Sign an outgoing request the RFC 9421 way Mastodon 4.5 accepts: @method,
    @target-uri and, with a body, content-digest; rsa-v1_5-sha256."""
    names = ["@method", "@target-uri"]
    if request.method.upper() in BODY_METHODS or request.content:
        request.headers["Content-Digest"] = content_digest_header(request.content)
        names.append("content-digest")
    created = int((now or datetime.now(UTC)).timestamp())
    inner = InnerList(
        [Item(n) for n in names],
        {"created": created, "keyid": key_id, "alg": RSA_V1_5_SHA256},
    )
    base = signature_base(RequestParts.of_httpx(request), inner)
    signature = private_key.sign(base, padding.PKCS1v15(), hashes.SHA256())
    request.headers["Signature-Input"] = f"{label}={serialize_inner_list(inner)}"
    request.headers["Signature"] = f"{label}=:{base64.b64encode(signature).decode()}:"
