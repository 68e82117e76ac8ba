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
  WS   /v1/ws              the protocol in docs/serve.md (hello, auth, subscribe, ping, control): serve.websocket
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from ..core import events as ev
from ..core.types import EMOTION_COLOURS, StatusCode
from .auth import SCOPES, Tokens, bearer, origin_allowed
from .hub import ClientQueue, EventHub, Subscription
from .websocket import PROTOCOL, WebSocketSession

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


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
    return Starlette(routes=_Routes(config, hub, pipeline, metrics).table())


class _Routes:
    """The route handlers over the state they share: configuration, hub, pipeline, metrics and connections."""

    def __init__(self, config: AppConfig, hub: EventHub, pipeline, metrics):
        self.config, self.hub, self.pipeline, self.metrics = config, hub, pipeline, metrics
        self.limits = config.limits
        self.conns = _Connections(config.limits.max_clients)
        self.started = time.time()

    def table(self) -> list[BaseRoute]:
        return [
            Route("/", self.kiosk),
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics_route),
            Route("/v1/info", self.info),
            Route("/v1/schema", self.schema),
            Route("/v1/events/latest", self.latest),
            Route("/v1/events", self.events_stream),
            Route("/v1/control/{action}", self.control, methods=["POST"]),
            WebSocketRoute("/v1/ws", self.websocket),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]

    def scopes_of(self, token: str | None) -> tuple[str, ...]:
        if self.config.tokens is None:
            return SCOPES
        return self.config.tokens.scopes(token)

    def origin_ok(self, headers) -> bool:
        config = self.config
        return origin_allowed(headers.get("origin"), headers.get("host"), config.allowed_origins, config.tls)

    def guard(self, request: Request, scope: str = "read") -> Response | None:
        """An error response when the request may not proceed."""
        if not self.origin_ok(request.headers):
            return JSONResponse({"error": "forbidden_origin"}, 403)
        granted = self.scopes_of(bearer(request.headers))
        if not granted:
            return JSONResponse({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})
        if scope not in granted:
            return JSONResponse({"error": "forbidden", "needs": scope}, 403)
        return None

    async def kiosk(self, request: Request) -> Response:
        return FileResponse(
            STATIC / "kiosk.html",
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        ready, state = self.pipeline.readiness()
        body = {"ready": ready, "components": state}
        if self.pipeline.problem:
            body["problem"] = self.pipeline.problem
        return JSONResponse(body, 200 if ready else 503)

    async def metrics_route(self, request: Request) -> Response:
        return self.guard(request) or Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def info(self, request: Request) -> Response:
        denied = self.guard(request)
        if denied:
            return denied
        pipeline, a = self.pipeline, self.pipeline.analyzer
        return JSONResponse(
            {
                "name": "edge-xemo",
                "version": version("edge-xemo"),
                "schema_version": ev.SCHEMA_VERSION,
                "protocol": PROTOCOL,
                "running_mode": "live_stream",
                "uptime_s": round(time.time() - self.started, 1),
                "sources": [s.name for s in pipeline.sources],
                "paused": bool(a and a.paused),
                "auth": self.config.tokens is not None,
                "clients": len(self.hub.clients),
                "last_seq": self.hub.last_seq,
                "run": pipeline.record,
                "label_colours": EMOTION_COLOURS,
            }
        )

    async def schema(self, request: Request) -> Response:
        return self.guard(request) or JSONResponse(ev.json_schema())

    async def latest(self, request: Request) -> Response:
        return self.guard(request) or JSONResponse({"last_seq": self.hub.last_seq, "events": self.hub.latest()})

    async def control(self, request: Request) -> Response:
        denied = self.guard(request, "admin")
        if denied:
            return denied
        face = request.query_params.get("face_id")
        try:
            result = run_control(self.pipeline, request.path_params["action"], int(face) if face is not None else None)
        except (ValueError, LookupError) as e:
            return JSONResponse({"error": "bad_control", "message": str(e)}, 400)
        return JSONResponse(result)

    async def events_stream(self, request: Request) -> Response | _EventStream:
        denied = self.guard(request)
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
        if not self.conns.enter():
            return JSONResponse({"error": "too_many_clients"}, 503, headers={"Retry-After": "5"})
        client, complete = self.hub.open(f"sse:{request.client.host if request.client else '?'}", "sse", sub, after)
        return _EventStream(client, complete, self.hub, self.metrics, self.conns, self.limits)

    async def websocket(self, ws: WebSocket) -> None:
        session = WebSocketSession(
            ws,
            self.hub,
            self.metrics,
            self.conns,
            self.limits,
            self.scopes_of,
            self.origin_ok,
            partial(run_control, self.pipeline),
            auth_required=self.config.tokens is not None,
        )
        await session.run()


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
