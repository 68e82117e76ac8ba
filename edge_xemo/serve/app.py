"""The HTTP and WebSocket routes of `edge-xemo serve` (Starlette).

Routes (a `read` token unless said otherwise; `Authorization: Bearer TOKEN`):
  GET  /                   the kiosk page (no token: the page asks for one, or takes it from `#token=`)
  GET  /healthz            liveness (no token)
  GET  /readyz             200 when models and sources are ready, else 503; each component's state (no token)
  GET  /metrics            Prometheus text
  GET  /v1/info            version, schema and protocol versions, sources, what the run uses (models, sha256),
                           the colour of each label
  GET  /v1/schema          JSON Schema of the events (core.events.json_schema)
  GET  /v1/events/latest   the newest event of each type
  GET  /v1/events          Server-Sent Events: `id` = seq, `Last-Event-ID` replays from the ring;
                           ?types=cues,explanation&max_hz=2
  POST /v1/control/{pause|resume|reset_baseline}   admin token; reset_baseline takes ?face_id=N
  WS   /v1/ws              the protocol in docs/serve.md (hello, auth, subscribe, ping, control)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..core import events as ev
from ..core.types import EMOTION_COLOURS, StatusCode
from .auth import SCOPES, Tokens, bearer, origin_allowed
from .hub import ClientQueue, EventHub, Subscription

log = logging.getLogger(__name__)

PROTOCOL = 1
"""The WebSocket protocol's version: messages only gain fields within it (clients ignore unknown ones)."""
STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

# WebSocket close codes (4000-4999 are the application's own, RFC 6455 7.4.2)
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_STALLED = 4409
CLOSE_TOO_MANY = 4429
CLOSE_TOO_BIG = 1009
CLOSE_GOING_AWAY = 1001


@dataclass
class ServerLimits:
    """Limits that keep a client from costing the server more than it should.

    max_clients: WebSocket + SSE connections at once [8].
    max_message_bytes: largest message a client may send [4096]; control messages are ~100 bytes.
    auth_timeout_s: time from connecting to a valid `auth` [5].
    send_timeout_s: a send to a client that takes longer closes it as stalled [5].
    heartbeat_s: SSE keep-alive comment interval on idle streams [15] (WebSockets: uvicorn's protocol pings).
    client_queue: events queued per client before the oldest is dropped [64].
    """

    max_clients: int = 8
    max_message_bytes: int = 4096
    auth_timeout_s: float = 5.0
    send_timeout_s: float = 5.0
    heartbeat_s: float = 15.0
    client_queue: int = 64


@dataclass
class AppConfig:
    tokens: Tokens | None  # None: no authentication (loopback only; `serve --no-auth`)
    limits: ServerLimits = field(default_factory=ServerLimits)
    allowed_origins: tuple[str, ...] = ()
    tls: bool = False


class _Connections:
    """Counts connections against max_clients, authenticated or not."""

    def __init__(self, limit: int):
        self.limit, self.n = limit, 0

    def enter(self) -> bool:
        if self.n >= self.limit:
            return False
        self.n += 1
        return True

    def leave(self) -> None:
        self.n -= 1


