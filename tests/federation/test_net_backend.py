"""The asyncio network backend under the outbound client: reads and writes time out on their
own, a closed or reset connection reads as such, a large answer arrives whole and in order
however slowly it is read, and the whole client works on uvloop (the loop `kith serve` and
`kith worker` run on) as on asyncio's own loop — the address guard included."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpcore
import pytest
import uvloop

from kith.config import Settings
from kith.net import OutboundHttp, UnsafeUrl
from kith.net_backend import READ_BUFFER_HIGH_WATER, AsyncioBackend
from tests.federation.local_http import local_server, respond

Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_peer(peer: Peer) -> AsyncIterator[int]:
    """A loopback TCP server running `peer` for each connection; yields its port."""
    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_read__from_a_silent_peer__times_out_on_its_own() -> None:
    # Given a peer that accepts and never says anything
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_peer(silent) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        started = time.monotonic()
        # When a read waits with a 0.2 s timeout
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(100, timeout=0.2)
        # Then it gave up at that time, and the connection is still usable for a write
        assert 0.15 < time.monotonic() - started < 2
        await stream.write(b"still here", timeout=1)
        await stream.aclose()


async def test_write__to_a_peer_that_never_reads__times_out_on_its_own() -> None:
    # Given a peer that accepts and never reads: the kernel's buffers fill up
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async with raw_peer(deaf) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        with pytest.raises(httpcore.WriteTimeout):
            for _ in range(1000):
                await stream.write(b"x" * 1_000_000, timeout=0.3)
        await stream.aclose()


async def test_read__after_the_peer_closed__is_empty_and_idle_connection_is_readable() -> None:
    async def says_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()
        writer.close()

    async with raw_peer(says_bye) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        assert await stream.read(100, timeout=2) == b"bye"
        assert await stream.read(100, timeout=2) == b""
        # The pool asks this before reusing an idle connection: a closed one must say yes
        assert stream.get_extra_info("is_readable") is True
        await stream.aclose()


async def test_read__after_a_reset__raises_read_error() -> None:
    async def resets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    async with raw_peer(resets) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await asyncio.sleep(0.1)
        with pytest.raises((httpcore.ReadError, httpcore.WriteError)):
            await stream.write(b"hello", timeout=1)
            await stream.read(100, timeout=2)
        await stream.aclose()


async def test_read__a_large_answer_read_slowly__arrives_whole_and_in_order() -> None:
    # Given a peer that sends far more than the read buffer holds, at once
    payload = bytes(range(256)) * (4 * READ_BUFFER_HIGH_WATER // 256)

    async def floods(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()

    async with raw_peer(floods) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await asyncio.sleep(0.2)  # reading pauses meanwhile instead of buffering it all
        received = bytearray()
        while chunk := await stream.read(65536, timeout=2):
            received += chunk
        assert received == payload
        await stream.aclose()


async def test_connect__to_a_closed_port__is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
    with pytest.raises(httpcore.ConnectError):
        await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)


def test_client__on_uvloop__fetches_and_still_refuses_private_addresses() -> None:
    async def exchange() -> tuple[int, bytes]:
        async with local_server() as server:
            server.routes["/x"] = respond(200, b"over uvloop")
            allowed = OutboundHttp(
                Settings(domain="kith.test", secret_key="x", federation_allow_private=True)
            )
            guarded = OutboundHttp(Settings(domain="kith.test", secret_key="x"))
            try:
                fetched = await allowed.get(f"{server.base}/x")
                with pytest.raises(UnsafeUrl):
                    await guarded.get(server.base.replace("http://", "https://") + "/x")
            finally:
                await allowed.aclose()
                await guarded.aclose()
            return fetched.status, fetched.content

    assert uvloop.run(exchange()) == (200, b"over uvloop")
