"""HTTP signatures against published vectors — Mastodon's own signature-verification test
vectors (spec/requests/signature_verification_spec.rb: a test key, real signatures), the
signing string in Mastodon's documentation (docs.joinmastodon.org/spec/security), and RFC 9421
Appendix B / section 4.3 (test-key-rsa-pss, test-key-rsa, the test request, its signature bases
and signature values) — then our own signer against our verifier, and the attacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kith.federation.signatures import (
    RSA_PSS_SHA512,
    RSA_V1_5_SHA256,
    DigestMismatch,
    RequestParts,
    SignatureError,
    VerifiableSignature,
    cavage_signing_string,
    parse_signature,
    sign_request,
    sign_request_rfc9421,
    signature_base,
)
from kith.federation.structured_fields import InnerList, parse_dictionary


def request(
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes | None = None,
    scheme: str = "https",
) -> RequestParts:
    path, _, query = target.partition("?")
    return RequestParts(
        method=method,
        scheme=scheme,
        authority=headers.get("Host", ""),
        path=path,
        query=query,
        headers=tuple((k.lower(), v) for k, v in headers.items()),
        body=body,
    )


def public_pem(private: rsa.RSAPrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# --- Mastodon's vectors ------------------------------------------------------------------

MASTODON_TEST_KEY = """-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAqIAYvNFGbZ5g4iiK6feSdXD4bDStFM58A7tHycYXaYtzZQpI
eHXAmaXuZzXIwtrP4N0gIk8JNwZvXj2UPS+S07t0V9wNK94he01LV5EMz/GN4eNn
FmDL64HIEuKLvV8TvgjbUPRD6Y5X0UpKi2ZIFLSb96Q5w0Z/k7ntpVKV52y8kz5F
jr/O/0JuHryZe0yItzJh8kzFfeMf0EXzfSnaKvT7P9jhgC6uTre+jXyvVZjiHDrn
qvvucdI3I7DRfXo1OqARBrLjy+TdseUAjNYJ+OuPRI1URIWQI01DCHqcohVu9+Ar
+BiCjFp3ua+XMuJvrvbD61d1Fvig/9nbBRR+8QIDAQABAoIBAAgySHnFWI6gItR3
fkfiqIm80cHCN3Xk1C6iiVu+3oBOZbHpW9R7vl9e/WOA/9O+LPjiSsQOegtWnVvd
RRjrl7Hj20VDlZKv5Mssm6zOGAxksrcVbqwdj+fUJaNJCL0AyyseH0x/IE9T8rDC
I1GH+3tB3JkhkIN/qjipdX5ab8MswEPu8IC4ViTpdBgWYY/xBcAHPw4xuL0tcwzh
FBlf4DqoEVQo8GdK5GAJ2Ny0S4xbXHUURzx/R4y4CCts7niAiLGqd9jmLU1kUTMk
QcXfQYK6l+unLc7wDYAz7sFEHh04M48VjWwiIZJnlCqmQbLda7uhhu8zkF1DqZTu
ulWDGQECgYEA0TIAc8BQBVab979DHEEmMdgqBwxLY3OIAk0b+r50h7VBGWCDPRsC
STD73fQY3lNet/7/jgSGwwAlAJ5PpMXxXiZAE3bUwPmHzgF7pvIOOLhA8O07tHSO
L2mvQe6NPzjZ+6iAO2U9PkClxcvGvPx2OBvisfHqZLmxC9PIVxzruQECgYEAzjM6
BTUXa6T/qHvLFbN699BXsUOGmHBGaLRapFDBfVvgZrwqYQcZpBBhesLdGTGSqwE7
gWsITPIJ+Ldo+38oGYyVys+w/V67q6ud7hgSDTW3hSvm+GboCjk6gzxlt9hQ0t9X
8vfDOYhEXvVUJNv3mYO60ENqQhILO4bQ0zi+VfECgYBb/nUccfG+pzunU0Cb6Dp3
qOuydcGhVmj1OhuXxLFSDG84Tazo7juvHA9mp7VX76mzmDuhpHPuxN2AzB2SBEoE
cSW0aYld413JRfWukLuYTc6hJHIhBTCRwRQFFnae2s1hUdQySm8INT2xIc+fxBXo
zrp+Ljg5Wz90SAnN5TX0AQKBgDaatDOq0o/r+tPYLHiLtfWoE4Dau+rkWJDjqdk3
lXWn/e3WyHY3Vh/vQpEqxzgju45TXjmwaVtPATr+/usSykCxzP0PMPR3wMT+Rm1F
rIoY/odij+CaB7qlWwxj0x/zRbwB7x1lZSp4HnrzBpxYL+JUUwVRxPLIKndSBTza
GvVRAoGBAIVBcNcRQYF4fvZjDKAb4fdBsEuHmycqtRCsnkGOz6ebbEQznSaZ0tZE
+JuouZaGjyp8uPjNGD5D7mIGbyoZ3KyG4mTXNxDAGBso1hrNDKGBOrGaPhZx8LgO
4VXJ+ybXrATf4jr8ccZYsZdFpOphPzz+j55Mqg5vac5P1XjmsGTb
-----END RSA PRIVATE KEY-----
"""
MASTODON_NOW = datetime(2023, 12, 20, 10, 0, tzinfo=UTC)
MASTODON_DATE = "Wed, 20 Dec 2023 10:00:00 GMT"
BOB_KEY = "https://remote.domain/users/bob#main-key"
SIG_GET = (
    "Z8ilar3J7bOwqZkMp7sL8sRs4B1FT+UorbmvWoE+A5UeoOJ3KBcUmbsh+k3wQwbP5gMNUrra9rEWabpasZGphLsbD"
    "xfbsWL3Cf0PllAc7c1c7AFEwnewtExI83/qqgEkfWc2z7UDutXc2NfgAx89Ox8DXU/fA2GG0jILjB6UpFyNugkY9"
    "rg6oI31UnvfVi3R7sr3/x8Ea3I9thPvqI2byF6cojknSpDAwYzeKdngX3TAQEGzFHz3SDWwyp3jeMWfwvVVbM38F"
    "xhvAnSumw7YwWW4L7M7h4M68isLimoT3yfCn2ucBVL5Dz8koBpYf/40w7QidClAwCafZQFC29yDOg=="
)
SIG_GET_QUERY = (
    "SDMa4r/DQYMXYxVgYO2yEqGWWUXugKjVuz0I8dniQAk+aunzBaF2aPu+4grBfawAshlx1Xytl8lhb0H2MllEz16/"
    "tKY7rUrb70MK0w8ohXgpb0qs3YvQgdj4X24L1x2MnkFfKHR/J+7TBlnivq0HZqXm8EIkPWLv+eQxu8fbowLwHIVv"
    "Rd/3t6FzvcfsE0UZKkoMEX02542MhwSif6cu7Ec/clsY9qgKahb9JVGOGS1op9Lvg/9y1mc8KCgD83U5IxVygYeY"
    "XaVQ6gixA9NgZiTCwEWzHM5ELm7w5hpdLFYxYOHg/3G3fiqJzpzNQAcCD4S4JxfE7hMI0IzVlNLT6A=="
)
SIG_STALE = (
    "G1NuJv4zgoZ3B/ZIjzDWZHK4RC+5pYee74q8/LJEMCWXhcnAomcb9YHaqk1QYfQvcBUIXw3UZ3Q9xO8F9y0i8G5m"
    "zJHfQ+OgHqCoJk8EmGwsUXJMh5s1S5YFCRt8TT12TmJZz0VMqLq85ubueSYBM7QtUE/FzFIVLvz4RysgXxaXQKzd"
    "nM6+gbUEEKdCURpXdQt2NXQhp4MAmZH3+0lQoR6VxdsK0hx0Ji2PNp1nuqFTlYqNWZazVdLBN+9rETLRmvGXknvg"
    "9jOxTTppBVWnkAIl26HtLS3wwFVvz4pJzi9OQDOvLziehVyLNbU61hky+oJ215e2HuKSe2hxHNl1MA=="
)
SIG_POST = (
    "gmhMjgMROGElJU3fpehV2acD5kMHeELi8EFP2UPHOdQ54H0r55AxIpji+J3lPe+N2qSb/4H1KXIh6f0lRu8TGSsu"
    "12OQmg5hiO8VA9flcA/mh9Lpk+qwlQZIPRqKP9xUEfqD+Z7ti5wPzDKrWAUK/7FIqWgcT/mlqB1R1MGkpMFc/q4C"
    "Is2OSNiWgA4K+Kp21oQxzC2kUuYob04gAZ7cyE/FTia5t08uv6lVYFdRsn4XNPn1MsHgFBwBMRG79ng3SyhoG4Pr"
    "qBEi5q2IdLq3zfre/M6He3wlCpyO2VJNdGVoTIzeZ0Zz8jUscPV3XtWUchpGclLGSaKaq/JyNZeiYQ=="
)
SIG_POST_DIGEST_UNSIGNED = (
    "CPD704CG8aCm8X8qIP8kkkiGp1qwFLk/wMVQHOGP0Txxan8c2DZtg/KK7eN8RG8tHx8br/yS2hJs51x4kXImYukG"
    "zNJd7ihE3T8lp+9RI1tCcdobTzr/VcVJHDFySdQkg266GCMijRQRZfNvqlJLiisr817PI+gNVBI5qV+vnVd1XhWC"
    "EZ+YSmMe8UqYARXAYNqMykTheojqGpTeTFGPUpTQA2Fmt2BipwIjcFDm2Hpihl2kB0MUS0x3zPmHDuadvzoBbN6m"
    "3usPDLgYrpALlh+wDs1dYMntcwdwawRKY1oE1XNtgOSum12wntDq3uYL4gya2iPdcw3c929b4koUzw=="
)
HELLO_DIGEST = "SHA-256=ZOyIygCyaOW6GjVnihtTFtIS9PNmskdyMlNKiuyjfzw="


def mastodon_public_pem() -> str:
    key = serialization.load_pem_private_key(MASTODON_TEST_KEY.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return public_pem(key)


def mastodon_signature(signature: str, headers: str = "date host (request-target)") -> str:
    return f'keyId="{BOB_KEY}",algorithm="rsa-sha256",headers="{headers}",signature="{signature}"'


def mastodon_get(target: str, signature: str, date: str = MASTODON_DATE) -> RequestParts:
    return request(
        "GET",
        target,
        {"Host": "www.example.com", "Date": date, "Signature": mastodon_signature(signature)},
    )


def mastodon_post(target: str, body: bytes, signature: str, headers: str) -> RequestParts:
    return request(
        "POST",
        target,
        {
            "Host": "www.example.com",
            "Date": MASTODON_DATE,
            "Digest": HELLO_DIGEST,
            "Signature": mastodon_signature(signature, headers),
        },
        body,
    )


@pytest.mark.parametrize(
    ("target", "signature", "valid"),
    [
        ("/activitypub/success", SIG_GET, True),
        ("/activitypub/success?foo=42", SIG_GET_QUERY, True),
        # Mastodon's compatibility quirk: the query left out of the signed target.
        ("/activitypub/success?foo=42", SIG_GET, True),
        ("/activitypub/success?foo=43", SIG_GET_QUERY, False),
        ("/activitypub/alternative-path", SIG_GET, False),
    ],
)
def test_mastodon_vectors__signed_get(target: str, signature: str, valid: bool) -> None:
    parsed = parse_signature(mastodon_get(target, signature), now=MASTODON_NOW)
    assert parsed.key_id == BOB_KEY
    assert parsed.verify(mastodon_public_pem()) is valid


def test_mastodon_vectors__request_older_than_12_hours__is_refused() -> None:
    req = mastodon_get("/activitypub/success", SIG_STALE, date="Wed, 18 Dec 2023 10:00:00 GMT")
    with pytest.raises(SignatureError, match="12 hours"):
        parse_signature(req, now=MASTODON_NOW)


def test_mastodon_vectors__unparsable_date__is_refused() -> None:
    with pytest.raises(SignatureError, match="Date"):
        parse_signature(mastodon_get("/activitypub/success", SIG_GET, "wrong date"), MASTODON_NOW)


def test_mastodon_vectors__signed_post() -> None:
    req = mastodon_post(
        "/activitypub/success", b"Hello world", SIG_POST, "host date digest (request-target)"
    )
    assert parse_signature(req, now=MASTODON_NOW).verify(mastodon_public_pem())


def test_mastodon_vectors__post_with_unsigned_digest__is_refused() -> None:
    req = mastodon_post(
        "/activitypub/success",
        b"Hello world",
        SIG_POST_DIGEST_UNSIGNED,
        "host date (request-target)",
    )
    with pytest.raises(SignatureError, match="Digest"):
        parse_signature(req, now=MASTODON_NOW)


def test_mastodon_vectors__tampered_body__is_a_digest_mismatch() -> None:
    req = mastodon_post(
        "/activitypub/success", b"Hello world!", SIG_POST, "host date digest (request-target)"
    )
    with pytest.raises(DigestMismatch):
        parse_signature(req, now=MASTODON_NOW)


def test_mastodon_vectors__tampered_path__fails() -> None:
    req = mastodon_post(
        "/activitypub/alternative-path",
        b"Hello world",
        SIG_POST,
        "host date digest (request-target)",
    )
    assert not parse_signature(req, now=MASTODON_NOW).verify(mastodon_public_pem())


def test_mastodon_vectors__get_signature_replayed_as_post__is_refused() -> None:
    req = request(
        "POST",
        "/activitypub/success",
        {
            "Host": "www.example.com",
            "Date": MASTODON_DATE,
            "Signature": mastodon_signature(SIG_GET),
        },
        b"",
    )
    with pytest.raises(SignatureError):
        parse_signature(req, now=MASTODON_NOW)


def test_mastodon_documentation__signing_string() -> None:
    # docs.joinmastodon.org/spec/security, "Creating HTTP signatures"
    req = request(
        "GET",
        "/users/username/outbox",
        {"Host": "mastodon.example", "Date": "18 Dec 2019 10:08:46 GMT"},
    )
    assert cavage_signing_string(req, ["(request-target)", "host", "date"], {}) == (
        "(request-target): get /users/username/outbox\n"
        "host: mastodon.example\n"
        "date: 18 Dec 2019 10:08:46 GMT"
    )


# --- RFC 9421 vectors --------------------------------------------------------------------

TEST_KEY_RSA_PSS_PUBLIC = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----
"""
TEST_KEY_RSA_PUBLIC = """-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAhAKYdtoeoy8zcAcR874L8cnZxKzAGwd7v36APp7Pv6Q2jdsPBRrw
WEBnez6d0UDKDwGbc6nxfEXAy5mbhgajzrw3MOEt8uA5txSKobBpKDeBLOsdJKFq
MGmXCQvEG7YemcxDTRPxAleIAgYYRjTSd/QBwVW9OwNFhekro3RtlinV0a75jfZg
kne/YiktSvLG34lw2zqXBDTC5NHROUqGTlML4PlNZS5Ri2U4aCNx2rUPRcKIlE0P
uKxI4T+HIaFpv8+rdV6eUgOrB2xeI1dSFFn/nnv5OoZJEIB+VmuKn3DCUcCZSFlQ
PSXSfBDiUGhwOw76WuSSsf1D4b/vLoJ10wIDAQAB
-----END RSA PUBLIC KEY-----
"""
CONTENT_DIGEST = (
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+T"
    "aPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
)
RFC_BODY = b'{"hello": "world"}'
RFC_CREATED = datetime.fromtimestamp(1618884473, UTC)


