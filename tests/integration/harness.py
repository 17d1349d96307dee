"""harness.py -- shared fixtures for Herald's integration tests.

Real parts only: every test starts real `herald` processes on free loopback ports,
speaks RFC 6455 WebSocket through the small client below (raw sockets: handshake,
masking, fragmentation-aware frame parsing, close codes, automatic pongs) and HTTP
through http.client. Standard library only (Python 3.11).

Environment:
  HERALD_BIN        the hub binary             (default: <repo>/build/hub/herald)
  HERALD_SUB_BIN    the herald-sub binary      (default: <repo>/build/clients/herald-sub)
  HERALD_WEB_ROOT   the dashboard directory    (default: <repo>/web)
  HERALD_WRAPPER    a command prefix for the hub, e.g.
                    "valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite";
                    when set every timeout is multiplied by 5
  HERALD_KEEP_LOGS  when set, the hubs' log directory is kept (its path is printed)

Every wait is bounded: helpers take a timeout, poll with a deadline and fail with an
AssertionError that says what was awaited.
"""

import atexit
import base64
import hashlib
import http.client
import itertools
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

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


# --------------------------------------------------------------------------------------
# Generic helpers

_LOG_DIR = None


def log_dir():
    global _LOG_DIR
    if _LOG_DIR is None:
        _LOG_DIR = tempfile.mkdtemp(prefix="herald-it-")
        if os.environ.get("HERALD_KEEP_LOGS"):
            print(f"[harness] hub logs in {_LOG_DIR}", file=sys.stderr)
        else:
            atexit.register(shutil.rmtree, _LOG_DIR, True)
    return _LOG_DIR


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


# --------------------------------------------------------------------------------------
# The hub process

_live_procs = set()


@atexit.register
def _kill_leftovers():
    for p in list(_live_procs):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


class Hub:
    """One `herald` process on free loopback ports.

    Hub(send_queue_bytes=65536, drain_seconds=5) adds `--send-queue-bytes 65536
    --drain-seconds 5`; a value of True adds the bare flag, None leaves it out.
    start() returns once GET /health answers 200 and the WebSocket port accepts TCP.
    Use as a context manager: leaving the block stops the hub (SIGTERM) and, when the
    block raised nothing, fails unless the exit status is 0.
    """

    _ids = itertools.count(1)
    started = []  # every Hub ever started in this process, for failure reports

    def __init__(self, **options):
        self.instance_id = options.pop("instance_id", None) or f"test-{next(Hub._ids)}"
        self.options = options
        self.proc = None
        self.returncode = None
        self.port = None
        self.api_port = None
        self.log_path = None
        self.tail_printed = False

    # -- lifecycle -------------------------------------------------------------------
    def command(self):
        cmd = list(WRAPPER) + [
            HERALD_BIN,
            "--listen", f"127.0.0.1:{self.port}",
            "--api-listen", f"127.0.0.1:{self.api_port}",
            "--web-root", HERALD_WEB_ROOT,
            "--instance-id", self.instance_id,
            "--log-level", "debug",
        ]
        for name, value in self.options.items():
            if value is None or value is False:
                continue
            flag = "--" + name.replace("_", "-")
            if value is True:
                cmd.append(flag)
            else:
                cmd += [flag, str(value)]
        return cmd

    def start(self, timeout=None):
        if not os.access(HERALD_BIN, os.X_OK):
            raise AssertionError(f"hub binary not found or not executable: {HERALD_BIN} "
                                 "(set HERALD_BIN)")
        timeout = T(10) if timeout is None else timeout
        for attempt in range(3):
            self.port = free_port()
            self.api_port = free_port()
            while self.api_port == self.port:
                self.api_port = free_port()
            self.log_path = os.path.join(log_dir(), f"{self.instance_id}.{attempt}.log")
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT)
            _live_procs.add(self.proc)
            Hub.started.append(self)
            self.returncode = None
            if self._wait_up(timeout):
                return self
            # The process exited during start-up. A port taken between free_port() and
            # bind() is worth another try; anything else is a failure.
            if "in use" in self.log_tail(20).lower() and attempt < 2:
                continue
            raise AssertionError(
                f"hub exited during start-up with status {self.returncode}\n"
                f"command: {shlex.join(self.command())}\n{self.log_tail()}")
        raise AssertionError("unreachable")

    def _wait_up(self, timeout):
        deadline = time.monotonic() + timeout
        healthy = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                _live_procs.discard(self.proc)
                return False
            if not healthy:
                try:
                    status, _, _ = http_request(self.api_port, "GET", "/health", timeout=1)
                    healthy = status == 200
                except OSError:
                    pass
            if healthy:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return True
                except OSError:
                    pass
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"hub not up (GET /health 200 and --listen accepting) within "
                             f"{timeout:.0f}s\n{self.log_tail()}")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout=None):
        """Wait for the process to exit; returns its status. Kills it and fails on timeout."""
        timeout = T(15) if timeout is None else timeout
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"hub did not exit within {timeout:.1f}s\n{self.log_tail()}")
        _live_procs.discard(self.proc)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signal the hub (SIGTERM by default) and return its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            self.returncode = self.proc.returncode
            _live_procs.discard(self.proc)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def log_tail(self, lines=60):
        text = self.log_text().splitlines()[-lines:]
        return f"--- last {len(text)} lines of {self.log_path} ---\n" + "\n".join(text)

    def print_tail(self):
        if not self.tail_printed:
            self.tail_printed = True
            print(f"\n[{self.instance_id}] exit status {self.returncode}\n{self.log_tail()}",
                  file=sys.stderr)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            if self.running():
                try:
                    self.stop()
                except AssertionError:
                    pass
            self.print_tail()
            return False
        if self.proc is not None:
            rc = self.stop()  # the status it already exited with, if it has
            if rc != 0:
                self.print_tail()
                raise AssertionError(f"hub {self.instance_id} exited with status {rc} "
                                     "(expected 0, after SIGTERM)")
        return False

    # -- convenience -----------------------------------------------------------------
    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}/ws"


