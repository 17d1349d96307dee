"""util.py -- what every other test module leans on: where the programs under test are,
the timeout scale, bounded polling, fresh channel names, and the raw HTTP/1.1 exchange the
WebSocket and SSE clients open their sockets with. Standard library only.

Environment:
  HERALD_BIN        the hub binary             (default: <repo>/build/hub/herald)
  HERALD_SUB_BIN    the herald-sub binary      (default: <repo>/build/clients/herald-sub)
  HERALD_WEB_ROOT   the dashboard directory    (default: <repo>/web)
  HERALD_WRAPPER    a command prefix for the hub, e.g.
                    "valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite";
                    when set every timeout is multiplied by 5
  HERALD_KEEP_LOGS  when set, the hubs' log directory is kept (its path is printed; see
                    hubproc.log_dir)

Every wait is bounded: helpers take a timeout, poll with a deadline and fail with an
AssertionError that says what was awaited.
"""

import itertools
import os
import shlex
import socket
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HERALD_BIN = os.environ.get("HERALD_BIN") or os.path.join(REPO_ROOT, "build", "hub", "herald")
HERALD_SUB_BIN = os.environ.get("HERALD_SUB_BIN") or os.path.join(
    REPO_ROOT, "build", "clients", "herald-sub")
HERALD_WEB_ROOT = os.environ.get("HERALD_WEB_ROOT") or os.path.join(REPO_ROOT, "web")
WRAPPER = shlex.split(os.environ.get("HERALD_WRAPPER", ""))
SCALE = 5.0 if WRAPPER else 1.0


def T(seconds):
    """A timeout, stretched when the hub runs under a wrapper such as valgrind."""
    return seconds * SCALE


def wait_until(predicate, timeout, what="condition", interval=0.02):
    """Poll predicate() until it returns a truthy value (returned) or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


_channel_counter = itertools.count(1)


def unique_channel(prefix="ch"):
    """A fresh valid channel name, so tests sharing a hub never see each other's events."""
    return f"{prefix}-{os.getpid()}-{next(_channel_counter)}"


class HeadTimeout(AssertionError):
    """No whole answer head arrived in time (open_exchange)."""


class HeadEOF(AssertionError):
    """The server closed the connection before its answer head (open_exchange)."""


def parse_answer_head(head):
    """(status, headers by lower-case name) of an HTTP/1.x answer's head (bytes, without the
    blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers


def open_exchange(host, port, request, timeout, source=None, rcvbuf=None, tls=None):
    """A raw HTTP/1.1 exchange on a fresh socket, for the clients that keep the socket after
    the head (WebSocket, SSE): connects to host:port (from source, any of 127.0.0.0/8, with a
    receive buffer of rcvbuf bytes, TCP_NODELAY), speaks TLS first when tls (an
    ssl.SSLContext) is given, sends request (bytes) and reads the answer's head.
    Returns (sock, status, headers, rest): headers by lower-case name, rest the bytes read past
    the head. Raises HeadTimeout or HeadEOF (the socket closed) when no head arrives."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        sock.sendall(request)
        deadline = time.monotonic() + timeout
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > 65536:
                raise AssertionError("answer head over 64 KiB")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HeadTimeout(f"no answer head within {timeout:.1f}s")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                raise HeadEOF("connection closed before an answer head")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers = parse_answer_head(head)
        sock.settimeout(timeout)
        return sock, status, headers, rest
    except BaseException:
        sock.close()
        raise


def read_answer_body(sock, headers, rest, timeout):
    """The body of an answer whose head open_exchange read (Content-Length bytes, starting with
    rest), or what arrived of it within timeout."""
    body = rest
    want = int(headers.get("content-length", "0") or 0)
    deadline = time.monotonic() + timeout
    while len(body) < want and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return body
