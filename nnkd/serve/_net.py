"""Which addresses count as loopback (the server's default bind, the load generator's guard)."""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1); no DNS lookup."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolves_to_loopback(host: str) -> bool:
    """True if ``host`` is loopback or every address it resolves to is."""
    if is_loopback(host):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(is_loopback(info[4][0]) for info in infos)