class HubTestCase(unittest.TestCase):
    """A TestCase that prints the tail of the hubs' logs when a test fails.

    Set hub_options (a dict) on the class to get one hub for the whole class as
    cls.hub; tearDownClass stops it and fails unless it exits 0.
    """

    hub_options = None
    hub = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.hub = None
        if cls.hub_options is not None:
            cls.hub = Hub(**cls.hub_options).start()

    @classmethod
    def tearDownClass(cls):
        hub, cls.hub = cls.hub, None
        if hub is not None:
            rc = hub.stop()
            if rc != 0:
                hub.print_tail()
                raise AssertionError(f"class hub {hub.instance_id} exited with status {rc} "
                                     "on SIGTERM (expected 0)")
        super().tearDownClass()

    def run(self, result=None):
        first = len(Hub.started)
        bad_before = len(result.failures) + len(result.errors) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > bad_before:
            hubs = Hub.started[first:]
            if type(self).hub is not None and type(self).hub not in hubs:
                hubs.append(type(self).hub)
            for hub in hubs:
                hub.print_tail()
        return out


# --------------------------------------------------------------------------------------
# HTTP

def _decode_body(headers, data):
    ctype = (headers.get("Content-Type") or "").lower()
    if "json" in ctype:
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data


def http_request(port, method, path, body=None, headers=None, timeout=None, conn=None):
    """One HTTP request to 127.0.0.1:port. Returns (status, headers, body) where body is
    parsed JSON when the answer says it is JSON, else raw bytes. With conn (an
    http.client.HTTPConnection), the request goes over that keep-alive connection."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=T(10) if timeout is None
                                          else timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, _decode_body(resp.headers, data)
    finally:
        if own:
            conn.close()


def _body_bytes(body):
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def publish(hub, body, content_type="application/json", headers=None, conn=None,
            path="/publish"):
    """POST body (an object/list is JSON-encoded; str/bytes are sent as-is) to the hub's
    /publish. content_type=None sends no Content-Type. Returns (status, headers, body)."""
    h = dict(headers or {})
    if content_type is not None:
        h["Content-Type"] = content_type
    return http_request(hub.api_port, "POST", path, body=_body_bytes(body), headers=h,
                        conn=conn)


def publish_ok(hub, channel, data, event=None, conn=None):
    """Publish one event that must be accepted; returns its id."""
    body = {"channel": channel, "data": data}
    if event is not None:
        body["event"] = event
    status, _, answer = publish(hub, body, conn=conn)
    if status != 202 or not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
        raise AssertionError(f"publish to {channel!r} answered {status} {answer!r}, "
                             "expected 202 {\"id\": ...}")
    return answer["id"]


def get(hub, path, headers=None):
    """GET path on the hub's API port. Returns (status, headers, body)."""
    return http_request(hub.api_port, "GET", path, headers=headers)


