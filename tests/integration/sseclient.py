"""sseclient.py -- a raw HTTP/1.1 client for the hub's GET /sse (SPEC.md "Server-sent events"):
one socket, the request written by hand, the text/event-stream answer parsed by the WHATWG
rules an EventSource follows (lines end in CR LF, CR or LF; `field: value` with one leading
space dropped; a blank line dispatches; `:` starts a comment; an event's id is the last id:
seen, kept across events). Standard library only.

  SSE.connect(hub, "/sse?channels=a,b", headers={"Last-Event-ID": ...}) -> SSE, or raises
      SSERefused(status, headers, body) for any status but 200
  sse.next_event(timeout) -> Event(id, event, data, json)   (comments go to sse.comments)
  sse.wait_comment("hb", timeout)
  sse.read_until_end(timeout) -> the events before the response ended
"""

import json
import socket
import time
from dataclasses import dataclass

from util import HeadEOF, HeadTimeout, T, open_exchange, read_answer_body


class SSERefused(AssertionError):
    """The hub answered the request with another status than 200."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body)
        except ValueError:
            self.json = None
        super().__init__(f"HTTP {status}: {body[:300]!r}")


class SSEEnded(AssertionError):
    """The response ended (the hub closed the connection)."""


class SSETimeout(AssertionError):
    pass


@dataclass
class Event:
    id: str     # the stream's last event id when it was dispatched (EventSource.lastEventId)
    event: str  # the type ("message" when no event: field)
    data: str
    had_id: bool  # this event itself carried an id: line

    @property
    def json(self):
        return json.loads(self.data)


def _port_of(target):
    return target if isinstance(target, int) else target.port


class SSE:
    def __init__(self, sock, leftover, status, headers):
        self.sock = sock
        self.status = status
        self.headers = headers
        self._buf = bytearray(leftover)
        self._pending_cr = False
        self.comments = []
        self.backlog = []  # events read while looking for something else, next_event's first
        self.last_event_id = ""
        self.ended = False
        # the event being built
        self._data = []
        self._type = ""
        self._had_id = False

    @classmethod
    def connect(cls, target, path, headers=None, timeout=None, source=None, rcvbuf=None):
        """GET path on a Hub's (or a port's) --listen. Returns the open stream; raises
        SSERefused with the answer for any other status than 200."""
        timeout = T(5) if timeout is None else timeout
        port = _port_of(target)
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
                 "Accept: text/event-stream", "Cache-Control: no-cache"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        try:
            sock, status, rheaders, rest = open_exchange("127.0.0.1", port, request, timeout,
                                                         source=source, rcvbuf=rcvbuf)
        except HeadTimeout:
            raise SSETimeout(f"no answer to GET {path} within {timeout:.1f}s") from None
        except HeadEOF:
            raise SSEEnded(f"connection closed before an answer to GET {path}") from None
        if status != 200:
            try:
                raise SSERefused(status, rheaders, read_answer_body(sock, rheaders, rest, timeout))
            finally:
                sock.close()
        return cls(sock, rest, status, rheaders)

    # -- reading ---------------------------------------------------------------------------
    def _fill(self, timeout):
        self.sock.settimeout(max(0.001, timeout))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.ended = True
            return
        self._buf += chunk

    def _next_line(self):
        """The next whole line (str, without its end), or None."""
        buf = self._buf
        if self._pending_cr and buf:  # a CR ended the last line: an LF right after is its own
            if buf[:1] == b"\n":
                del buf[:1]
            self._pending_cr = False
        for i, b in enumerate(buf):
            if b in (0x0A, 0x0D):
                line = bytes(buf[:i]).decode("utf-8")
                if b == 0x0D:
                    if i + 1 < len(buf):
                        drop = 2 if buf[i + 1] == 0x0A else 1
                    else:
                        drop = 1
                        self._pending_cr = True
                else:
                    drop = 1
                del buf[:i + drop]
                return line
        return None

    def _line(self, line):
        """Feeds one line; returns an Event when it dispatched one."""
        if line == "":
            if not self._data:
                self._type = ""
                self._had_id = False
                return None
            ev = Event(self.last_event_id, self._type or "message", "\n".join(self._data),
                       self._had_id)
            self._data, self._type, self._had_id = [], "", False
            return ev
        if line.startswith(":"):
            self.comments.append(line[1:].lstrip(" "))
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
            self._had_id = True
        return None

    def _step(self, deadline):
        """Handles one line, or reads more. Returns an Event when one was dispatched, else
        None; raises SSEEnded at the end of the stream, SSETimeout past deadline."""
        line = self._next_line()
        if line is not None:
            return self._line(line)
        if self.ended:
            raise SSEEnded("the stream ended")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SSETimeout("deadline passed")
        self._fill(remaining)
        return None

    def next_event(self, timeout=None):
        """The next dispatched event (first those kept in self.backlog); comments seen
        meanwhile go to self.comments."""
        if self.backlog:
            return self.backlog.pop(0)
        timeout = T(5) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self._step(deadline)
            except SSETimeout:
                raise SSETimeout(f"no event within {timeout:.1f}s")
            if ev is not None:
                return ev

    def next_of(self, kind, timeout=None, skipped=None):
        """The next event of type kind (others are appended to skipped when given)."""
        timeout = T(5) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next_event(max(0.001, deadline - time.monotonic()))
            if ev.event == kind:
                return ev
            if skipped is not None:
                skipped.append(ev)

    def wait_comment(self, text, timeout=None):
        """Reads until a new comment `text` comes; events read meanwhile are kept in
        self.backlog."""
        timeout = T(5) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        seen = self.comments.count(text)
        while self.comments.count(text) == seen:
            try:
                ev = self._step(deadline)
            except SSETimeout:
                raise SSETimeout(f"no comment {text!r} within {timeout:.1f}s "
                                 f"(comments: {self.comments})")
            if ev is not None:
                self.backlog.append(ev)

    def read_until_end(self, timeout=None):
        """Every event until the hub ends the response; fails if it has not within timeout."""
        timeout = T(5) if timeout is None else timeout
        deadline = time.monotonic() + timeout
        events = []
        while True:
            try:
                events.append(self.next_event(max(0.001, deadline - time.monotonic())))
            except SSEEnded:
                return events

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
