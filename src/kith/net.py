"""The one outbound HTTP client: SSRF-safe, size- and time-bounded.

Every request Kith makes to another server (actors, keys, objects, deliveries, WebFinger,
NodeInfo, media) goes through `OutboundHttp`. The guard sits below httpx, in the network
backend: the host name is resolved once, every address is checked, and the connection is made
to the checked address itself — so a name that resolves to a public address for the check and
to 127.0.0.1 for the connection (DNS rebinding) cannot slip through; the connection itself
is a plain asyncio one (`net_backend.AsyncioBackend`). Redirects are followed by hand (at
most `MAX_REDIRECTS`), each one through the same guard. Bodies are streamed and cut at a
size cap, and the whole exchange, redirects included, runs under one deadline.

Loopback and private addresses, and plain `http://`, are refused unless the settings allow
them (`federation_allow_private`, or a host or network in `federation_allowed_hosts`): tests
and local federation run on 127.0.0.x and need that, production must not."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

try:
    import sniffio  # noqa: F401
except ImportError:
    # httpcore imports sniffio for every lock it sets up, several times per request; without
    # the package each attempt searches the whole path again (~0.1 ms). A None entry fails it
    # at once, with the same result.
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

from kith import __version__
from kith.config import Settings
from kith.net_backend import AsyncioBackend

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 3
CONNECT_SECONDS = 5.0
READ_SECONDS = 10.0
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Ranges `ipaddress` does not already call private/reserved on every Python 3.11 patch level.
_EXTRA_FORBIDDEN = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/128",
        "::/96",  # deprecated IPv4-compatible addresses
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, …)
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # old site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class FetchError(Exception):
    """An outbound request that did not give a usable answer; the message says why."""


class UnsafeUrl(FetchError):
    """The URL's scheme, host or resolved address is not allowed."""


class TooManyRedirects(FetchError):
    """More than MAX_REDIRECTS redirects."""


class ResponseTooLarge(FetchError):
    """The response body passed the size cap (reading stopped there)."""


class FetchTimedOut(FetchError):
    """The exchange (connect, redirects, body) did not finish in time."""


class FetchFailed(FetchError):
    """Connection refused or reset, bad TLS, malformed response…"""


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses (never loopback, private,
    link-local — the cloud metadata address 169.254.169.254 is one —, multicast, reserved,
    or an IPv6 form of any of those)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL or ip.teredo is not None:
            return False
        inner = embedded_ipv4(ip)
        if inner is not None:
            return is_public_address(inner)
        if ip.is_site_local:
            return False
    if any(ip.version == net.version and ip in net for net in _EXTRA_FORBIDDEN):
        return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which hosts and addresses outbound requests may reach, and over which schemes."""

    allow_private: bool = False
    allowed: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        return cls(settings.federation_allow_private, tuple(settings.federation_allowed_host_list))

    def _networks(self) -> Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        for entry in self.allowed:
            try:
                yield ipaddress.ip_network(entry.strip("[]"), strict=False)
            except ValueError:
                continue

    def host_is_listed(self, host: str, port: int | None) -> bool:
        """The host (name or literal, with or without its port) is on the allow-list."""
        host = host.lower().strip("[]")
        names = {host, f"{host}:{port}"} if port else {host}
        if names & set(self.allowed):
            return True
        ip = _literal(host)
        return ip is not None and self.address_is_listed(ip)

    def address_is_listed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self._networks())

    def may_connect(self, host: str, port: int, ip: IPAddress) -> bool:
        """Whether a connection for `host` may go to the resolved address `ip`."""
        if self.allow_private or self.host_is_listed(host, port) or self.address_is_listed(ip):
            return True
        return is_public_address(ip)

    def check_url(self, url: str) -> None:
        """Refuse URLs that are not http(s), have no host, or use plain http to a host that
        is not allowed to be local."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsafeUrl(f"only http(s) URLs with a host can be fetched: {url!r}")
        if parts.username is not None or parts.password is not None:
            raise UnsafeUrl("URLs with credentials are not fetched")
        try:
            port = parts.port
        except ValueError as exc:
            raise UnsafeUrl(f"bad port in {url!r}") from exc
        if parts.scheme == "http" and not (
            self.allow_private or self.host_is_listed(parts.hostname, port)
        ):
            raise UnsafeUrl(f"plain http is only used for allow-listed hosts: {url!r}")


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address check: resolve, check, connect to the
    checked address (never to the name, which could resolve differently a second time)."""

    def __init__(
        self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.policy = policy
        self.inner = inner or AsyncioBackend()

    async def resolve(self, host: str, port: int, seconds: float | None) -> list[IPAddress]:
        literal = _literal(host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), seconds
            )
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        found: list[IPAddress] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if ip not in found:
                found.append(ip)
        return found

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.resolve(host, port, timeout)
        allowed = [ip for ip in addresses if self.policy.may_connect(host, port, ip)]
        if not allowed:
            shown = ", ".join(str(ip) for ip in addresses) or "nothing"
            raise UnsafeUrl(f"{host} resolves to {shown}: not a public address")
        error: Exception | None = None
        for ip in allowed[:4]:
            try:
                return await self.inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeUrl("unix sockets are not reachable from outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose every connection passes the guard."""

    def __init__(self, backend: GuardedBackend, limits: httpx.Limits) -> None:
        # One TLS context for both (loading the CA bundle takes ~40 ms of CPU).
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


