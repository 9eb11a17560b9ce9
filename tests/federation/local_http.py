"""A tiny real HTTP/1.1 server on a loopback address, running in the test's event loop.

Each route is a coroutine that writes a raw response, so a test can make a server that
answers normally, redirects, streams too much, or drips bytes forever — things a remote
server really does, over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RawRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


Route = Callable[[RawRequest, asyncio.StreamWriter], Awaitable[None]]


def respond(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Route:
    """A route that answers `status` with `body`."""

    async def route(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        head = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
        writer.write(
            f"HTTP/1.1 {status} X\r\n".encode()
            + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode()
            + b"\r\n"
            + body
        )
        await writer.drain()

    return route


def json_document(doc: dict[str, Any], status: int = 200) -> Route:
    return respond(status, json.dumps(doc).encode(), {"Content-Type": "application/activity+json"})


def redirect(location: str, status: int = 302) -> Route:
    return respond(status, b"", {"Location": location})


def endless(chunk: bytes = b"x" * 65536, pause: float = 0.0) -> Route:
    """A body with no length that never ends (optionally dripping slowly)."""

    async def route(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        for _ in range(100_000):  # bounded: stops by itself even if nobody hangs up
            writer.write(chunk)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)

    return route


@dataclass
class LocalServer:
    host: str
    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[RawRequest] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = RawRequest(method, target, headers, body)
            self.requests.append(request)
            route = self.routes.get(target.split("?", 1)[0]) or respond(404, b"not here")
            await route(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def local_server(host: str = "127.0.0.1") -> AsyncIterator[LocalServer]:
    """A LocalServer listening on a free port of `host` until the block ends."""
    server = LocalServer(host)
    listener = await asyncio.start_server(server._serve, host, 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for task in server.tasks:
            task.cancel()
        await listener.wait_closed()