def rfc_test_request(**extra: str) -> RequestParts:
    """The RFC's `test-request` message."""
    return request(
        "POST",
        "/foo?param=Value&Pet=dog",
        {
            "Host": "example.com",
            "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
            "Content-Type": "application/json",
            "Content-Digest": CONTENT_DIGEST,
            "Content-Length": "18",
            **extra,
        },
        RFC_BODY,
    )


def inner_list(signature_input: str) -> InnerList:
    (value,) = parse_dictionary(signature_input).values()
    assert isinstance(value, InnerList)
    return value


def signature_bytes(signature: str) -> bytes:
    (value,) = parse_dictionary(signature).values()
    assert isinstance(value.value, bytes)  # type: ignore[union-attr]
    return value.value  # type: ignore[union-attr]


def verifies(pem: str, alg: str, base: bytes, signature: str) -> bool:
    return VerifiableSignature("rfc9421", "k", signature_bytes(signature), [(alg, base)]).verify(
        pem
    )


def test_rfc9421_b21__minimal_signature_rsa_pss_sha512() -> None:
    inner = inner_list(
        'sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"'
    )
    base = signature_base(rfc_test_request(), inner)
    assert base == (
        b'"@signature-params": ();created=1618884473;keyid="test-key-rsa-pss"'
        b';nonce="b3k2pp5k7z-50gnwp.yemd"'
    )
    signature = (
        "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it"
        "++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbz"
        "R72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5W"
        "Sb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:"
    )
    assert verifies(TEST_KEY_RSA_PSS_PUBLIC, RSA_PSS_SHA512, base, signature)
    assert not verifies(TEST_KEY_RSA_PSS_PUBLIC, RSA_PSS_SHA512, base + b" ", signature)