@dataclass
class Fetched:
    """A response read in full (within the cap): final URL after redirects, status,
    headers, body."""

    url: str
    status: int
    headers: httpx.Headers
    content: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


Signer = Callable[[httpx.Request], None]


def user_agent(settings: Settings) -> str:
    return f"Kith/{__version__} (+{settings.base_url}/)"


class OutboundHttp:
    """The shared client (one per process, `Runtime.http`) with Kith's outbound rules."""

    def __init__(
        self, settings: Settings, *, inner_backend: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.settings = settings
        self.policy = AddressPolicy.from_settings(settings)
        self.max_bytes = settings.federation_max_response_bytes
        self.total_seconds = settings.federation_fetch_seconds
        transport = GuardedTransport(
            GuardedBackend(self.policy, inner_backend),
            httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        self.client = httpx.AsyncClient(
            transport=transport,
            trust_env=False,  # an environment proxy would bypass the address check
            follow_redirects=False,
            timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS, pool=CONNECT_SECONDS),
            headers={"User-Agent": user_agent(settings)},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def get(self, url: str, **kw: Any) -> Fetched:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> Fetched:
        return await self.request("POST", url, **kw)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        sign: Signer | None = None,
        max_bytes: int | None = None,
        total_seconds: float | None = None,
    ) -> Fetched:
        """Send one request and read the answer, following redirects of GET/HEAD (each one
        checked again, and signed again when `sign` is given). Raises FetchError."""
        try:
            async with asyncio.timeout(total_seconds or self.total_seconds):
                return await self._follow(method, url, headers, content, sign, max_bytes)
        except TimeoutError as exc:
            raise FetchTimedOut(f"{method} {url} took too long") from exc

    async def _follow(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        content: bytes | None,
        sign: Signer | None,
        max_bytes: int | None,
    ) -> Fetched:
        for _ in range(MAX_REDIRECTS + 1):
            self.policy.check_url(url)
            request = self.client.build_request(method, url, headers=headers, content=content)
            if sign is not None:
                sign(request)
            fetched = await self._send(request, max_bytes or self.max_bytes)
            location = fetched.headers.get("location")
            if (
                fetched.status not in REDIRECT_STATUSES
                or not location
                or method not in ("GET", "HEAD")
            ):
                return fetched
            url = urljoin(url, location)
        raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects from {method} {url}")

    async def _send(self, request: httpx.Request, max_bytes: int) -> Fetched:
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise FetchTimedOut(f"{request.method} {request.url}: {exc!r}") from exc
        except httpx.HTTPError as exc:
            if isinstance(exc.__cause__, FetchError):
                raise exc.__cause__ from exc
            raise FetchFailed(f"{request.method} {request.url}: {exc!r}") from exc
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ResponseTooLarge(f"{request.url} announces {declared} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise ResponseTooLarge(f"{request.url} sent more than {max_bytes} bytes")
        except httpx.TimeoutException as exc:
            raise FetchTimedOut(f"{request.method} {request.url}: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{request.method} {request.url}: {exc!r}") from exc
        finally:
            await response.aclose()
        return Fetched(str(request.url), response.status_code, response.headers, bytes(body))
