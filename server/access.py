"""Who may watch and who may change settings: token and websocket Origin checks.

Viewing token (server.conf token): when set, every request - the page, /ws, /stream.mjpg,
/snapshot.*, and also /healthz and /metrics (they reveal whether and what the camera sees) - needs it,
as `?token=TOKEN`, as the password of HTTP basic auth (any user name), or as the session cookie the
server sets once a request carried the token (so the viewer's own /ws and snapshot requests pass).
Without a token everything is open; that is meant for loopback.

Control token (server.conf control_token): when set, "set" messages need it, in the message's "token"
field or as the token the connection was opened with.

Tokens are compared with hmac.compare_digest.

Host header (DNS rebinding): every request's Host must be an IP address, localhost, the configured
host, this machine's name, or one listed in [server] allowed_hosts.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
from typing import Iterable, Optional
from urllib.parse import urlsplit

COOKIE = "flirstream_session"


def basic_auth_password(authorization: Optional[str]) -> Optional[str]:
    """The password of an 'Authorization: Basic ...' header, or None."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text ("Basic \xff")
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


def _same(given: Optional[str], expected: str) -> bool:
    # surrogatepass: a JSON string may hold a lone surrogate ("\ud800"), which plain UTF-8 refuses
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                                     expected.encode("utf-8", "surrogatepass"))


def session_value(token: str) -> str:
    """The cookie value that stands for the token (not the token itself)."""
    return hmac.new(token.encode(), b"flir-stream session", hashlib.sha256).hexdigest()


def presented_token(query_token: Optional[str], authorization: Optional[str]) -> Optional[str]:
    """The token a request carries in ?token= or basic auth (query first)."""
    return query_token if query_token is not None else basic_auth_password(authorization)


def viewer_allowed(expected: str, token: Optional[str], cookie: Optional[str]) -> bool:
    """May this request watch? Always when no token is configured."""
    if not expected:
        return True
    return _same(token, expected) or _same(cookie, session_value(expected))


def control_allowed(expected: str, *tokens: Optional[str]) -> bool:
    """May this client change settings? Any of the given tokens may match."""
    if not expected:
        return True
    return any(_same(t, expected) for t in tokens)


def _host_port(netloc: str, scheme: str) -> tuple[str, int]:
    parts = urlsplit(f"{scheme}://{netloc}")
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if scheme in ("https", "wss") else 80
    return (parts.hostname or "").lower(), port or default


def origin_allowed(origin: str, host_header: str, request_scheme: str, own_ports: Iterable[int],
                   allowed: Iterable[str]) -> bool:
    """Websocket Origin check: the page's own host (on any of this server's ports) or a listed one.

    The viewer page may come from server.conf port while /ws is on websocket_port, so an origin with
    the request's host name and any of this server's ports counts as the server's own.
    """
    allowed = tuple(allowed)
    if "*" in allowed:
        return True
    origin = origin.strip()
    scheme = "https" if request_scheme in ("https", "wss") else "http"
    try:  # urlsplit refuses a broken IPv6 literal ("http://[", a Host of "[::1")
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if origin.lower().rstrip("/") in (a.lower().rstrip("/") for a in allowed):
            return True
        o_host, o_port = _host_port(parts.netloc, parts.scheme)
        h_host, h_port = _host_port(host_header, scheme)
    except ValueError:
        return False
    if parts.scheme != scheme:
        return False
    return o_host == h_host and (o_port == h_port or o_port in set(own_ports))


def own_names(configured_host: str, allowed_hosts: Iterable[str]) -> frozenset:
    """The names this server is reached under, besides IP literals and localhost: the configured
    host, this machine's host name (plain, fully qualified and as NAME.local for mDNS) and
    [server] allowed_hosts."""
    names = {configured_host, *allowed_hosts}
    try:
        hostname = socket.gethostname()
        names.update((hostname, hostname.split(".")[0] + ".local", socket.getfqdn()))
    except OSError:
        pass
    return frozenset(n.lower().rstrip(".") for n in names if n)


def host_allowed(host_header: str, names: frozenset) -> bool:
    """DNS rebinding check: is the Host header one of this server's names?

    A rebinding page (evil.example, made to resolve to 127.0.0.1) reaches a loopback server with
    its own name in Host, so only known names pass. IP literals pass (rebinding needs a name), as
    do localhost and *.localhost (RFC 6761: always loopback)."""
    if "*" in names:
        return True
    host = host_header.strip()
    if host.startswith("["):  # [v6]:port
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:  # name:port
        host = host.split(":", 1)[0]
    host = host.lower().rstrip(".")
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return host == "localhost" or host.endswith(".localhost") or host in names