def get_static(hub, path, headers=None):
    """GET path on the hub's --listen port (dashboard files)."""
    return http_request(hub.port, "GET", path, headers=headers)


class Publisher:
    """Publishes over one keep-alive HTTP connection."""

    def __init__(self, hub, timeout=None):
        self.hub = hub
        self.conn = http.client.HTTPConnection("127.0.0.1", hub.api_port,
                                               timeout=T(10) if timeout is None else timeout)

    def publish(self, body, content_type="application/json"):
        return publish(self.hub, body, content_type=content_type, conn=self.conn)

    def publish_ok(self, channel, data, event=None):
        return publish_ok(self.hub, channel, data, event=event, conn=self.conn)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def stats(hub):
    status, _, body = get(hub, "/stats")
    if status != 200 or not isinstance(body, dict):
        raise AssertionError(f"GET /stats answered {status} {body!r}")
    return body


class Metrics:
    """Samples of a Prometheus text exposition: name -> [(labels dict, value)]."""

    _line = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$')
    _label = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3]
                continue
            m = self._line.match(line)
            if not m:
                raise AssertionError(f"not a Prometheus sample line: {raw!r}")
            labels = {}
            if m.group(3):
                rest = m.group(3)
                pos = 0
                while pos < len(rest):
                    lm = self._label.match(rest, pos)
                    if not lm:
                        raise AssertionError(f"bad labels in Prometheus line: {raw!r}")
                    labels[lm.group(1)] = lm.group(2)
                    pos = lm.end()
            value = float(m.group(4))
            self.samples.setdefault(m.group(1), []).append((labels, value))

    def get(self, name, default=None, **labels):
        """The value of the sample of name whose labels include labels, or default."""
        for sample_labels, value in self.samples.get(name, []):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
        return default

    def __contains__(self, name):
        return name in self.samples


def metrics(hub):
    status, headers, body = get(hub, "/metrics")
    if status != 200:
        raise AssertionError(f"GET /metrics answered {status} {body!r}")
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    else:
        raise AssertionError(f"GET /metrics is not text: {headers.get('Content-Type')}")
    return Metrics(body)


# --------------------------------------------------------------------------------------
# WebSocket (RFC 6455) client

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(AssertionError):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status, headers, body):
        super().__init__(f"WebSocket handshake answered {status}: {body[:200]!r}")
        self.status, self.headers, self.body = status, headers, body


class ProtocolError(AssertionError):
    """The hub sent something RFC 6455 forbids."""


class WSTimeout(AssertionError):
    """Nothing (or not the awaited thing) arrived in time."""


class ConnectionClosed(Exception):
    """The connection ended: kind is "close" (a close frame, with code and reason),
    "eof" (TCP FIN without a close frame) or "reset" (TCP RST)."""

    def __init__(self, kind, code=None, reason=None):
        super().__init__(f"connection closed: {kind} {code} {reason!r}")
        self.kind, self.code, self.reason = kind, code, reason


def _mask(key, data):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def _target_address(target, path):
    if isinstance(target, Hub):
        return "127.0.0.1", target.port, path
    if isinstance(target, int):
        return "127.0.0.1", target, path
    u = urllib.parse.urlsplit(target)
    if u.scheme != "ws":
        raise ValueError(f"only ws:// URLs: {target}")
    p = u.path or path
    if u.query:
        p += "?" + u.query
    return u.hostname, u.port or 80, p