def create_app(config: AppConfig, hub: EventHub, pipeline, metrics) -> Starlette:
    """The Starlette app; `pipeline` answers readiness, info and control, `metrics` renders /metrics."""
    limits = config.limits
    conns = _Connections(limits.max_clients)
    started = time.time()

    def scopes_of(token: str | None) -> tuple[str, ...]:
        if config.tokens is None:
            return SCOPES
        return config.tokens.scopes(token)

    def origin_ok(headers) -> bool:
        return origin_allowed(headers.get("origin"), headers.get("host"), config.allowed_origins, config.tls)

    def guard(request: Request, scope: str = "read") -> Response | None:
        """An error response when the request may not proceed."""
        if not origin_ok(request.headers):
            return JSONResponse({"error": "forbidden_origin"}, 403)
        granted = scopes_of(bearer(request.headers))
        if not granted:
            return JSONResponse({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})
        if scope not in granted:
            return JSONResponse({"error": "forbidden", "needs": scope}, 403)
        return None

    async def kiosk(request: Request) -> Response:
        return FileResponse(
            STATIC / "kiosk.html",
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready, state = pipeline.readiness()
        body = {"ready": ready, "components": state}
        if pipeline.problem:
            body["problem"] = pipeline.problem
        return JSONResponse(body, 200 if ready else 503)

    async def metrics_route(request: Request) -> Response:
        return guard(request) or Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def info(request: Request) -> Response:
        denied = guard(request)
        if denied:
            return denied
        a = pipeline.analyzer
        return JSONResponse(
            {
                "name": "edge-xemo",
                "version": version("edge-xemo"),
                "schema_version": ev.SCHEMA_VERSION,
                "protocol": PROTOCOL,
                "running_mode": "live_stream",
                "uptime_s": round(time.time() - started, 1),
                "sources": [s.name for s in pipeline.sources],
                "paused": bool(a and a.paused),
                "auth": config.tokens is not None,
                "clients": len(hub.clients),
                "last_seq": hub.last_seq,
                "run": pipeline.record,
                "label_colours": EMOTION_COLOURS,
            }
        )

    async def schema(request: Request) -> Response:
        return guard(request) or JSONResponse(ev.json_schema())

    async def latest(request: Request) -> Response:
        return guard(request) or JSONResponse({"last_seq": hub.last_seq, "events": hub.latest()})

    async def control(request: Request) -> Response:
        denied = guard(request, "admin")
        if denied:
            return denied
        face = request.query_params.get("face_id")
        try:
            result = run_control(pipeline, request.path_params["action"], int(face) if face is not None else None)
        except (ValueError, LookupError) as e:
            return JSONResponse({"error": "bad_control", "message": str(e)}, 400)
        return JSONResponse(result)

    async def events_stream(request: Request) -> Response | _EventStream:
        denied = guard(request)
        if denied:
            return denied
        try:
            q = request.query_params
            sub = Subscription.parse(
                q["types"].split(",") if q.get("types") else None, float(q["max_hz"]) if q.get("max_hz") else None
            )
            last = request.headers.get("last-event-id") or q.get("after")
            after = int(last) if last else None
        except ValueError as e:
            return JSONResponse({"error": "bad_request", "message": str(e)}, 400)
        if not conns.enter():
            return JSONResponse({"error": "too_many_clients"}, 503, headers={"Retry-After": "5"})
        client, complete = hub.open(f"sse:{request.client.host if request.client else '?'}", "sse", sub, after)
        return _EventStream(client, complete, hub, metrics, conns, limits)

    async def websocket(ws: WebSocket) -> None:
        await _serve_websocket(
            ws, hub, pipeline, metrics, conns, limits, scopes_of, origin_ok, auth_required=config.tokens is not None
        )

    routes = [
        Route("/", kiosk),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_route),
        Route("/v1/info", info),
        Route("/v1/schema", schema),
        Route("/v1/events/latest", latest),
        Route("/v1/events", events_stream),
        Route("/v1/control/{action}", control, methods=["POST"]),
        WebSocketRoute("/v1/ws", websocket),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def run_control(pipeline, action: str, face_id: int | None = None) -> dict:
    """pause / resume / reset_baseline on the running analyzer; LookupError when it is not running yet."""
    a = pipeline.analyzer
    if a is None:
        raise LookupError("the analysis is not running yet")
    if action == "pause":
        a.pause()
    elif action == "resume":
        a.resume()
    elif action == "reset_baseline":
        a.reset_baseline(face_id)
    else:
        raise ValueError(f"unknown control action {action!r}: pause, resume or reset_baseline")
    return {"ok": True, "action": action, "paused": a.paused}


class _EventStream:
    """text/event-stream from a client queue, with heartbeats; a send slower than send_timeout_s ends it."""

    HEADERS = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no"),
    ]

    def __init__(
        self, client: ClientQueue, complete: bool, hub: EventHub, metrics, conns: _Connections, limits: ServerLimits
    ):
        self.client, self.complete, self.hub, self.metrics, self.conns, self.limits = (
            client,
            complete,
            hub,
            metrics,
            conns,
            limits,
        )

    async def __call__(self, scope, receive, send) -> None:
        reason = "disconnected"
        gone = asyncio.Event()

        async def watch():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.HEADERS})
            chunk = b"retry: 2000\n\n"
            if not self.complete:
                gap = ev.status(StatusCode.REPLAY_INCOMPLETE, "events after Last-Event-ID have left the replay ring")
                chunk += f"event: status\ndata: {gap.to_json()}\n\n".encode()
            while not gone.is_set():
                await asyncio.wait_for(
                    send({"type": "http.response.body", "body": chunk, "more_body": True}), self.limits.send_timeout_s
                )
                try:
                    item = await asyncio.wait_for(self.client.get(), self.limits.heartbeat_s)
                    chunk = f"id: {item.seq}\nevent: {item.type}\ndata: {item.json}\n\n".encode()
                except asyncio.TimeoutError:
                    chunk = b": keepalive\n\n"
        except asyncio.TimeoutError:
            reason = "stalled"
        except OSError:
            reason = "disconnected"
        finally:
            watcher.cancel()
            self.hub.close(self.client, reason)
            self.metrics.closed.labels(reason).inc()
            self.conns.leave()


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


