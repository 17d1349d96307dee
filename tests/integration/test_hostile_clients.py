"""test_hostile_clients.py -- what an attacker on the network tries against admission and the
API, each against a real hub (and a real redis-server where it matters):

  - an upgrade that names another protocol (herald-accept, the one that once adopted the
    listen socket) never reaches anything but /ws's own checks;
  - a header too long for the hub's buffer (Origin, X-Forwarded-For, Authorization, the token
    in the query) is refused, never taken for absent;
  - SIGTERM while a Redis publish's rate count is pending answers that publish 503 and exits 0;
  - channel names cannot flood the hub: --max-channels caps the distinct names, and the joins
    of ?channels= count against the connection's frame budget (the keyed hash itself is
    tests/unit/test_keyhash.c);
  - behind a trusted proxy, every X-Forwarded-For line counts: a client's own line cannot
    evade --publish-rate;
  - per-address limits count an IPv6 client by its /64, and the in-process publish limiter
    forgets only the least recently seen publisher when it is full."""

import http.client
import os
import signal
import socket
import time
import unittest

from authlib import write_file
from harness import (Hub, HubTestCase, T, WS, ConnectionClosed, HandshakeError, metrics,
                     publish, stats, unique_channel, wait_until)
from redislib import RedisServer, ready_status

SECRET = write_file("hostile.secret", "H" * 32)


def raw_upgrade(hub, path="/ws", headers=(), timeout=None):
    """Sends an upgrade request with headers (a list of (name, value): names may repeat) and
    returns the status line and everything the hub sent within the timeout (b"" if it closed)."""
    sock = socket.create_connection(("127.0.0.1", hub.port), timeout=T(5))
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{hub.port}", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        deadline = time.monotonic() + (timeout or T(3))
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def expect_close(testcase, ws, code, reason=None):
    try:
        msg = ws.recv_json(T(5))
        testcase.fail(f"expected close {code}, got a frame: {msg}")
    except ConnectionClosed as e:
        testcase.assertEqual(e.kind, "close", e)
        testcase.assertEqual(e.code, code, e)
        if reason is not None:
            testcase.assertEqual(e.reason, reason)
    finally:
        ws.abort()


class AcceptProtocolTest(HubTestCase):
    """Sec-WebSocket-Protocol: herald-accept once bound an upgrade to the protocol that adopts
    the listen socket: 101 on any path, no token, no Origin check, outside both caps."""
    hub_options = {"jwt_secret_file": SECRET, "max_connections": 2,
                   "allowed_origins": "http://ok.example"}

    def test_no_protocol_name_skips_admission(self):
        for path in ("/ws", "/", "/anything"):
            for proto in ("herald-accept", "http", "herald-accept, chat", "lws-minimal"):
                with self.subTest(path=path, proto=proto):
                    data = raw_upgrade(self.hub, path, [("Sec-WebSocket-Protocol", proto),
                                                        ("Origin", "http://evil.example")])
                    self.assertFalse(data.startswith(b"HTTP/1.1 101"), data[:200])
        # none of them became a connection, was counted, or holds a slot
        self.assertEqual(stats(self.hub)["connections"], 0)
        self.assertEqual(metrics(self.hub).get("herald_connections"), 0)

    def test_naming_herald_goes_through_every_check(self):
        # the hub's own protocol name, with no token: handshake, then 1008 unauthorized
        ws = WS.connect(self.hub, headers={"Sec-WebSocket-Protocol": "herald"})
        expect_close(self, ws, 1008, "unauthorized")



class AcceptProtocolCapTest(HubTestCase):
    hub_options = {"max_connections": 2}

    def test_the_cap_holds_against_protocol_names(self):
        held = [WS.open(self.hub) for _ in range(2)]
        try:
            # at the cap, an upgrade naming herald-accept is no way in either
            for _ in range(20):
                data = raw_upgrade(self.hub, "/ws", [("Sec-WebSocket-Protocol", "herald-accept")],
                                   timeout=0.5)
                self.assertFalse(data.startswith(b"HTTP/1.1 101"), data[:200])
            with self.assertRaises(HandshakeError) as e:
                WS.connect(self.hub)
            self.assertEqual(e.exception.status, 503)
            self.assertEqual(stats(self.hub)["connections"], 2)
        finally:
            for ws in held:
                ws.abort()