def test_rfc9421_b22__selective_components_rsa_pss_sha512() -> None:
    inner = inner_list(
        'sig-b22=("@authority" "content-digest" "@query-param";name="Pet");created=1618884473'
        ';keyid="test-key-rsa-pss";tag="header-example"'
    )
    base = signature_base(rfc_test_request(), inner)
    assert base.decode() == (
        '"@authority": example.com\n'
        f'"content-digest": {CONTENT_DIGEST}\n'
        '"@query-param";name="Pet": dog\n'
        '"@signature-params": ("@authority" "content-digest" "@query-param";name="Pet")'
        ';created=1618884473;keyid="test-key-rsa-pss";tag="header-example"'
    )
    signature = (
        "sig-b22=:LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CD"
        "fKtjvuJyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1r"
        "LEuEfY17SARYhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ"
        "99PZfB4jY3I5rSV2DSBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==:"
    )
    assert verifies(TEST_KEY_RSA_PSS_PUBLIC, RSA_PSS_SHA512, base, signature)


def test_rfc9421_b23__full_coverage_rsa_pss_sha512() -> None:
    inner = inner_list(
        'sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest"'
        ' "content-length");created=1618884473;keyid="test-key-rsa-pss"'
    )
    base = signature_base(rfc_test_request(), inner)
    assert base.decode() == (
        '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
        '"@method": POST\n'
        '"@path": /foo\n'
        '"@query": ?param=Value&Pet=dog\n'
        '"@authority": example.com\n'
        '"content-type": application/json\n'
        f'"content-digest": {CONTENT_DIGEST}\n'
        '"content-length": 18\n'
        '"@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type"'
        ' "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"'
    )
    signature = (
        "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFke"
        "Gt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7Ks"
        "LNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF"
        "8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:"
    )
    assert verifies(TEST_KEY_RSA_PSS_PUBLIC, RSA_PSS_SHA512, base, signature)


