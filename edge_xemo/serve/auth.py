"""Who may connect: tokens with scopes, loopback checks and the Origin allow-list.

The token file (JSON, mode 0600) holds two random tokens: `admin` (read events and control the
analysis: pause, resume, reset a baseline) and `read` (events only). `edge-xemo serve` creates it on
first start with `secrets.token_urlsafe(32)` (256 bits) and prints the kiosk URL with the admin token
in its fragment (`#token=...`), which browsers never send to a server. Tokens are compared in
constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..core.paths import home

SCOPES = ("read", "admin")
DEFAULT_TOKEN_FILE = home() / "serve" / "tokens.json"


class AuthError(ValueError):
    """A token file that cannot be used (permissions, contents)."""


@dataclass(frozen=True, slots=True)
class Tokens:
    admin: str
    read: str

    def scopes(self, token: object) -> tuple[str, ...]:
        """The scopes `token` grants: () when it matches neither token."""
        if not isinstance(token, str) or not token:
            return ()
        given = token.encode()
        if hmac.compare_digest(given, self.admin.encode()):
            return SCOPES
        if hmac.compare_digest(given, self.read.encode()):
            return ("read",)
        return ()


def read_tokens(path: Path) -> Tokens:
    """The tokens in `path`; a file that others can read or write is refused (a token is only as secret
    as its file)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise AuthError(f"token file {path} not found (edge-xemo serve creates it on first start)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AuthError(f"token file {path} is readable by others (mode {mode:o}): chmod 600 {path}")
    try:
        d = json.loads(path.read_text())
        tokens = Tokens(admin=d["admin"], read=d["read"])
    except (ValueError, KeyError, TypeError) as e:
        raise AuthError(f"token file {path} is not a JSON object with 'admin' and 'read' tokens ({e})") from e
    if min(len(tokens.admin), len(tokens.read)) < 16:
        raise AuthError(f"token file {path}: tokens must be at least 16 characters")
    return tokens


def load_or_create(path: Path) -> tuple[Tokens, bool]:
    """The tokens in `path`, created (mode 0600) when the file does not exist; True when created. The file
    appears whole (written beside it, then linked into place), so a reader never sees it empty, and a file
    another process created meanwhile is kept and read."""
    path = Path(path).expanduser()
    if path.exists():
        return read_tokens(path), False
    tokens = Tokens(admin=secrets.token_urlsafe(32), read=secrets.token_urlsafe(32))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"admin": tokens.admin, "read": tokens.read}, f)
            f.flush()
            os.fsync(f.fileno())
        os.link(partial, path)  # fails, and replaces nothing, when the file exists
    except FileExistsError:
        return read_tokens(path), False
    finally:
        partial.unlink(missing_ok=True)
    return tokens, True


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bearer(headers) -> str | None:
    """The token of an `Authorization: Bearer ...` header."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def origin_allowed(origin: str | None, host_header: str | None, allowed: tuple[str, ...], tls: bool) -> bool:
    """Browsers send `Origin`; it must be the server's own origin or in `allowed`. Requests without
    one (programs, not pages) pass: they still need a token."""
    if origin is None:
        return True
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    own = f"{'https' if tls else 'http'}://{host_header}" if host_header else None
    return own is not None and f"{parts.scheme}://{parts.netloc}" == own