class WS:
    """A WebSocket client connection. Replies to the hub's pings with pongs whenever it
    reads. Receiving methods raise ConnectionClosed when the connection ends and WSTimeout
    (an AssertionError) when their deadline passes."""

    EOF = "eof"
    RESET = "reset"

    def __init__(self, sock, leftover, response_headers):
        self.sock = sock
        self.response_headers = response_headers
        self._buf = bytearray(leftover)
        self._pos = 0
        self._frag_op = None
        self._frag = bytearray()
        self._send_lock = threading.Lock()
        self.closed = None  # ConnectionClosed once the connection ended
        self.close_sent = False
        self.pings_received = 0
        self.pongs = []
        self.welcome = None

    # -- connecting --------------------------------------------------------------------
    @classmethod
    def connect(cls, target, path="/ws", headers=None, timeout=None, rcvbuf=None, source=None):
        """Open a connection to a Hub, a port or a ws:// URL and complete the handshake.
        source binds the client to a local address first (any of 127.0.0.0/8 on Linux)."""
        timeout = T(5) if timeout is None else timeout
        host, port, path = _target_address(target, path)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if source:
                sock.bind((source, 0))
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                     "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                     "Sec-WebSocket-Version: 13"]
            for name, value in (headers or {}).items():
                lines.append(f"{name}: {value}")
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            deadline = time.monotonic() + timeout
            data = b""
            while b"\r\n\r\n" not in data:
                if len(data) > 65536:
                    raise ProtocolError("handshake answer headers over 64 KiB")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WSTimeout(f"no handshake answer within {timeout:.1f}s")
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionClosed("eof")
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            head_lines = head.decode("latin-1").split("\r\n")
            parts = head_lines[0].split(" ", 2)
            status = int(parts[1])
            rheaders = {}
            for line in head_lines[1:]:
                name, _, value = line.partition(":")
                rheaders[name.strip().lower()] = value.strip()
            if status != 101:
                body = rest
                want = int(rheaders.get("content-length", "0") or 0)
                while len(body) < want and time.monotonic() < deadline:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                raise HandshakeError(status, rheaders, body)
            accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
            if rheaders.get("upgrade", "").lower() != "websocket":
                raise ProtocolError(f"101 without Upgrade: websocket: {rheaders}")
            if "upgrade" not in rheaders.get("connection", "").lower():
                raise ProtocolError(f"101 without Connection: Upgrade: {rheaders}")
            if rheaders.get("sec-websocket-accept") != accept:
                raise ProtocolError(f"bad Sec-WebSocket-Accept {rheaders.get('sec-websocket-accept')!r}")
            if rheaders.get("sec-websocket-extensions"):
                raise ProtocolError("extension negotiated although none was offered")
            sock.settimeout(timeout)
            return cls(sock, rest, rheaders)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def open(cls, target, channels=(), timeout=None, **kw):
        """Connect with ?channels=..., read the welcome and one `subscribed` per channel
        (in order). Returns the WS with .welcome set."""
        timeout = T(5) if timeout is None else timeout
        path = "/ws"
        if channels:
            path += "?channels=" + ",".join(channels)
        ws = cls.connect(target, path=path, timeout=timeout, **kw)
        try:
            ws.welcome = ws.recv_json(timeout)
            if ws.welcome.get("type") != "welcome":
                raise AssertionError(f"first frame is not a welcome: {ws.welcome}")
            for ch in channels:
                msg = ws.recv_json(timeout)
                if msg != {"type": "subscribed", "channel": ch}:
                    raise AssertionError(f"expected subscribed {ch!r}, got {msg}")
        except BaseException:
            ws.abort()
            raise
        return ws

    # -- sending -------------------------------------------------------------------------
    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True):
        """Send one raw frame (any opcode, any payload, fragments with fin=False)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            header = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            header = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            header = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            frame = header + key + _mask(key, payload)
        else:
            frame = header + payload
        with self._send_lock:
            self.sock.sendall(frame)
        if opcode == OP_CLOSE:
            self.close_sent = True

    def send_text(self, text):
        """A text frame; bytes are sent as they are (possibly invalid UTF-8)."""
        self.send_frame(OP_TEXT, text)

    def send_json(self, obj):
        self.send_frame(OP_TEXT, json.dumps(obj))

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_close(self, code=1000, reason=""):
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode("utf-8")
        self.send_frame(OP_CLOSE, payload)

    # -- receiving -----------------------------------------------------------------------
    def _parse_frame(self):
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 2:
            return None
        b0, b1 = buf[pos], buf[pos + 1]
        length = b1 & 0x7F
        hl = 2
        if length == 126:
            if avail < 4:
                return None
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            hl = 4
        elif length == 127:
            if avail < 10:
                return None
            length = int.from_bytes(buf[pos + 2:pos + 10], "big")
            hl = 10
        if b1 & 0x80:
            raise ProtocolError("the hub sent a masked frame")
        if b0 & 0x70:
            raise ProtocolError(f"RSV bits set without an extension: {b0:#x}")
        if avail < hl + length:
            return None
        payload = bytes(buf[pos + hl:pos + hl + length])
        self._pos = pos + hl + length
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def _next_message(self):
        """The next complete data message (opcode, payload) from the buffer, or None.
        Handles control frames; raises ConnectionClosed on a close frame."""
        while True:
            frame = self._parse_frame()
            if frame is None:
                return None
            fin, op, payload = frame
            if op >= 0x8:
                if not fin or len(payload) > 125:
                    raise ProtocolError(f"bad control frame op={op} fin={fin} len={len(payload)}")
                if op == OP_PING:
                    self.pings_received += 1
                    try:
                        self.send_frame(OP_PONG, payload)
                    except OSError:
                        pass
                elif op == OP_PONG:
                    self.pongs.append(payload)
                elif op == OP_CLOSE:
                    if len(payload) == 1:
                        raise ProtocolError("close frame with a 1-byte payload")
                    code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                    try:
                        reason = payload[2:].decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError(f"close reason is not UTF-8: {payload[2:]!r}")
                    if not self.close_sent:
                        try:
                            self.send_close(code if payload else None)
                        except OSError:
                            pass
                    self.closed = ConnectionClosed("close", code, reason)
                    raise self.closed
                else:
                    raise ProtocolError(f"unknown control opcode {op:#x}")
                continue
            if op == OP_CONT:
                if self._frag_op is None:
                    raise ProtocolError("continuation frame without a message")
                self._frag += payload
                if fin:
                    msg = (self._frag_op, bytes(self._frag))
                    self._frag_op, self._frag = None, bytearray()
                    return msg
            elif op in (OP_TEXT, OP_BINARY):
                if self._frag_op is not None:
                    raise ProtocolError("data frame inside a fragmented message")
                if fin:
                    return op, payload
                self._frag_op, self._frag = op, bytearray(payload)
            else:
                raise ProtocolError(f"reserved opcode {op:#x}")

    def _fill(self, timeout):
        """One recv() into the buffer. Returns False on timeout; raises ConnectionClosed."""
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self.sock.settimeout(max(timeout, 0.0005))
        try:
            data = self.sock.recv(262144)
        except (socket.timeout, BlockingIOError):
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.closed = ConnectionClosed("reset")
            raise self.closed
        if not data:
            self.closed = ConnectionClosed("eof")
            raise self.closed
        self._buf += data
        return True

    def recv_message(self, timeout=None):
        """The next data message as (opcode, payload bytes)."""
        timeout = T(5) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if self.closed is not None:
                raise ConnectionClosed(self.closed.kind, self.closed.code, self.closed.reason)
            msg = self._next_message()
            if msg is not None:
                return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WSTimeout(f"no message within {timeout:.1f}s")
            self._fill(remaining)

    def recv_json(self, timeout=None):
        """The next message, which must be a text frame holding one JSON object."""
        op, payload = self.recv_message(timeout)
        if op != OP_TEXT:
            raise ProtocolError(f"expected a text frame, got opcode {op:#x}")
        try:
            obj = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ProtocolError(f"hub sent a frame that is not UTF-8 JSON ({e}): {payload[:200]!r}")
        if not isinstance(obj, dict):
            raise ProtocolError(f"hub sent JSON that is not an object: {obj!r}")
        return obj

    def recv_until(self, predicate, timeout=None, skipped=None):
        """Read JSON messages until predicate(msg); returns that message. The ones before
        it are appended to skipped (a list) when given."""
        timeout = T(5) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WSTimeout(f"no matching message within {timeout:.1f}s")
            try:
                msg = self.recv_json(remaining)
            except WSTimeout:
                raise WSTimeout(f"no matching message within {timeout:.1f}s")
            if predicate(msg):
                return msg
            if skipped is not None:
                skipped.append(msg)

    def recv_event(self, timeout=None, skipped=None):
        return self.recv_until(lambda m: m.get("type") == "event", timeout, skipped)

    def request(self, obj, timeout=None):
        """Send obj and return the next JSON message."""
        self.send_json(obj)
        return self.recv_json(timeout)

    def expect_close(self, timeout=None):
        """Read and discard messages until the connection ends. Returns (code, reason)
        for a close frame, (WS.EOF, None) for a FIN without one, (WS.RESET, None) for a
        reset. The number of discarded messages is kept in self.discarded."""
        timeout = T(5) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.discarded = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WSTimeout(f"the hub did not close the connection within {timeout:.1f}s")
            try:
                self.discarded.append(self.recv_message(remaining))
            except WSTimeout:
                continue
            except ConnectionClosed as c:
                if c.kind == "close":
                    return c.code, c.reason
                return c.kind, None

    def wait_pong(self, payload, timeout=None):
        """Read until a pong control frame with payload arrives (data messages are kept
        in self.discarded)."""
        timeout = T(5) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.discarded = []
        while payload not in self.pongs:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WSTimeout(f"no pong {payload!r} within {timeout:.1f}s")
            msg = self._next_message()
            if msg is not None:
                self.discarded.append(msg)
                continue
            if payload in self.pongs:
                break
            self._fill(remaining)
        return True

    # -- closing -------------------------------------------------------------------------
    def close(self, code=1000, reason="", timeout=None):
        """Close handshake: send a close frame, wait (bounded) for the hub's, close the
        socket. Returns the hub's close code (or WS.EOF / WS.RESET), None on timeout."""
        timeout = T(2) if timeout is None else timeout
        result = None
        try:
            if self.closed is None:
                if not self.close_sent:
                    self.send_close(code, reason)
                try:
                    result = self.expect_close(timeout)[0]
                except WSTimeout:
                    result = None
            else:
                result = self.closed.code if self.closed.kind == "close" else self.closed.kind
        except OSError:
            result = WS.RESET
        finally:
            self.abort()
        return result

    def abort(self):
        """Close the TCP socket without a close handshake."""
        try:
            self.sock.close()
        except OSError:
            pass

    def fileno(self):
        return self.sock.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.close()
        except Exception:
            self.abort()
        return False


