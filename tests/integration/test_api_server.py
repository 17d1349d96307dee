"""test_api_server.py -- the HTTP API's own server (hub/control/http.c) as clients meet it:
the head judged before the body (a refusal costs no body), a cap on connections, one deadline
per request instead of per byte, keep-alive, pipelined requests answered in order, chunked
bodies, Expect: 100-continue, HTTP/1.0, and malformed or oversized heads."""

import json
import socket
import time
import unittest

from harness import Hub, HubTestCase, T, WS, metrics, publish_ok, unique_channel, wait_until
from util import parse_answer_head

KEY = "0123456789abcdef-api-server"


def connect(hub):
    sock = socket.create_connection(("127.0.0.1", hub.api_port), timeout=T(5))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answers(sock, n, timeout=None):
    """Reads n HTTP answers (status, headers dict with lower-case names, body bytes)."""
    deadline = time.monotonic() + (timeout or T(5))
    data, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in data:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} answers: {data[:200]!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers = parse_answer_head(head)
        length = int(headers.get("content-length", 0))
        while len(rest) < length:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a body")
            rest += chunk
        if status != 100:
            out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


def post(path, body, headers=(), version="1.1"):
    lines = [f"POST {path} HTTP/{version}", "Host: hub", "Content-Type: application/json",
             f"Content-Length: {len(body)}"] + list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def closed_by_peer(sock, timeout):
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


class HeadBeforeBodyTest(HubTestCase):
    hub_options = {"api_key": KEY, "max_message_bytes": 4096}

    def test_a_refusal_at_the_head_needs_no_body(self):
        """401, 415 and 413 are answered from the head: the client sent none of its
        announced megabyte, and gets its answer at once."""
        cases = [
            ([], 401, "unauthorized"),
            ([f"Authorization: Bearer {KEY}", "Content-Type: text/plain"], 415,
             "unsupported_media_type"),
            ([f"Authorization: Bearer {KEY}"], 413, "too_large"),
        ]
        for headers, status, code in cases:
            with self.subTest(status=status):
                sock = connect(self.hub)
                try:
                    head = ["POST /publish HTTP/1.1", "Host: hub", "Content-Length: 1048576"]
                    if not any(h.startswith("Content-Type") for h in headers):
                        head.append("Content-Type: application/json")
                    sock.sendall(("\r\n".join(head + headers) + "\r\n\r\n").encode())
                    (got, hdrs, body), = read_answers(sock, 1, T(2))
                    self.assertEqual(got, status, body)
                    self.assertEqual(json.loads(body)["error"], code)
                    # a body this large is not read: the connection ends with the answer
                    self.assertEqual(hdrs.get("connection"), "close")
                    self.assertTrue(closed_by_peer(sock, T(2)))
                finally:
                    sock.close()

    def test_a_small_refused_body_is_skipped_and_the_connection_kept(self):
        sock = connect(self.hub)
        try:
            ch = unique_channel("skip")
            body = json.dumps({"channel": ch, "data": 1}).encode()
            sock.sendall(post("/publish", body) +  # no key: 401, body skipped
                         post("/publish", body, [f"Authorization: Bearer {KEY}"]))
            (s1, _, _), (s2, _, b2) = read_answers(sock, 2)
            self.assertEqual((s1, s2), (401, 202), b2)
        finally:
            sock.close()


class PipelineTest(HubTestCase):
    hub_options = {}

    def test_pipelined_requests_are_answered_in_order(self):
        ch = unique_channel("pipe")
        with WS.open(self.hub, channels=[ch]) as ws:
            sock = connect(self.hub)
            try:
                reqs = b""
                for i in range(50):
                    if i % 10 == 5:
                        reqs += b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n"
                    else:
                        reqs += post("/publish", json.dumps({"channel": ch, "data": i}).encode())
                sock.sendall(reqs)  # all at once: one write, many requests
                answers = read_answers(sock, 50)
                ids = []
                for i, (status, _, body) in enumerate(answers):
                    if i % 10 == 5:
                        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))
                    else:
                        self.assertEqual(status, 202, body)
                        ids.append(json.loads(body)["id"])
                got = [ws.recv_event(T(5)) for _ in ids]
                self.assertEqual([m["id"] for m in got], ids)
                self.assertEqual([m["data"] for m in got],
                                 [i for i in range(50) if i % 10 != 5])
            finally:
                sock.close()

    def test_chunked_body(self):
        ch = unique_channel("chunk")
        with WS.open(self.hub, channels=[ch]) as ws:
            sock = connect(self.hub)
            try:
                body = json.dumps({"channel": ch, "data": {"text": "x" * 300}}).encode()
                chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 37]), body[i:i + 37])
                                  for i in range(0, len(body), 37))
                sock.sendall(b"POST /publish HTTP/1.1\r\nHost: hub\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n" + chunks[:50])
                time.sleep(0.1)
                sock.sendall(chunks[50:] + b"0\r\nX-Trailer: 1\r\n\r\n")
                (status, _, answer), = read_answers(sock, 1)
                self.assertEqual(status, 202, answer)
                self.assertEqual(ws.recv_event(T(5))["data"], {"text": "x" * 300})
            finally:
                sock.close()

    def test_expect_100_continue(self):
        sock = connect(self.hub)
        try:
            body = json.dumps({"channel": unique_channel("cont"), "data": 1}).encode()
            sock.sendall(post("/publish", body, ["Expect: 100-continue"])[:-len(body)])
            sock.settimeout(T(2))
            interim = sock.recv(100)
            self.assertTrue(interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim)
            sock.sendall(body)
            (status, _, answer), = read_answers(sock, 1)
            self.assertEqual(status, 202, answer)
        finally:
            sock.close()

    def test_http_1_0(self):
        for keep in (False, True):
            with self.subTest(keep_alive=keep):
                sock = connect(self.hub)
                try:
                    extra = "Connection: keep-alive\r\n" if keep else ""
                    sock.sendall(f"GET /health HTTP/1.0\r\n{extra}\r\n".encode())
                    (status, headers, _), = read_answers(sock, 1)
                    self.assertEqual(status, 200)
                    self.assertEqual(headers.get("connection"),
                                     "keep-alive" if keep else "close")
                    self.assertEqual(closed_by_peer(sock, 0.5), not keep)
                finally:
                    sock.close()

    def test_malformed_heads(self):
        cases = [
            (b"GET /health HTTP/2.0\r\n\r\n", 505),
            (b"GET /health\r\n\r\n", 400),
            (b"GET /health HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
            (b"GET /health HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
            (b"POST /publish HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            (b"POST /publish HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
             400),
            (b"POST /publish HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (b"GET /health HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n", 431),
        ]
        for raw, status in cases:
            with self.subTest(raw=raw[:60]):
                sock = connect(self.hub)
                try:
                    sock.sendall(raw)
                    (got, headers, body), = read_answers(sock, 1)
                    self.assertEqual(got, status, body)
                    self.assertEqual(json.loads(body)["error"], "bad_request")
                    self.assertTrue(closed_by_peer(sock, T(2)))
                finally:
                    sock.close()
        # and the hub still answers
        sock = connect(self.hub)
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
            self.assertEqual(read_answers(sock, 1)[0][0], 200)
        finally:
            sock.close()


class ConnectionCapTest(HubTestCase):
    hub_options = {"api_max_connections": 3}

    def test_past_the_cap_a_connection_gets_503(self):
        held = [connect(self.hub) for _ in range(3)]
        try:
            for s in held:  # each is a real connection
                s.sendall(b"GET /health HTTP/1.1\r\n\r\n")
                self.assertEqual(read_answers(s, 1)[0][0], 200)
            extra = connect(self.hub)
            try:
                (status, headers, body), = read_answers(extra, 1)
                self.assertEqual(status, 503)
                self.assertEqual(json.loads(body)["error"], "unavailable")
                self.assertIn("retry-after", headers)
                self.assertTrue(closed_by_peer(extra, T(2)))
            finally:
                extra.close()
        finally:
            for s in held:
                s.close()
        wait_until(lambda: metrics(self.hub).get("herald_api_refused_total", 0,
                                                 reason="capacity") >= 1, T(5),
                   "the refusal counted")
        # a place is free again once one closes
        wait_until(lambda: metrics(self.hub).get("herald_api_connections") <= 1, T(5),
                   "the held connections to close")


class DeadlineTest(HubTestCase):
    hub_options = {"api_request_seconds": 1}

    def test_a_slow_client_is_cut_by_one_deadline(self):
        """A byte every 200 ms once kept a connection forever (the timeout restarted on every
        byte); now the request must be whole within --api-request-seconds."""
        sock = connect(self.hub)
        try:
            started = time.monotonic()
            request = b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Slow: " + b"s" * 100
            answer = b""
            for byte in request:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                sock.settimeout(0.2)
                try:
                    got = sock.recv(4096)
                    if not got:
                        break
                    answer += got
                except (socket.timeout, TimeoutError):
                    pass
                except OSError:  # reset: the hub closed after its answer
                    break
                if time.monotonic() - started > T(10):
                    break
            elapsed = time.monotonic() - started
            self.assertIn(b" 408 ", answer.split(b"\r\n")[0] if answer else b"", answer[:200])
            self.assertLess(elapsed, T(5), "the slow request was not cut near its deadline")
        finally:
            sock.close()

    def test_an_idle_keep_alive_connection_is_not_cut_by_the_request_deadline(self):
        sock = connect(self.hub)
        try:
            for _ in range(3):
                sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
                self.assertEqual(read_answers(sock, 1)[0][0], 200)
                time.sleep(1.3)  # longer than the request deadline, between requests
        finally:
            sock.close()


if __name__ == "__main__":
    unittest.main()
