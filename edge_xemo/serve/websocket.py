"""The WebSocket protocol of `edge-xemo serve` (`/v1/ws`, docs/serve.md): hello, auth, then subscribe, ping and
control messages from the client, and the events of its subscription from a send loop of their own."""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import version
from typing import TYPE_CHECKING, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..core import events as ev
from .hub import ClientQueue, EventHub, Subscription

if TYPE_CHECKING:
    from .app import ServerLimits, _Connections

PROTOCOL = 1
"""The WebSocket protocol's version: messages only gain fields within it (clients ignore unknown ones)."""

# WebSocket close codes (4000-4999 are the application's own, RFC 6455 7.4.2)
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_STALLED = 4409
CLOSE_TOO_MANY = 4429
CLOSE_TOO_BIG = 1009
CLOSE_BAD_JSON = 1007


async def _receive_text(ws: WebSocket, limit: int) -> dict:
    """One client message as a JSON object; ValueError for non-JSON, OverflowError over `limit` bytes."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raw = message.get("bytes") or b""
        if len(raw) > limit:
            raise OverflowError
        text = raw.decode("utf-8", "replace")
    if len(text.encode()) > limit:
        raise OverflowError
    d = json.loads(text)
    if not isinstance(d, dict):
        raise ValueError("a message must be a JSON object")
    return d


class WebSocketSession:
    """One WebSocket connection, from the origin check to the close; `reason` is why it closed (for the hub and
    the metrics). `control(action, face_id)` runs a control message for an admin token."""

    def __init__(
        self,
        ws: WebSocket,
        hub: EventHub,
        metrics,
        conns: _Connections,
        limits: ServerLimits,
        scopes_of: Callable[[str | None], tuple[str, ...]],
        origin_ok: Callable[..., bool],
        control: Callable[[str, int | None], dict],
        auth_required: bool,
    ):
        self.ws, self.hub, self.metrics, self.conns, self.limits = ws, hub, metrics, conns, limits
        self.scopes_of, self.origin_ok, self.control, self.auth_required = scopes_of, origin_ok, control, auth_required
        self.granted: tuple[str, ...] = ()
        self.client: ClientQueue | None = None
        self.sender: asyncio.Task | None = None
        self.reason = "disconnected"

    async def run(self) -> None:
        """Serves the connection until it closes; a connection refused (origin, too many clients) is closed here."""
        ws = self.ws
        if not self.origin_ok(ws.headers):
            self.metrics.closed.labels("forbidden_origin").inc()
            await ws.close(CLOSE_FORBIDDEN_ORIGIN)  # before accept: the handshake is answered 403
            return
        if not self.conns.enter():
            self.metrics.closed.labels("too_many_clients").inc()
            await ws.accept()
            await ws.close(CLOSE_TOO_MANY, "too many clients")
            return
        receiving = asyncio.current_task()
        assert receiving is not None  # called from the WebSocket's task
        try:
            await self._converse(receiving)
        except OverflowError:
            await self._close(CLOSE_TOO_BIG, "message_too_big")
        except ValueError as e:
            try:
                await self._protocol_error("bad_json", str(e))
            except Exception:
                pass
            await self._close(CLOSE_BAD_JSON, "bad_json")
        except (WebSocketDisconnect, RuntimeError, OSError, asyncio.CancelledError):
            pass
        finally:
            await self._end()

    async def _converse(self, receiving: asyncio.Task) -> None:
        """hello, auth, then the client's messages until it goes; the send loop cancels `receiving` when it fails."""
        await self.ws.accept()
        await self.ws.send_json(
            {
                "type": "hello",
                "server": "edge-xemo",
                "version": version("edge-xemo"),
                "protocol": PROTOCOL,
                "schema_version": ev.SCHEMA_VERSION,
                "auth_required": self.auth_required,
            }
        )
        if not await self._authenticate():
            return
        while True:
            msg = await _receive_text(self.ws, self.limits.max_message_bytes)
            kind = msg.get("type")
            if kind == "subscribe":
                await self._subscribe(msg, receiving)
            elif kind == "ping":
                await self._ping(msg)
            elif kind == "control":
                await self._control(msg)
            else:
                await self._protocol_error("unknown_type", f"unknown message type {kind!r}: subscribe, ping or control")

    async def _authenticate(self) -> bool:
        """Waits auth_timeout_s for an `auth` message with a valid token; False when the connection closed for it."""
        try:
            msg = await asyncio.wait_for(
                _receive_text(self.ws, self.limits.max_message_bytes), self.limits.auth_timeout_s
            )
        except asyncio.TimeoutError:
            await self._close(CLOSE_AUTH_TIMEOUT, "auth_timeout")
            return False
        self.granted = self.scopes_of(msg.get("token")) if msg.get("type") == "auth" else ()
        if not self.granted:
            await self._close(CLOSE_UNAUTHORIZED, "unauthorized")
            return False
        await self.ws.send_json({"type": "auth_ok", "scopes": list(self.granted)})
        return True

    async def _subscribe(self, msg: dict, receiving: asyncio.Task) -> None:
        """The first subscription opens the client's queue and starts the send loop; a later one replaces it."""
        try:
            sub = Subscription.parse(msg.get("types"), msg.get("max_hz"))
            after = msg.get("after")
            if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
                raise ValueError("after must be an integer seq")
        except ValueError as e:
            await self._protocol_error("bad_subscribe", str(e))
            return
        if self.client is None:
            host = self.ws.client.host if self.ws.client else "?"
            self.client, complete = self.hub.open(f"ws:{host}", "ws", sub, after)
            self.sender = asyncio.create_task(self._send_loop(self.client, receiving))
        else:
            self.hub.resubscribe(self.client, sub)
            complete = True
        await self.ws.send_json(
            {
                "type": "subscribed",
                "types": sorted(sub.types) if sub.types else None,
                "max_hz": sub.max_hz,
                "last_seq": self.hub.last_seq,
                "replay_complete": complete,
            }
        )

    async def _ping(self, msg: dict) -> None:
        await self.ws.send_json({"type": "pong", "id": msg.get("id")})

    async def _control(self, msg: dict) -> None:
        if "admin" not in self.granted:
            await self._protocol_error("forbidden", "control needs the admin token")
            return
        try:
            face = msg.get("face_id")
            result = self.control(str(msg.get("action")), face if isinstance(face, int) else None)
        except (ValueError, LookupError) as e:
            await self._protocol_error("bad_control", str(e))
            return
        await self.ws.send_json({"type": "control_ok", "id": msg.get("id"), **result})

    async def _send_loop(self, queue: ClientQueue, receiving: asyncio.Task) -> None:
        """Sends the queue's events; a send slower than send_timeout_s or a failed one ends `receiving`."""
        try:
            while True:
                item = await queue.get()
                await asyncio.wait_for(self.ws.send_text(item.json), self.limits.send_timeout_s)
        except asyncio.TimeoutError:  # the client does not read: stop waiting for it
            self.reason = "stalled"
            receiving.cancel()
        except (WebSocketDisconnect, RuntimeError, OSError):
            receiving.cancel()

    async def _protocol_error(self, code: str, message: str) -> None:
        await self.ws.send_json({"type": "protocol_error", "code": code, "message": message})

    async def _close(self, code: int, why: str) -> None:
        """Closes with `code` (waiting at most 1 s) unless the connection is gone already; `why` is the reason."""
        self.reason = why
        if self.ws.client_state == WebSocketState.CONNECTED:
            try:
                await asyncio.wait_for(self.ws.close(code, why.replace("_", " ")), 1.0)
            except (asyncio.TimeoutError, RuntimeError, OSError):
                pass

    async def _end(self) -> None:
        """Stops the send loop, closes a stalled client with 4409, and releases the queue and the connection."""
        if self.sender is not None:
            self.sender.cancel()
        if self.reason == "stalled":
            await self._close(CLOSE_STALLED, "stalled")
        if self.client is not None:
            self.hub.close(self.client, self.reason)
        self.metrics.closed.labels(self.reason).inc()
        self.conns.leave()
