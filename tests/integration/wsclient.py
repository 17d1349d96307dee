"""wsclient.py -- the RFC 6455 WebSocket client the tests speak to the hub with: raw sockets
(or TLS over them: wss), handshake, masking, fragmentation-aware frame parsing, close codes and automatic pongs (WS
and its errors; token_path and upgrade_request build what it sends), opening many clients
(open_many), reading many at once (recv_many, recv_many_while: while publishers run in
threads), the exactly-once check (assert_nothing_more), and reading one client in a thread
(BackgroundReader). Standard library only."""

import base64
import hashlib
import json
import os
import selectors
import socket
import ssl
import struct
import threading
import time
import urllib.parse

from util import HeadEOF, HeadTimeout, T, open_exchange, read_answer_body

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


def positionless(msg):
    """A subscribed frame without its position (epoch and seq), which it must carry: for
    comparing the rest exactly. Other frames come back as they are."""
    if msg.get("type") != "subscribed":
        return msg
    if not isinstance(msg.get("epoch"), str) or not isinstance(msg.get("seq"), int):
        raise AssertionError(f"subscribed without a position: {msg}")
    return {k: v for k, v in msg.items() if k not in ("epoch", "seq")}


def token_path(token=None, channels=()):
    """/ws with ?token= and ?channels= as given."""
    query = []
    if token is not None:
        query.append("token=" + token)
    if channels:
        query.append("channels=" + ",".join(channels))
    return "/ws" + ("?" + "&".join(query) if query else "")


def upgrade_request(host, port, path, headers=None):
    """A fresh Sec-WebSocket-Key and the bytes of an upgrade request for path that sends it,
    with headers (a dict) added: (key, request)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return key, ("\r\n".join(lines) + "\r\n\r\n").encode()


def _target_address(target, path):
    """(host, port, path) for a port number, a ws:// or wss:// URL, or a Hub (anything else
    with a .port: the client does not depend on hubproc)."""
    if isinstance(target, int):
        return "127.0.0.1", target, path
    if not isinstance(target, str):
        return "127.0.0.1", target.port, path
    u = urllib.parse.urlsplit(target)
    if u.scheme not in ("ws", "wss"):
        raise ValueError(f"only ws:// and wss:// URLs: {target}")
    p = u.path or path
    if u.query:
        p += "?" + u.query
    return u.hostname, u.port or (443 if u.scheme == "wss" else 80), p


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
    def connect(cls, target, path="/ws", headers=None, timeout=None, rcvbuf=None, source=None,
                tls=None):
        """Open a connection to a Hub, a port or a ws:// URL and complete the handshake.
        source binds the client to a local address first (any of 127.0.0.0/8 on Linux).
        tls (an ssl.SSLContext) speaks TLS first (wss), naming the host as the server; the
        TLS socket is then .sock, with its certificate, version and session."""
        timeout = T(5) if timeout is None else timeout
        host, port, path = _target_address(target, path)
        key, request = upgrade_request(host, port, path, headers)
        try:
            sock, status, rheaders, rest = open_exchange(host, port, request, timeout,
                                                         source=source, rcvbuf=rcvbuf, tls=tls)
        except HeadTimeout:
            raise WSTimeout(f"no handshake answer within {timeout:.1f}s") from None
        except HeadEOF:
            raise ConnectionClosed("eof") from None
        try:
            if status != 101:
                raise HandshakeError(status, rheaders,
                                     read_answer_body(sock, rheaders, rest, timeout))
            accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
            if rheaders.get("upgrade", "").lower() != "websocket":
                raise ProtocolError(f"101 without Upgrade: websocket: {rheaders}")
            if "upgrade" not in rheaders.get("connection", "").lower():
                raise ProtocolError(f"101 without Connection: Upgrade: {rheaders}")
            if rheaders.get("sec-websocket-accept") != accept:
                raise ProtocolError(f"bad Sec-WebSocket-Accept {rheaders.get('sec-websocket-accept')!r}")
            if rheaders.get("sec-websocket-extensions"):
                raise ProtocolError("extension negotiated although none was offered")
            return cls(sock, rest, rheaders)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def open(cls, target, channels=(), token=None, bearer=None, headers=None, timeout=None,
             **kw):
        """Connect with ?channels=... (and the token in ?token=, or as Authorization: Bearer
        bearer), read the welcome and one `subscribed` per channel (in order). Returns the
        WS with .welcome set. kw: connect's rcvbuf and source."""
        timeout = T(5) if timeout is None else timeout
        h = dict(headers or {})
        if bearer is not None:
            h["Authorization"] = "Bearer " + bearer
        ws = cls.connect(target, path=token_path(token, channels), headers=h, timeout=timeout,
                         **kw)
        try:
            ws.welcome = ws.recv_json(timeout)
            if ws.welcome.get("type") != "welcome":
                raise AssertionError(f"first frame is not a welcome: {ws.welcome}")
            # one subscribed per channel, each once its position is known (the hub's own '$'
            # channels may answer before the others); ws.positions keeps (epoch, seq)
            ws.positions = {}
            while len(ws.positions) < len(channels):
                msg = ws.recv_json(timeout)
                ch = msg.get("channel")
                if msg.get("type") != "subscribed" or ch not in channels or \
                        ch in ws.positions or not isinstance(msg.get("epoch"), str) or \
                        not isinstance(msg.get("seq"), int) or \
                        set(msg) - {"type", "channel", "epoch", "seq", "recovered"}:
                    raise AssertionError(f"expected subscribed to one of {channels}, got {msg}")
                ws.positions[ch] = (msg["epoch"], msg["seq"])
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
        except ssl.SSLEOFError:  # TCP FIN without TLS's close_notify
            self.closed = ConnectionClosed("eof")
            raise self.closed
        except ssl.SSLError as e:
            self.closed = ConnectionClosed("reset", reason=str(e))
            raise self.closed
        if not data:
            self.closed = ConnectionClosed("eof")
            raise self.closed
        self._buf += data
        # TLS: the rest of a record already decrypted, which no select() would announce
        while isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            self._buf += self.sock.recv(self.sock.pending())
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


