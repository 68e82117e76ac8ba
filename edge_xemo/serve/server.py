"""`edge-xemo serve`: the analyzer, the hub, the routes and uvicorn, with safe defaults.

Loopback only unless `host` says otherwise; a non-loopback host needs tokens (no `no_auth`). The
token file is created on first start and its admin token printed once, in the kiosk URL's fragment.
SIGTERM or Ctrl-C: clients get a `server_stopping` status, connections close (1012), the analyzer
stops (an explanation under way is cut short) and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import uvicorn

from ..analyzer import AnalyzerOptions
from ..core import events as ev
from ..core.signals import StopSignals
from ..core.types import StatusCode
from ..io.sources import Source
from .app import AppConfig, ServerLimits, create_app
from .auth import DEFAULT_TOKEN_FILE, is_loopback, load_or_create
from .hub import EventHub
from .metrics import Metrics
from .pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Where and how the server listens. host/port [127.0.0.1:8765]; token_file (created 0600 when absent);
    no_auth (loopback only); certfile/keyfile for TLS; allowed_origins besides the server's own;
    ring: events kept for SSE replay [1024]."""

    host: str = "127.0.0.1"
    port: int = 8765
    token_file: Path = DEFAULT_TOKEN_FILE
    no_auth: bool = False
    certfile: Path | None = None
    keyfile: Path | None = None
    allowed_origins: tuple[str, ...] = ()
    limits: ServerLimits = field(default_factory=ServerLimits)
    ring: int = 1024

    def __post_init__(self):
        if self.no_auth and not is_loopback(self.host):
            raise ValueError(
                f"--host {self.host} is not a loopback address: serving without a token is refused "
                "(drop --no-auth; clients then need the token file's token)"
            )
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("TLS needs both --certfile and --keyfile")
        for path in (self.certfile, self.keyfile):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"TLS file not found: {path}")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port must be 1-65535, got {self.port}")


def serve(
    options: ServeOptions,
    analyzer_options: AnalyzerOptions,
    sources: list[Source],
    announce: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> bool:
    """Run until SIGTERM/SIGINT; the sources start once the models are loaded. Returns False when a
    capture thread was still stuck after the analyzer closed (see `Analyzer.close`)."""
    tokens = None
    if not options.no_auth:
        tokens, created = load_or_create(options.token_file)
    scheme = "https" if options.certfile else "http"
    shown = f"[{options.host}]" if ":" in options.host else options.host
    url = f"{scheme}://{shown}:{options.port}/"
    if tokens is None:
        announce(f"edge-xemo serve: {url} (no authentication: loopback only)")
    elif created:
        announce(
            f"edge-xemo serve: kiosk at {url}#token={tokens.admin}  (admin token, shown once; "
            f"it and the read-only token are in {options.token_file}, mode 0600)"
        )
    else:
        announce(f"edge-xemo serve: {url} (tokens in {options.token_file})")

    hub = EventHub(ring=options.ring, client_queue=options.limits.client_queue)
    pipeline = Pipeline(sources, analyzer_options, hub)
    metrics = Metrics(pipeline, hub)
    hub.on_publish = metrics.observe
    app = create_app(
        AppConfig(tokens, options.limits, options.allowed_origins, tls=options.certfile is not None),
        hub,
        pipeline,
        metrics,
    )

    server = _Server(_uvicorn_config(app, options), hub)
    pipeline.start()
    try:
        server.run()
    finally:
        with StopSignals() as signals:
            signals.shutting_down()  # a second Ctrl-C while the analyzer closes: out at once (130)
            ended = pipeline.close()
        log.info("stopped")
    return ended


def _uvicorn_config(app, options: ServeOptions) -> uvicorn.Config:
    """uvicorn's settings: quiet, no lifespan, TLS when given, client messages up to max_message_bytes."""
    return uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(options.certfile) if options.certfile else None,
        ssl_keyfile=str(options.keyfile) if options.keyfile else None,
        ws="websockets-sansio",
        ws_max_size=options.limits.max_message_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=5,
        server_header=False,
        proxy_headers=False,
    )


class _Server(uvicorn.Server):
    """uvicorn's server with the hub on its event loop and a `server_stopping` status before shutting down."""

    def __init__(self, config: uvicorn.Config, hub: EventHub):
        super().__init__(config)
        self.hub = hub

    async def startup(self, sockets=None) -> None:
        self.hub.attach(asyncio.get_running_loop())
        await super().startup(sockets)

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            self.hub.publish(ev.status(StatusCode.SERVER_STOPPING, "the server is shutting down"))
        super().handle_exit(sig, frame)
        # uvicorn re-raises a captured signal once it has shut down, which would end the process before
        # the analyzer is closed; serve() closes it and returns, so the process exits 0
        self._captured_signals.clear()
