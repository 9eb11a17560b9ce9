"""The outbound HTTP client refuses what an SSRF attack needs: private and loopback addresses
(in every IPv6 disguise), redirects to them, schemes other than http(s), endless or slow
bodies — and works against a real local server when the settings allow it.

Addresses outside loopback are only ever given to a recording backend that refuses to open
anything, so no test sends a packet off this machine even if the guard were broken."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import httpcore
import pytest

from kith.config import Settings
from kith.net import (
    FetchTimedOut,
    OutboundHttp,
    ResponseTooLarge,
    TooManyRedirects,
    UnsafeUrl,
    is_public_address,
)
from tests.federation.local_http import endless, local_server, redirect, respond


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Records where a connection would go and opens nothing."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kw: Any) -> Any:
        self.attempts.append((host, port))
        raise httpcore.ConnectError("recording backend: not connecting")


def make_settings(**kw: Any) -> Settings:
    return Settings(domain="kith.test", secret_key="x", **kw)


REFUSED = [
    "127.0.0.1",  # loopback
    "127.10.0.1",
    "10.1.2.3",  # private
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # link-local: the cloud metadata address
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # unspecified
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",  # link-local
    "fc00::1",  # unique local
    "fd12:3456::1",
    "fec0::1",  # site-local
    "ff02::1",  # multicast
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",  # documentation
]
PUBLIC = ["93.184.216.34", "2606:4700:4700::1111", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"]


@pytest.mark.parametrize("address", REFUSED)
def test_address_class__non_public__is_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_address_class__public__is_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", REFUSED)
async def test_fetch__to_a_non_public_address__is_refused_before_connecting(address: str) -> None:
    # Given the default settings (nothing local allowed)
    recorder = RecordingBackend()
    http = OutboundHttp(make_settings(), inner_backend=recorder)
    host = f"[{address}]" if ":" in address else address
    # When something asks for a URL on that address
    with pytest.raises(UnsafeUrl):
        await http.get(f"https://{host}/latest/meta-data/")
    # Then no connection was even attempted
    assert recorder.attempts == []
    await http.aclose()


async def test_fetch__name_resolving_to_loopback__is_refused() -> None:
    # Given a real server on loopback and a name the real resolver maps to it
    async with local_server() as server:
        server.routes["/"] = respond(200, b"internal secrets")
        http = OutboundHttp(make_settings())
        # When the name is fetched
        with pytest.raises(UnsafeUrl, match="not a public address"):
            await http.get(f"https://localhost:{server.port}/")
        await http.aclose()
    # Then the server never saw a request
    assert server.requests == []


async def test_fetch__connects_to_the_address_it_checked__not_to_the_name() -> None:
    # Given a name allowed only through the address it resolves to
    recorder = RecordingBackend()
    http = OutboundHttp(
        make_settings(federation_allowed_hosts="127.0.0.0/8"), inner_backend=recorder
    )
    # When it is fetched
    with pytest.raises(Exception):  # noqa: B017 (the recorder refuses to connect)
        await http.get("https://localhost:8123/")
    # Then the connection went to the checked IP: a second DNS answer can't change it
    assert recorder.attempts and all(host != "localhost" for host, _ in recorder.attempts)
    assert {host for host, _ in recorder.attempts} <= {"127.0.0.1", "::1"}
    await http.aclose()


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/", "/relative"]
)
async def test_fetch__other_schemes__are_refused(url: str) -> None:
    http = OutboundHttp(make_settings(federation_allow_private=True))
    with pytest.raises(UnsafeUrl):
        await http.get(url)
    await http.aclose()


async def test_fetch__plain_http__only_for_allowed_hosts() -> None:
    recorder = RecordingBackend()
    http = OutboundHttp(make_settings(), inner_backend=recorder)
    with pytest.raises(UnsafeUrl, match="plain http"):
        await http.get("http://93.184.216.34/")
    assert recorder.attempts == []
    await http.aclose()


async def test_fetch__allow_private__reaches_a_local_server_with_kiths_user_agent() -> None:
    async with local_server() as server:
        server.routes["/hello"] = respond(200, b"hi", {"Content-Type": "text/plain"})
        http = OutboundHttp(make_settings(federation_allow_private=True))
        fetched = await http.get(f"{server.base}/hello")
        await http.aclose()
    assert fetched.status == 200 and fetched.content == b"hi"
    assert server.requests[0].headers["user-agent"] == "Kith/0.1.0 (+http://kith.test/)"


async def test_fetch__allowed_host_list__allows_only_the_listed_host() -> None:
    # Given two local servers and only the first one's host:port allowed
    async with local_server("127.0.0.1") as listed, local_server("127.0.0.2") as other:
        listed.routes["/"] = respond(200, b"listed")
        other.routes["/"] = respond(200, b"other")
        http = OutboundHttp(make_settings(federation_allowed_hosts=listed.authority))
        # Then the listed one answers and the other is refused
        assert (await http.get(f"{listed.base}/")).content == b"listed"
        with pytest.raises(UnsafeUrl):
            await http.get(f"{other.base}/")
        await http.aclose()
    assert other.requests == []


async def test_fetch__redirect_to_a_private_address__is_refused() -> None:
    # Given an allowed server that redirects to an internal one
    async with local_server("127.0.0.1") as public, local_server("127.0.0.2") as internal:
        internal.routes["/admin"] = respond(200, b"internal secrets")
        public.routes["/actor"] = redirect(f"{internal.base}/admin")
        http = OutboundHttp(make_settings(federation_allowed_hosts=public.authority))
        # When the allowed URL is fetched
        with pytest.raises(UnsafeUrl):
            await http.get(f"{public.base}/actor")
        await http.aclose()
    # Then the redirect was checked again and the internal server never asked
    assert len(public.requests) == 1 and internal.requests == []


async def test_fetch__redirects__are_followed_a_few_times_only() -> None:
    async with local_server() as server:
        server.routes["/a"] = redirect("/b")
        server.routes["/b"] = respond(200, b"landed")
        server.routes["/loop"] = redirect("/loop")
        http = OutboundHttp(make_settings(federation_allow_private=True))
        fetched = await http.get(f"{server.base}/a")
        assert fetched.content == b"landed" and fetched.url.endswith("/b")
        with pytest.raises(TooManyRedirects):
            await http.get(f"{server.base}/loop")
        await http.aclose()
    assert sum(r.target == "/loop" for r in server.requests) == 4  # first try + 3 redirects


async def test_fetch__endless_body__stops_at_the_size_cap() -> None:
    async with local_server() as server:
        server.routes["/big"] = endless()
        server.routes["/announced"] = respond(200, b"x", {"Content-Length": "999999999"})
        http = OutboundHttp(
            make_settings(federation_allow_private=True, federation_max_response_bytes=300_000)
        )
        with pytest.raises(ResponseTooLarge):
            await http.get(f"{server.base}/big")
        with pytest.raises(ResponseTooLarge, match="announces"):
            await http.get(f"{server.base}/announced")
        await http.aclose()


async def test_fetch__body_that_drips_forever__times_out_in_total() -> None:
    # Given a server that sends a byte every 0.1 s: no read ever times out on its own
    async with local_server() as server:
        server.routes["/slow"] = endless(b"x", pause=0.1)
        http = OutboundHttp(
            make_settings(federation_allow_private=True, federation_fetch_seconds=1.0)
        )
        started = time.monotonic()
        with pytest.raises(FetchTimedOut):
            await http.get(f"{server.base}/slow")
        await http.aclose()
    # Then the total deadline cut it
    assert time.monotonic() - started < 3