def recv_many_while(clients, jobs, count=None, until=None, timeout=None):
    """recv_many(clients, count, until, timeout) while each of jobs (callables, e.g. ones
    that publish) runs in a thread of its own. Returns what recv_many read once every job
    has ended; fails when a job raised or is still running a timeout after the reading."""
    timeout = T(10) if timeout is None else timeout
    failures = []

    def run(job):
        try:
            job()
        except BaseException as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=run, args=(job,), daemon=True) for job in jobs]
    for t in threads:
        t.start()
    try:
        got = recv_many(clients, count=count, until=until, timeout=timeout)
    finally:
        for t in threads:
            t.join(timeout)
    if any(t.is_alive() for t in threads):
        raise AssertionError("publisher still running")
    if failures:
        raise AssertionError(f"publisher failed: {failures[0]!r}") from failures[0]
    return got


def assert_nothing_more(test, clients, ref="end", timeout=None):
    """Exactly once: after the events, the next frame every client gets is the pong to a
    ping sent now."""
    for ws in clients:
        ws.send_json({"type": "ping", "ref": ref})
    tail = recv_many(clients, count=1, timeout=T(10) if timeout is None else timeout)
    for n, msgs in enumerate(tail.values()):
        test.assertEqual(msgs, [{"type": "pong", "ref": ref}],
                         f"client {n}: something after the expected events")


def open_many(targets, channels, per_target=1, **kw):
    """per_target clients of channels (WS.open) on each of targets in turn: [(target, ws)].
    When one fails, the ones already open are aborted."""
    out = []
    try:
        for target in targets:
            for _ in range(per_target):
                out.append((target, WS.open(target, channels=channels, **kw)))
    except BaseException:
        for _, ws in out:
            ws.abort()
        raise
    return out


class BackgroundReader:
    """Reads JSON messages from one WS in a thread (e.g. a client that must keep reading
    while the test publishes). .messages holds what arrived, .arrivals the wall-clock time
    (ms since the epoch) each message arrived at, .closed the end, if any. name is what
    failures call it."""

    def __init__(self, ws, name="reader"):
        self.ws = ws
        self.name = name
        self.messages = []
        self.arrivals = []
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
            now = time.time() * 1000.0
            with self._cond:
                self.messages.append(msg)
                self.arrivals.append(now)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate, timeout, what="messages"):
        """Wait until predicate(messages) holds; returns the messages list."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                if self.error is not None:
                    raise AssertionError(f"the {self.name} failed: {self.error!r}")
                if self.closed is not None:
                    raise AssertionError(f"the {self.name}'s connection ended while waiting "
                                         f"for {what}: {self.closed}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} "
                                         f"at the {self.name} ({len(self.messages)} messages "
                                         "so far)")
                self._cond.wait(min(remaining, 0.2))
            return list(self.messages)

    def events(self):
        """The `event` messages so far."""
        with self._cond:
            return [m for m in self.messages if m.get("type") == "event"]

    def wait_events(self, n, timeout, what=None):
        """Wait until n `event` messages have arrived."""
        self.wait_for(lambda ms: sum(1 for m in ms if m.get("type") == "event") >= n,
                      timeout, what or f"{n} events")

    def ping(self, ref, timeout=None):
        """Send a ping with ref and wait until the thread has read its pong."""
        pong = {"type": "pong", "ref": ref}
        self.ws.send_json({"type": "ping", "ref": ref})
        self.wait_for(lambda ms: pong in ms, T(5) if timeout is None else timeout,
                      f"pong {ref!r}")
        return True

    def timed(self):
        """(arrival ms, message) of every message so far."""
        with self._cond:
            return list(zip(self.arrivals, self.messages))

    def stop(self):
        self._stop.set()
        self._thread.join(T(5))
        if self.error is not None:
            raise AssertionError(f"the {self.name} failed: {self.error!r}")
