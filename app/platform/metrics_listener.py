"""The dispatcher's own small HTTP listener: `GET /metrics` and nothing else.

`gridflow dispatcher` serves no API, so its metrics get a port of their own
(`metrics.dispatcher_host`, `metrics.dispatcher_port`; 127.0.0.1:9464 by default). It runs in the
process's event loop, so a scrape reads the database and the consumer as the API's `/metrics`
does. Each connection answers one request and is closed; a request's head is at most 8 KiB and
must arrive within 10 s. A port already taken is logged and the dispatcher runs without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from app.platform.metrics import Metrics

log = logging.getLogger(__name__)

HEAD_LIMIT = 8192
HEAD_TIMEOUT_S = 10.0


class MetricsListener:
    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where it listens, once started."""
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._answer, self.host, self.port, limit=HEAD_LIMIT
            )
        except OSError as exc:
            log.warning(
                "metrics: cannot listen on %s:%d (%s); this process serves no metrics",
                self.host,
                self.port,
                exc,
            )
            return
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = dict(
                (name.strip().lower(), value.strip())
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            )
            if method not in ("GET", "HEAD"):
                status, body, content_type = "405 Method Not Allowed", b"", "text/plain"
            elif target.split("?", 1)[0] != "/metrics":
                status, body, content_type = "404 Not Found", b"", "text/plain"
            else:
                body, content_type = await self.metrics.exposition(headers.get("accept"))
                status = "200 OK"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
            )
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (
            TimeoutError,
            ValueError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass  # a client that sent no request, or too long a one, or went away
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
