"""Raw HTTP/1.1 on a socket, for the server-fault tests: a request head, a connection that
stalls after it, what the server sends back and whether it closed, and that answer parsed."""

from __future__ import annotations

import json
import socket

from tests.service_process import Server

CLAIMED = 100_000  # Content-Length of the uploads that never finish


def request_head(path: str, ctype: str, length: int = CLAIMED, request_id: str = "") -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {ctype}",
        f"Content-Length: {length}",
    ]
    if request_id:
        lines.append(f"X-Request-ID: {request_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def stall(server: Server, head: bytes, partial: bytes = b"") -> socket.socket:
    """A connection that sends a request's headers and part of its body, then waits."""
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.sendall(head + partial)
    return sock


def read_response(sock: socket.socket, timeout_s: float) -> tuple[bytes, bool]:
    """Everything the server sends within `timeout_s`, and whether it closed the connection."""
    sock.settimeout(timeout_s)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        return b"".join(chunks), False
    except ConnectionResetError:
        return b"".join(chunks), True
    return b"".join(chunks), True


def parse_response(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    """Status, headers (lower-case names) and JSON body of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def send_raw(server: Server, data: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        raw, _ = read_response(sock, 10)
    return raw