CLIENT_SIG1 = (
    "sig1=:LAH8BjcfcOcLojiuOBFWn0P5keD3xAOuJRGziCLuD8r5MW9S0RoXXLzLSRfGY/3SF8kVIkHjE13SEFdTo4Af/"
    "fJ/Pu9wheqoLVdwXyY/UkBIS1M8Brc8IODsn5DFIrG0IrburbLi0uCc+E2ZIIb6HbUJ+o+jP58JelMTe0QE3IpWINTE"
    "zpxjqDf5/Df+InHCAkQCTuKsamjWXUpyOT1Wkxi7YPVNOjW4MfNuTZ9HdbD2Tr65+BXeTG9ZS/9SWuXAc+BZ8WyPz0Q"
    "Rz//ec3uWXd7bYYODSjRAxHqX+S1ag3LZElYyUKaAIjZ8MGOt4gXEwCSLDv/zqxZeWLj/PDkn6w==:"
)
B23_INPUT = (
    'sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest"'
    ' "content-length");created=1618884473;keyid="test-key-rsa-pss"'
)
B23_SIGNATURE = (
    "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFke"
    "Gt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7Ks"
    "LNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF"
    "8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:"
)


def test_rfc9421_b23__signed_post_verifies_end_to_end() -> None:
    # Given the RFC's test request carrying its full-coverage signature
    headers = {"Signature-Input": B23_INPUT, "Signature": B23_SIGNATURE}
    req = rfc_test_request(**headers)
    # When it is checked and verified like an inbox delivery
    parsed = parse_signature(req, now=RFC_CREATED)
    # Then it passes, and the algorithm left open resolved to RSA-PSS
    assert parsed.scheme == "rfc9421" and parsed.key_id == "test-key-rsa-pss"
    assert parsed.verify(TEST_KEY_RSA_PSS_PUBLIC)
    # And a changed body is caught by the Content-Digest before any key is fetched
    tampered = RequestParts(**{**req.__dict__, "body": b'{"hello": "w0rld"}'})
    with pytest.raises(DigestMismatch):
        parse_signature(tampered, now=RFC_CREATED)
    # And a changed method fails the signature
    as_put = RequestParts(**{**req.__dict__, "method": "PUT"})
    assert not parse_signature(as_put, now=RFC_CREATED).verify(TEST_KEY_RSA_PSS_PUBLIC)
    # And a replay 13 hours later is refused
    with pytest.raises(SignatureError, match="12 hours"):
        parse_signature(req, now=RFC_CREATED + timedelta(hours=13))