def recv_many(clients, count=None, until=None, timeout=None):
    """Read JSON messages from many WS clients at once (selectors, one thread).

    Each client is done after `count` messages, or when until(list_of_its_messages) is
    true. Returns {ws: [messages]} in client order; messages past a client's end stay
    buffered in it. Fails (AssertionError) when the timeout passes first or a client's
    connection ends.
    """
    if (count is None) == (until is None):
        raise ValueError("give exactly one of count and until")
    timeout = T(10) if timeout is None else timeout

    def done(ws):
        msgs = results[ws]
        return len(msgs) >= count if count is not None else until(msgs)

    def drain(ws):
        while not done(ws):
            msg = ws._next_message()
            if msg is None:
                return
            op, payload = msg
            if op != OP_TEXT:
                raise ProtocolError(f"expected a text frame, got opcode {op:#x}")
            results[ws].append(json.loads(payload.decode("utf-8")))

    results = {ws: [] for ws in clients}
    sel = selectors.DefaultSelector()
    pending = 0
    try:
        for ws in clients:
            try:
                drain(ws)
            except ConnectionClosed as c:
                raise AssertionError(f"client closed while reading: {c}")
            if not done(ws):
                sel.register(ws.sock, selectors.EVENT_READ, ws)
                pending += 1
        deadline = time.monotonic() + timeout
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                counts = sorted(len(m) for m in results.values())
                raise WSTimeout(f"{pending} of {len(clients)} clients incomplete after "
                                f"{timeout:.1f}s (messages per client: min {counts[0]}, "
                                f"max {counts[-1]})")
            for key, _ in sel.select(min(remaining, 0.5)):
                ws = key.data
                try:
                    ws._fill(0)
                    drain(ws)
                except ConnectionClosed as c:
                    raise AssertionError(f"a client's connection ended after "
                                         f"{len(results[ws])} messages: {c}")
                if done(ws):
                    sel.unregister(ws.sock)
                    pending -= 1
    finally:
        sel.close()
    return results


