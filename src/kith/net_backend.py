"""httpcore's network backend on plain asyncio: the streams under `kith.net`'s client.

httpcore 1.0 ships an anyio backend and a trio one, no asyncio one. Under anyio every read
and write opens a cancel scope for its timeout and goes through anyio's stream wrappers, and
the connection pool's check of an idle connection builds anyio's whole table of socket
attributes (a `getpeername` call included) each time: about a tenth of a delivery's CPU. Here
a read waits on one future with one timer handle, a write is a transport write, and the
attribute lookups go straight to the transport. Works under asyncio's own loop and uvloop.

The address guard is not here: `net.GuardedBackend` resolves and checks, then hands this
backend the checked address literal to connect to (a literal is never resolved again)."""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore

# Reading pauses when this much has arrived and not been read yet (the client reads a
# response as it comes, so this bounds memory, not throughput).
READ_BUFFER_HIGH_WATER = 256 * 1024


def _kernel_has_data(sock: Any) -> bool:
    """Whether the socket has something to read (or is gone) right now, without reading."""
    fd = sock.fileno() if sock is not None else -1
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _StreamProtocol(asyncio.Protocol):
    """Buffers what arrives and wakes the one reader or writer that waits for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: Exception | None = None
        self.closed = False
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.reading_paused and len(self.buffer) > READ_BUFFER_HIGH_WATER:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport: HTTP/1.1 never writes after the peer's EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.eof = True
        if exc is not None:
            self.error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def _wait(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None], seconds: float | None
) -> None:
    """Wait for `waiter`, or raise TimeoutError after `seconds` (one timer handle, no task
    and no cancel scope: asyncio.timeout would cost a context manager per read)."""
    if seconds is None:
        await waiter
        return
    handle = loop.call_later(seconds, _expire, waiter)
    try:
        await waiter
    finally:
        handle.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection, as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, protocol: _StreamProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        protocol.transport = transport  # after TLS: the TLS transport pauses reading

    async def read(
        self,
        max_bytes: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> bytes:
        proto = self._protocol
        if not proto.buffer and not proto.eof:
            if proto.read_waiter is not None:
                raise httpcore.ReadError("another read is already waiting on this connection")
            waiter = proto.read_waiter = proto.loop.create_future()
            try:
                await _wait(proto.loop, waiter, timeout)
            except TimeoutError as exc:
                raise httpcore.ReadTimeout("read timed out") from exc
            finally:
                proto.read_waiter = None
        if proto.buffer:
            data = bytes(proto.buffer[:max_bytes])
            del proto.buffer[:max_bytes]
            if proto.reading_paused and len(proto.buffer) <= READ_BUFFER_HIGH_WATER // 4:
                proto.reading_paused = False
                self._transport.resume_reading()
            return data
        if proto.error is not None:
            raise httpcore.ReadError(str(proto.error) or repr(proto.error)) from proto.error
        return b""  # the peer closed the connection

    async def write(
        self,
        buffer: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> None:
        if not buffer:
            return
        proto = self._protocol
        if proto.closed or self._transport.is_closing():
            raise httpcore.WriteError(repr(proto.error) if proto.error else "connection closed")
        self._transport.write(buffer)
        if proto.writing_paused:  # the kernel's buffer is full: wait for it to drain
            waiter = proto.drain_waiter = proto.loop.create_future()
            try:
                await _wait(proto.loop, waiter, timeout)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout("write timed out") from exc
            finally:
                proto.drain_waiter = None
            if proto.closed and proto.writing_paused:
                raise httpcore.WriteError(repr(proto.error) if proto.error else "closed")

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        loop = self._protocol.loop
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport,
                    self._protocol,
                    ssl_context,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=timeout,
                )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
        if transport is None:  # pragma: no cover - the connection closed meanwhile
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        return AsyncioStream(cast(asyncio.Transport, transport), self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Buffered data or an end seen by the loop, else whatever the kernel holds.
            proto = self._protocol
            if proto.buffer or proto.eof or proto.closed:
                return True
            return _kernel_has_data(self._transport.get_extra_info("socket"))
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connects with the running loop's `create_connection` (asyncio's or uvloop's)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        protocol = _StreamProtocol(loop)
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.create_connection(
                    lambda: protocol, host, port, local_addr=local
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets it too; uvloop may not: a request's head and body go out at once.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(cast(asyncio.Transport, transport), protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by this backend")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