def test_rfc9421_section_4_3__proxy_signature_rsa_v1_5_sha256() -> None:
    base = (
        '"signature";key="sig1": ' + CLIENT_SIG1[len("sig1=") :] + "\n"
        '"forwarded": for=192.0.2.123\n'
        '"@signature-params": ("signature";key="sig1" "forwarded");created=1618884480'
        ';expires=1618884540;keyid="test-key-rsa";alg="rsa-v1_5-sha256"'
    ).encode()
    signature = (
        "proxy_sig=:G1WLTL4/9PGSKEQbSAMypZNk+I2dpLJ6qvl2JISahlP31OO/QEUd8/HdO2O7vYLi5k3JIiAK3UPK4U"
        "+kvJZyIUidsiXlzRI+Y2se3SGo0D8dLfhG95bKr6ukYXl60QHpsGRTfSiwdtvYKXGpKNrMlISJYd+oGrGRyI9gbC"
        "y0aFhc6I/okIMLeK4g9PgzpC3YTwhUQ98KIBNLWHgREfBgJxjPbxFlsgJ9ykPviLj8GKJ81HwsK3XM9P7WaS7fMG"
        "Ot8h1kSqgkZQB9YqiIo+WhHvJa7iPy8QrYFKzx9BBEY6AwfStZAsXXz3LobZseyxsYcLJLs8rY0wVA9NPsxKrHGA==:"
    )
    assert verifies(TEST_KEY_RSA_PUBLIC, RSA_V1_5_SHA256, base, signature)
    assert not verifies(TEST_KEY_RSA_PUBLIC, RSA_PSS_SHA512, base, signature)