class BackgroundReader:
    """Reads JSON messages from one WS in a thread (e.g. a client that must keep reading
    while the test publishes). .messages holds what arrived; .closed the end, if any."""

    def __init__(self, ws):
        self.ws = ws
        self.messages = []
        self.error = None
        self.closed = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                msg = self.ws.recv_json(0.1)
            except WSTimeout:
                continue
            except ConnectionClosed as c:
                self.closed = c
                break
            except BaseException as e:  # reported by wait_for / stop
                self.error = e
                break
            with self._cond:
                self.messages.append(msg)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate, timeout, what="messages"):
        """Wait until predicate(messages) holds; returns the messages list."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                if self.error is not None:
                    raise AssertionError(f"reader failed: {self.error!r}")
                if self.closed is not None:
                    raise AssertionError(f"connection ended while waiting for {what}: "
                                         f"{self.closed}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} "
                                         f"({len(self.messages)} messages so far)")
                self._cond.wait(min(remaining, 0.2))
            return list(self.messages)

    def stop(self):
        self._stop.set()
        self._thread.join(T(5))
        if self.error is not None:
            raise AssertionError(f"reader failed: {self.error!r}")


# --------------------------------------------------------------------------------------
# Other processes (herald-sub)

class Proc:
    """A child process with stdout and stderr collected line by line in threads."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        _live_procs.add(self.p)
        self.out = []
        self.err = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.out),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.p.stderr, self.err),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, stream, lines):
        for raw in iter(stream.readline, b""):
            with self._cond:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait_lines(self, lines, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = predicate(lines)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}"
                                         f"\n{self.describe()}")
                if self.p.poll() is not None and all(not t.is_alive() for t in self._threads):
                    found = predicate(lines)
                    if found:
                        return found
                    raise AssertionError(f"process exited ({self.p.returncode}) before "
                                         f"{what}\n{self.describe()}")
                self._cond.wait(min(remaining, 0.1))

    def wait_stderr(self, substring, timeout=None):
        """Wait for a stderr line containing substring; returns it."""
        return self._wait_lines(self.err, lambda ls: next((l for l in ls if substring in l),
                                                          None),
                                T(5) if timeout is None else timeout, f"{substring!r} on stderr")

    def wait_stdout_lines(self, n, timeout=None):
        return self._wait_lines(self.out, lambda ls: list(ls) if len(ls) >= n else None,
                                T(5) if timeout is None else timeout, f"{n} stdout lines")

    def wait(self, timeout=None):
        """Wait for exit and for its output to be read; returns the exit status."""
        timeout = T(10) if timeout is None else timeout
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{os.path.basename(self.argv[0])} did not exit within "
                                 f"{timeout:.1f}s\n{self.describe()}")
        for t in self._threads:
            t.join(T(5))
        _live_procs.discard(self.p)
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)
        _live_procs.discard(self.p)

    def describe(self):
        with self._cond:
            return (f"command: {shlex.join(self.argv)}\nexit: {self.p.poll()}\n"
                    f"stdout:\n" + "\n".join(self.out[-20:]) +
                    "\nstderr:\n" + "\n".join(self.err[-20:]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        for t in self._threads:
            t.join(T(5))
        for stream in (self.p.stdout, self.p.stderr):
            stream.close()
        return False


def herald_sub(*args):
    """Start herald-sub with args."""
    if not os.access(HERALD_SUB_BIN, os.X_OK):
        raise AssertionError(f"herald-sub not found or not executable: {HERALD_SUB_BIN} "
                             "(set HERALD_SUB_BIN)")
    return Proc([HERALD_SUB_BIN] + [str(a) for a in args])