class LongHeaderTest(HubTestCase):
    """A header longer than the buffer it is copied into must be a refusal, never "absent"."""
    hub_options = {"allowed_origins": "http://ok.example", "trusted_proxies": "127.0.0.1"}

    def test_a_long_origin_is_refused(self):
        for n in (240, 300, 2000):  # long, valid host names
            origin = "http://" + ("a" * 60 + ".") * (n // 61) + "example"
            with self.subTest(length=len(origin)):
                ws = WS.connect(self.hub, headers={"Origin": origin})
                expect_close(self, ws, 1008, "origin not allowed")
        ws = WS.open(self.hub, headers={"Origin": "http://ok.example"})
        ws.abort()

    def test_a_long_forwarded_for_from_a_trusted_proxy_is_refused(self):
        xff = ", ".join(f"198.51.100.{i % 250}" for i in range(200))
        with self.assertRaises(HandshakeError) as e:
            WS.connect(self.hub, headers={"X-Forwarded-For": xff})
        self.assertEqual(e.exception.status, 400)
        self.assertIn(b"bad_request", e.exception.body)


class LongTokenTest(HubTestCase):
    hub_options = {"jwt_secret_file": SECRET}

    def test_a_long_token_or_authorization_is_refused(self):
        # longer than lws's whole header buffer: lws refuses the request itself
        for path, headers in (("/ws?token=" + "x" * 9000, ()),
                              ("/ws", [("Authorization", "Bearer " + "x" * 9000)])):
            data = raw_upgrade(self.hub, path, headers)
            self.assertFalse(data.startswith(b"HTTP/1.1 101"), data[:200])
        # long, within lws's buffer: the token is read whole and refused as a token
        long = "x" * 3000
        ws = WS.connect(self.hub, path="/ws?token=" + long)
        expect_close(self, ws, 1008, "unauthorized")
        ws = WS.connect(self.hub, headers={"Authorization": "Bearer " + long})
        expect_close(self, ws, 1008, "unauthorized")
        ws = WS.connect(self.hub, path="/ws?channels=a&token=" + long + "&x=1")
        expect_close(self, ws, 1008, "unauthorized")


class ShutdownWithPendingCountTest(HubTestCase):
    """With --publish-rate and Redis, a publish waits for its cluster-wide count; SIGTERM while
    it waits once crashed the hub on a freed link. Now: 503 for that publish, exit 0."""

    def test_sigterm_with_a_rate_count_in_flight(self):
        with RedisServer() as redis:
            hub = Hub(redis_url=redis.url(), publish_rate=100, drain_seconds=1).start()
            try:
                wait_until(lambda: ready_status(hub) == 200, T(10), "ready")
                redis.pause()  # the count's EVAL now waits for an answer that will not come
                conn = http.client.HTTPConnection("127.0.0.1", hub.api_port, timeout=T(10))
                conn.request("POST", "/publish", body=b'{"channel":"c","data":1}',
                             headers={"Content-Type": "application/json"})
                time.sleep(0.3)
                hub.send_signal(signal.SIGTERM)
                resp = conn.getresponse()
                body = resp.read()
                self.assertEqual(resp.status, 503, body)
                self.assertIn(b"unavailable", body)
                self.assertEqual(hub.wait(T(10)), 0, hub.log_tail())
            finally:
                redis.resume()
                hub.stop()


class ChannelFloodTest(HubTestCase):
    hub_options = {"max_channels": 5, "client_burst": 5, "client_rate": 1}

    def test_max_channels_caps_distinct_names(self):
        a = WS.open(self.hub)
        b = WS.open(self.hub)
        try:
            names = [unique_channel("cap") for _ in range(6)]
            for name in names[:5]:
                self.assertEqual(a.request({"type": "subscribe", "channel": name}, T(5))["type"],
                                 "subscribed")
            time.sleep(1.1)  # a frame token back
            refused = a.request({"type": "subscribe", "channel": names[5]}, T(5))
            self.assertEqual(refused["type"], "error")
            self.assertEqual(refused["code"], "forbidden")
            self.assertIn("maximum of 5 channels", refused["message"])
            # a name the hub already holds is not new: b may join it
            self.assertEqual(b.request({"type": "subscribe", "channel": names[0]}, T(5))["type"],
                             "subscribed")
            self.assertEqual(stats(self.hub)["channels"], 5)
            time.sleep(1.1)
            self.assertEqual(a.request({"type": "unsubscribe", "channel": names[1]}, T(5))["type"],
                             "unsubscribed")
            time.sleep(1.1)
            self.assertEqual(a.request({"type": "subscribe", "channel": names[5]}, T(5))["type"],
                             "subscribed")
        finally:
            a.abort()
            b.abort()

    def test_channels_query_joins_count_against_the_frame_budget(self):
        names = [unique_channel("q") for _ in range(4)]  # the hub holds at most 5 anyway
        extra = [f"{n}x" for n in names[:4]]
        ws = WS.connect(self.hub, path="/ws?channels=" + ",".join(names + extra))
        try:
            self.assertEqual(ws.recv_json(T(5))["type"], "welcome")
            got = [ws.recv_json(T(5)) for _ in range(8)]
            kinds = [(m["type"], m.get("code")) for m in got]
            self.assertEqual(sum(1 for k in kinds if k[0] == "subscribed"), 5, got)
            # past the burst of 5: rate_limited (and one forbidden past --max-channels is not
            # reached, since the budget runs out first)
            self.assertEqual(sum(1 for k in kinds if k == ("error", "rate_limited")), 3, got)
        finally:
            ws.abort()


class ForwardedForTest(HubTestCase):
    hub_options = {"trusted_proxies": "127.0.0.1", "publish_rate": 1}

    def publish_with(self, lines):
        """POST /publish with X-Forwarded-For lines as given (several header lines)."""
        sock = socket.create_connection(("127.0.0.1", self.hub.api_port), timeout=T(5))
        try:
            body = b'{"channel":"xff","data":1}'
            head = ["POST /publish HTTP/1.1", "Host: x", "Content-Type: application/json",
                    f"Content-Length: {len(body)}", "Connection: close"]
            head += [f"X-Forwarded-For: {v}" for v in lines]
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return int(data.split(b" ", 2)[1])
        finally:
            sock.close()

    def test_every_forwarded_for_line_counts(self):
        # the client writes its own line; the proxy adds the real address as a second line:
        # the real client is the rightmost untrusted address of both lines together
        self.assertEqual(self.publish_with(["1.1.1.1", "203.0.113.9"]), 202)
        self.assertEqual(self.publish_with(["1.1.1.2", "203.0.113.9"]), 429)
        self.assertEqual(self.publish_with(["1.1.1.3, 1.1.1.4", "203.0.113.9"]), 429)
        # another real client is another identity
        self.assertEqual(self.publish_with(["1.1.1.1", "203.0.113.10"]), 202)


class IPv6PrefixTest(HubTestCase):
    hub_options = {"trusted_proxies": "127.0.0.1", "max_connections_per_ip": 1}

    def test_one_64_is_one_address(self):
        first = WS.open(self.hub, headers={"X-Forwarded-For": "2001:db8:1:2::1"})
        try:
            with self.assertRaises(HandshakeError) as e:
                WS.open(self.hub, headers={"X-Forwarded-For": "2001:db8:1:2:ffff::77"})
            self.assertEqual(e.exception.status, 429)
            other = WS.open(self.hub, headers={"X-Forwarded-For": "2001:db8:1:3::1"})
            other.abort()
        finally:
            first.abort()


class PublishRateIdentitiesTest(HubTestCase):
    """The in-process limiter once threw away every bucket when its table was full, so a flood
    of new addresses reset everyone's limit. Now it forgets the least recently seen one."""
    hub_options = {"trusted_proxies": "127.0.0.1", "publish_rate": 1,
                   "publish_rate_identities": 4}

    def test_a_full_table_forgets_only_the_oldest(self):
        def pub(addr):
            status, _, _ = publish(self.hub, {"channel": "r", "data": 1},
                                   headers={"X-Forwarded-For": addr})
            return status

        for addr in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"):
            self.assertEqual(pub(addr), 202)
        self.assertEqual(pub("192.0.2.2"), 429)  # .2 is now the most recently seen
        self.assertEqual(pub("192.0.2.5"), 202)  # a fifth: the oldest (.1) is forgotten
        self.assertEqual(pub("192.0.2.2"), 429)  # the others keep their limits
        self.assertEqual(pub("192.0.2.3"), 429)
        self.assertEqual(pub("192.0.2.4"), 429)


if __name__ == "__main__":
    unittest.main()