# --- our signer against our verifier ------------------------------------------------------

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def received(outgoing: httpx.Request, body: bytes | None = None) -> RequestParts:
    """The request as the receiving server sees it (optionally with a different body)."""
    parts = RequestParts.of_httpx(outgoing)
    return RequestParts(**{**parts.__dict__, "body": parts.body if body is None else body})


def outgoing_post(body: bytes = b'{"type": "Follow"}') -> httpx.Request:
    return httpx.Request("POST", "https://remote.example/users/ana/inbox", content=body)


@pytest.mark.parametrize("signer", [sign_request, sign_request_rfc9421])
def test_sign_then_verify__round_trip(signer) -> None:  # type: ignore[no-untyped-def]
    req = outgoing_post()
    signer(req, "https://kith.test/users/bo#main-key", KEY, now=NOW)
    parsed = parse_signature(received(req), now=NOW + timedelta(minutes=5))
    assert parsed.key_id == "https://kith.test/users/bo#main-key"
    assert parsed.verify(public_pem(KEY))
    assert not parsed.verify(public_pem(OTHER_KEY))


def test_sign_request__is_mastodon_shaped() -> None:
    req = outgoing_post()
    sign_request(req, "https://kith.test/users/bo#main-key", KEY, now=NOW)
    assert req.headers["Date"] == "Sun, 01 Jun 2025 12:00:00 GMT"
    assert req.headers["Digest"].startswith("SHA-256=")
    assert 'headers="(request-target) host date digest"' in req.headers["Signature"]
    assert 'algorithm="rsa-sha256"' in req.headers["Signature"]


