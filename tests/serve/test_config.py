"""`edge-xemo serve --config FILE.toml`: keys are the long option names; precedence file < environment <
flags; unknown keys and bad TOML are one-line errors. TLS: https and wss with a self-signed certificate."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from serving import REPO, replay_args, start_server


def serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_xemo", "serve", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, **(env or {})})


def refused_host(proc: subprocess.CompletedProcess) -> str:
    """The host named by the one-line refusal of a non-loopback host without tokens."""
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "is not a loopback address" in proc.stderr
    return proc.stderr.split("--host ", 1)[1].split()[0]


def test_precedence_file_then_environment_then_flags(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text('host = "10.0.0.1"\nno-auth = true\nport = 9000\n')
    assert refused_host(serve("--config", str(config))) == "10.0.0.1"
    env = {"EDGE_XEMO_SERVE_HOST": "10.0.0.2"}
    assert refused_host(serve("--config", str(config), env=env)) == "10.0.0.2"
    assert refused_host(serve("--config", str(config), "--host", "10.0.0.3", env=env)) == "10.0.0.3"


def test_the_decoder_key_reaches_the_server(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text('decoder = "decoder_nope"\n')
    proc = serve("--config", str(config))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unknown model artifact 'decoder_nope'" in proc.stderr


def test_unknown_keys_and_bad_toml_are_one_line_errors(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text('host = "127.0.0.1"\nhots = "typo"\n')
    proc = serve("--config", str(config))
    assert proc.returncode == 2 and "unknown keys hots" in proc.stderr and "Traceback" not in proc.stderr
    config.write_text('host = "127.0.0.1\n')
    proc = serve("--config", str(config))
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
    proc = serve("--config", str(tmp_path / "absent.toml"))
    assert proc.returncode == 2 and "not found" in proc.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_serves_https_and_wss(tmp_path):
    pytest.importorskip("websockets", reason="the serve extra is not installed")
    from edge_xemo.client import Client, sse_events

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server = start_server(tmp_path, *replay_args("--cues-only"), "--certfile", str(cert), "--keyfile", str(key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/healthz", context=context, timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline and server.proc.poll() is None
                time.sleep(0.5)
        with Client(f"wss://127.0.0.1:{server.port}/v1/ws", server.tokens["read"], ssl=context) as c:
            c.subscribe(types=["cues"])
            event = next(c.events(timeout=60))
        assert event["type"] == "cues"
        event_id, name, d = next(sse_events(f"https://127.0.0.1:{server.port}", server.tokens["read"], ssl=context,
                                            types=["cues"]))
        assert name == "cues" and d["seq"] == event_id
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # untrusted: refused
            urllib.request.urlopen(f"https://127.0.0.1:{server.port}/healthz", timeout=5)
    finally:
        assert server.stop() == 0
