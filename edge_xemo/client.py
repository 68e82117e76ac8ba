"""A Python client for `edge-xemo serve`: the WebSocket protocol, and Server-Sent Events.

    from edge_xemo.client import Client
    with Client("ws://127.0.0.1:8765/v1/ws", token) as c:
        c.subscribe(types=["explanation"])
        for event in c.events():
            print(event["seq"], event["emotion"]["label"], event["text"])

Needs the `websockets` package (the `serve` extra). Event objects are those of the JSONL output plus
`seq`; fields this version does not know are kept as they come (clients ignore what they do not use).
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import ssl as ssl_module
import threading
import time
from typing import Generator, Iterator
from urllib.parse import urlencode, urlsplit

log = logging.getLogger(__name__)


class ServerClosed(ConnectionError):
    """The server closed the connection; `code` is the WebSocket close code (4401 unauthorized, ...)."""

    def __init__(self, code: int | None, reason: str = ""):
        super().__init__(f"server closed the connection ({code}{': ' + reason if reason else ''})")
        self.code, self.reason = code, reason


class ProtocolError(RuntimeError):
    """The server answered a request with `protocol_error`; `code` says which (forbidden, bad_subscribe, ...)."""

    def __init__(self, message: dict):
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.code = message.get("code")


class Client:
    """One WebSocket connection: hello, auth, then subscribe / events / control / ping."""

    def __init__(
        self,
        url: str = "ws://127.0.0.1:8765/v1/ws",
        token: str | None = None,
        *,
        origin: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        open_timeout: float = 10.0,
    ):
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        self._closed_error = ConnectionClosed
        headers = {"Origin": origin} if origin else None
        try:
            # entered here, closed by close(): the connection lives as long as this Client
            self._ws = connect(
                url, additional_headers=headers, ssl=ssl, open_timeout=open_timeout, max_size=None, compression=None
            ).__enter__()
        except Exception as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status is not None:
                raise ServerClosed(status, "handshake refused") from e
            raise
        self._pending: collections.deque[dict] = collections.deque()
        self.hello = self._receive()
        self._send(json.dumps({"type": "auth", "token": token or ""}))
        reply = self._receive()
        if reply.get("type") != "auth_ok":
            raise ProtocolError(reply)
        self.scopes: list[str] = reply.get("scopes", [])

    def _receive(self, timeout: float | None = None) -> dict:
        try:
            return json.loads(self._ws.recv(timeout))
        except self._closed_error as e:
            raise self._closed(e) from None

    def _send(self, message: str | bytes) -> None:
        """Send; a connection the server has closed meanwhile raises ServerClosed with its code."""
        try:
            self._ws.send(message)
        except self._closed_error as e:
            raise self._closed(e) from None

    @staticmethod
    def _closed(e) -> ServerClosed:
        rcvd = e.rcvd
        return ServerClosed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")

    def _reply(self, kind: str, timeout: float) -> dict:
        """Read until a protocol message of `kind` comes; events met on the way are kept for `events()`."""
        deadline = time.monotonic() + timeout
        while True:
            m = self._receive(max(0.0, deadline - time.monotonic()))
            if "seq" in m:
                self._pending.append(m)
            elif m.get("type") == "protocol_error":
                raise ProtocolError(m)
            elif m.get("type") == kind:
                return m

    def subscribe(
        self,
        types: list[str] | None = None,
        max_hz: float | None = None,
        after: int | None = None,
        timeout: float = 10.0,
    ) -> dict:
        """Ask for event `types` (None: all), at most `max_hz` cues events a second per face, replaying
        the server's ring after seq `after`; returns the `subscribed` reply."""
        self._send(json.dumps({"type": "subscribe", "types": types, "max_hz": max_hz, "after": after}))
        return self._reply("subscribed", timeout)

    def control(self, action: str, face_id: int | None = None, timeout: float = 10.0) -> dict:
        """pause / resume / reset_baseline (the admin token's scope)."""
        self._send(json.dumps({"type": "control", "action": action, "face_id": face_id}))
        return self._reply("control_ok", timeout)

    def ping(self, timeout: float = 10.0) -> float:
        """Round trip in seconds."""
        t0 = time.monotonic()
        self._send(json.dumps({"type": "ping", "id": 1}))
        self._reply("pong", timeout)
        return time.monotonic() - t0

    def events(self, timeout: float | None = None) -> Iterator[dict]:
        """Events as they come; ends when no event came within `timeout` seconds (None: never) or the
        server closes (ServerClosed with its code)."""
        while True:
            while self._pending:
                yield self._pending.popleft()
            try:
                m = self._receive(timeout)
            except TimeoutError:
                return
            if "seq" in m:
                yield m

    def send_raw(self, text: str | bytes) -> None:
        """Send a message as it is (tests of the server's limits)."""
        self._send(text)

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def follow(
    url: str, token: str | None, stop: threading.Event, types: list[str] | None = None, max_backoff_s: float = 8.0
) -> Generator[dict, None, None]:
    """Events of a server for as long as `stop` is not set, reconnecting (0.5 s, doubling up to
    `max_backoff_s`) when it goes away; a refused token (4401) raises ServerClosed."""
    backoff = 0.5
    while not stop.is_set():
        try:
            with Client(url, token) as c:
                c.subscribe(types)
                backoff = 0.5
                yield from _until_stopped(c, stop)
        except ServerClosed as e:
            if e.code in (4401, 403):
                raise
            log.warning("edge-xemo server closed the connection (%s); reconnecting in %.1f s", e.code, backoff)
        except OSError as e:
            log.warning("edge-xemo server unreachable (%s); reconnecting in %.1f s", e, backoff)
        stop.wait(backoff)
        backoff = min(max_backoff_s, backoff * 2)


def _until_stopped(client: Client, stop: threading.Event) -> Iterator[dict]:
    while not stop.is_set():
        yield from client.events(timeout=0.5)


def sse_events(
    base_url: str,
    token: str | None,
    *,
    types: list[str] | None = None,
    max_hz: float | None = None,
    last_event_id: int | None = None,
    timeout: float = 30.0,
    ssl: ssl_module.SSLContext | None = None,
) -> Iterator[tuple[int | None, str, dict]]:
    """(id, event name, object) for each Server-Sent Event of GET /v1/events; ends when the stream does."""
    parts = urlsplit(base_url)
    query = {k: v for k, v in (("types", ",".join(types) if types else None), ("max_hz", max_hz)) if v is not None}
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=ssl)
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    conn.request("GET", "/v1/events" + (f"?{urlencode(query)}" if query else ""), headers=headers)
    response = conn.getresponse()
    if response.status != 200:
        raise ServerClosed(response.status, response.read(200).decode("utf-8", "replace"))
    try:
        event_id: int | None = None
        name, data = "message", list[str]()
        for raw in response:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:
                if data:
                    yield event_id, name, json.loads("\n".join(data))
                event_id, name, data = None, "message", []
            elif line.startswith(":"):
                continue
            else:
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if key == "id":
                    event_id = int(value)
                elif key == "event":
                    name = value
                elif key == "data":
                    data.append(value)
    finally:
        conn.close()