@pytest.mark.parametrize("signer", [sign_request, sign_request_rfc9421])
def test_attack__body_altered_after_signing(signer) -> None:  # type: ignore[no-untyped-def]
    req = outgoing_post(b'{"type": "Follow"}')
    signer(req, "k", KEY, now=NOW)
    with pytest.raises(DigestMismatch):
        parse_signature(received(req, body=b'{"type": "Block"}'), now=NOW)


@pytest.mark.parametrize("signer", [sign_request, sign_request_rfc9421])
def test_attack__replay_with_a_stale_date(signer) -> None:  # type: ignore[no-untyped-def]
    req = outgoing_post()
    signer(req, "k", KEY, now=NOW - timedelta(hours=12, minutes=1))
    with pytest.raises(SignatureError):
        parse_signature(received(req), now=NOW)


@pytest.mark.parametrize("signer", [sign_request, sign_request_rfc9421])
def test_attack__date_far_in_the_future(signer) -> None:  # type: ignore[no-untyped-def]
    req = outgoing_post()
    signer(req, "k", KEY, now=NOW + timedelta(hours=2))
    with pytest.raises(SignatureError, match="future"):
        parse_signature(received(req), now=NOW)


def test_attack__date_swapped_after_signing__fails() -> None:
    req = outgoing_post()
    sign_request(req, "k", KEY, now=NOW - timedelta(hours=11))
    req.headers["Date"] = "Sun, 01 Jun 2025 12:00:00 GMT"  # freshened by a replayer
    assert not parse_signature(received(req), now=NOW).verify(public_pem(KEY))


def test_unsigned_request__is_refused() -> None:
    with pytest.raises(SignatureError, match="not signed"):
        parse_signature(received(outgoing_post()), now=NOW)


def test_unknown_algorithm__is_refused() -> None:
    req = outgoing_post()
    sign_request(req, "k", KEY, now=NOW)
    req.headers["Signature"] = req.headers["Signature"].replace("rsa-sha256", "hmac-sha256")
    with pytest.raises(SignatureError, match="algorithm"):
        parse_signature(received(req), now=NOW)
