"""The remote side of bench/delivery.py: one process standing in for hundreds of servers.

It listens on 0.0.0.0:PORT (SO_REUSEPORT, so several copies share the port and the kernel
spreads connections over them), so every loopback address 127.x.y.z:PORT reaches it and each
address is a distinct "server" to Kith. Every POST is verified as a real inbox would: the
signature with Kith's own verifier (`parse_signature`: signed (request-target), host and date,
the Digest against the body) and the sender's public key given at start, then answered 202
(401 when it does not verify). It counts, per destination address, which activity ids arrived
with a valid signature, and writes its counts to `STATS_DIR/receiver-<pid>.json` when stopped
(SIGTERM or SIGINT).

    python bench/delivery_receiver.py --port 18080 --key-id URL --key-pem FILE --stats-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import uvicorn

from kith.federation.signatures import RequestParts, SignatureError, parse_signature

Scope = dict[str, Any]


class Inbox:
    """A bare ASGI app (no framework: the receiver must cost little next to the sender)."""

    def __init__(self, key_id: str, public_pem: str) -> None:
        self.key_id = key_id
        self.public_pem = public_pem
        # destination "ip:port" -> activity id -> valid deliveries
        self.ok: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.bad: Counter[str] = Counter()  # reason -> count
        self.bad_hosts: Counter[str] = Counter()
        self.first = 0.0
        self.last = 0.0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status = self.check(scope, b"".join(chunks))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def check(self, scope: Scope, body: bytes) -> int:
        """Verify one request and count it; the HTTP status to answer."""
        destination = "{}:{}".format(*scope["server"])
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        req = RequestParts(
            method=scope["method"],
            scheme="http",
            authority=next((v for k, v in headers if k == "host"), ""),
            path=scope["raw_path"].decode("latin-1"),
            query=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=body,
        )
        reason = ""
        try:
            signature = parse_signature(req)
            if req.authority != destination:
                reason = "Host is not the address connected to"
            elif scope["path"] != "/inbox":
                reason = "not the shared inbox"
            elif signature.key_id != self.key_id:
                reason = "unexpected keyId"
            elif not signature.verify(self.public_pem):
                reason = "signature does not verify"
        except SignatureError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if reason:
            self.bad[reason] += 1
            self.bad_hosts[destination] += 1
            return 401
        activity_id = str(json.loads(body).get("id", ""))
        self.ok[destination][activity_id] += 1
        now = time.time()
        self.first = self.first or now
        self.last = now
        return 202

    def stats(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "ok": {host: dict(ids) for host, ids in self.ok.items()},
            "bad": dict(self.bad),
            "bad_hosts": dict(self.bad_hosts),
            "first": self.first,
            "last": self.last,
        }


def listening_socket(port: int) -> socket.socket:
    """0.0.0.0:port with SO_REUSEPORT, listening (connections queue from here on)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key-id", required=True)
    p.add_argument("--key-pem", type=Path, required=True)
    p.add_argument("--stats-dir", type=Path, required=True)
    args = p.parse_args()
    app = Inbox(args.key_id, args.key_pem.read_text())
    sock = listening_socket(args.port)
    (args.stats_dir / f"ready-{os.getpid()}").touch()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
        backlog=4096,
    )

    def dump(*_: Any) -> None:
        out = args.stats_dir / f"receiver-{os.getpid()}.json"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(app.stats()))
        tmp.rename(out)
        raise SystemExit(0)

    # uvicorn shuts down gracefully on SIGTERM/SIGINT, restores these handlers and raises the
    # signal again: the counts are written then, after the last request.
    signal.signal(signal.SIGTERM, dump)
    signal.signal(signal.SIGINT, dump)
    uvicorn.Server(config).run(sockets=[sock])
    dump()


if __name__ == "__main__":
    main()