async def _serve_websocket(
    ws: WebSocket,
    hub: EventHub,
    pipeline,
    metrics,
    conns: _Connections,
    limits: ServerLimits,
    scopes_of,
    origin_ok,
    auth_required: bool,
) -> None:
    if not origin_ok(ws.headers):
        metrics.closed.labels("forbidden_origin").inc()
        await ws.close(CLOSE_FORBIDDEN_ORIGIN)  # before accept: the handshake is answered 403
        return
    if not conns.enter():
        metrics.closed.labels("too_many_clients").inc()
        await ws.accept()
        await ws.close(CLOSE_TOO_MANY, "too many clients")
        return
    client: ClientQueue | None = None
    sender: asyncio.Task | None = None
    reason = "disconnected"

    async def close(code: int, why: str) -> None:
        nonlocal reason
        reason = why
        if ws.client_state == WebSocketState.CONNECTED:
            try:
                await asyncio.wait_for(ws.close(code, why.replace("_", " ")), 1.0)
            except (asyncio.TimeoutError, RuntimeError, OSError):
                pass

    receiving = asyncio.current_task()
    assert receiving is not None  # called from the WebSocket's task

    async def send_loop(queue: ClientQueue) -> None:
        nonlocal reason
        try:
            while True:
                item = await queue.get()
                await asyncio.wait_for(ws.send_text(item.json), limits.send_timeout_s)
        except asyncio.TimeoutError:  # the client does not read: stop waiting for it
            reason = "stalled"
            receiving.cancel()
        except (WebSocketDisconnect, RuntimeError, OSError):
            receiving.cancel()

    try:
        await ws.accept()
        await ws.send_json(
            {
                "type": "hello",
                "server": "edge-xemo",
                "version": version("edge-xemo"),
                "protocol": PROTOCOL,
                "schema_version": ev.SCHEMA_VERSION,
                "auth_required": auth_required,
            }
        )
        try:
            msg = await asyncio.wait_for(_receive_text(ws, limits.max_message_bytes), limits.auth_timeout_s)
        except asyncio.TimeoutError:
            await close(CLOSE_AUTH_TIMEOUT, "auth_timeout")
            return
        granted = scopes_of(msg.get("token")) if msg.get("type") == "auth" else ()
        if not granted:
            await close(CLOSE_UNAUTHORIZED, "unauthorized")
            return
        await ws.send_json({"type": "auth_ok", "scopes": list(granted)})
        while True:
            msg = await _receive_text(ws, limits.max_message_bytes)
            kind = msg.get("type")
            if kind == "subscribe":
                try:
                    sub = Subscription.parse(msg.get("types"), msg.get("max_hz"))
                    after = msg.get("after")
                    if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
                        raise ValueError("after must be an integer seq")
                except ValueError as e:
                    await ws.send_json({"type": "protocol_error", "code": "bad_subscribe", "message": str(e)})
                    continue
                if client is None:
                    client, complete = hub.open(f"ws:{ws.client.host if ws.client else '?'}", "ws", sub, after)
                    sender = asyncio.create_task(send_loop(client))
                else:
                    hub.resubscribe(client, sub)
                    complete = True
                await ws.send_json(
                    {
                        "type": "subscribed",
                        "types": sorted(sub.types) if sub.types else None,
                        "max_hz": sub.max_hz,
                        "last_seq": hub.last_seq,
                        "replay_complete": complete,
                    }
                )
            elif kind == "ping":
                await ws.send_json({"type": "pong", "id": msg.get("id")})
            elif kind == "control":
                if "admin" not in granted:
                    await ws.send_json(
                        {"type": "protocol_error", "code": "forbidden", "message": "control needs the admin token"}
                    )
                    continue
                try:
                    face = msg.get("face_id")
                    result = run_control(pipeline, str(msg.get("action")), face if isinstance(face, int) else None)
                except (ValueError, LookupError) as e:
                    await ws.send_json({"type": "protocol_error", "code": "bad_control", "message": str(e)})
                    continue
                await ws.send_json({"type": "control_ok", "id": msg.get("id"), **result})
            else:
                await ws.send_json(
                    {
                        "type": "protocol_error",
                        "code": "unknown_type",
                        "message": f"unknown message type {kind!r}: subscribe, ping or control",
                    }
                )
    except OverflowError:
        await close(CLOSE_TOO_BIG, "message_too_big")
    except ValueError as e:
        try:
            await ws.send_json({"type": "protocol_error", "code": "bad_json", "message": str(e)})
        except Exception:
            pass
        await close(1007, "bad_json")
    except (WebSocketDisconnect, RuntimeError, OSError, asyncio.CancelledError):
        pass
    finally:
        if sender is not None:
            sender.cancel()
        if reason == "stalled":
            await close(CLOSE_STALLED, "stalled")
        if client is not None:
            hub.close(client, reason)
        metrics.closed.labels(reason).inc()
        conns.leave()
