"""test_shutdown.py -- SIGTERM and SIGINT: clients get close 1001, /ready answers 503
while the hub drains, and the process exits 0 within --drain-seconds."""

import json
import signal
import sys
import time
import unittest

from harness import (ConnectionClosed, HandshakeError, Hub, HubTestCase, Publisher, WS, WSTimeout,
                     T, get, http_request, ready_status, unique_channel)


STUCK_QUEUE_BYTES = 16 * 1024 * 1024
STUCK_EVENTS = 150


def stuck_client(hub, channel):
    """A client whose socket is full: it subscribed, stopped reading, and was sent about
    6 MB (more than the kernel buffers hold, less than its send queue budget), so the hub
    holds data for it that it cannot write and a drain cannot end at once."""
    ws = WS.open(hub, channels=[channel], rcvbuf=4096)
    with Publisher(hub) as pub:
        for i in range(STUCK_EVENTS):
            pub.publish_ok(channel, {"seq": i, "pad": "s" * 40_000})
    return ws


class ShutdownTest(HubTestCase):
    def test_sigterm_closes_clients_with_1001_and_exits_0(self):
        ch = unique_channel("bye")
        hub = Hub(drain_seconds=5).start()
        with hub:
            clients = [WS.open(hub, channels=[ch]) for _ in range(3)]
            try:
                hub.send_signal(signal.SIGTERM)
                for ws in clients:
                    code, _ = ws.expect_close(T(5))
                    self.assertEqual(code, 1001)
            finally:
                for ws in clients:
                    ws.abort()
            # every client answered the close handshake: no need to wait for the deadline
            started = time.monotonic()
            self.assertEqual(hub.wait(T(5)), 0)
            self.assertLess(time.monotonic() - started, T(4))

    def test_ready_is_503_while_draining(self):
        ch = unique_channel("stuck")
        with Hub(drain_seconds=5, send_queue_bytes=STUCK_QUEUE_BYTES) as hub:
            self.assertEqual(get(hub, "/ready")[0], 200)
            stuck = stuck_client(hub, ch)
            try:
                signalled = time.monotonic()
                hub.send_signal(signal.SIGTERM)
                seen = []
                deadline = time.monotonic() + T(3)
                while time.monotonic() < deadline and hub.running():
                    status = ready_status(hub)
                    seen.append(status)
                    if status == 503:
                        break
                    time.sleep(0.01)
                self.assertIn(503, seen, f"/ready answers during the drain: {seen}")
                self.assertTrue(hub.running(), "the hub exited before its client closed")
                # /health still answers while the process runs
                self.assertEqual(http_request(hub.api_port, "GET", "/health", timeout=2)[0], 200)
                # the client reads again: what it gets is the events in order, then 1001
                code, _ = stuck.expect_close(T(5))
                self.assertEqual(code, 1001)
                seqs = [json.loads(p)["data"]["seq"] for _, p in stuck.discarded]
                self.assertEqual(seqs, list(range(len(seqs))))
                print(f"\n[drain] the stuck client got {len(seqs)} of {STUCK_EVENTS} events "
                      "before 1001", file=sys.stderr)
            finally:
                stuck.abort()
            self.assertEqual(hub.wait(T(10)), 0)
            self.assertLess(time.monotonic() - signalled, 5 + T(3),
                            "the drain outlasted --drain-seconds")

    def test_drain_deadline_ends_a_client_that_never_reads(self):
        ch = unique_channel("stuck")
        with Hub(drain_seconds=2, send_queue_bytes=STUCK_QUEUE_BYTES) as hub:
            stuck = stuck_client(hub, ch)  # never reads again
            try:
                started = time.monotonic()
                hub.send_signal(signal.SIGTERM)
                self.assertEqual(hub.wait(2 + T(8)), 0)
                self.assertLess(time.monotonic() - started, 2 + T(4),
                                "the drain outlasted --drain-seconds")
            finally:
                stuck.abort()

    def test_sigterm_without_clients_exits_promptly(self):
        with Hub(drain_seconds=10) as hub:
            started = time.monotonic()
            self.assertEqual(hub.stop(signal.SIGTERM, timeout=T(8)), 0)
            self.assertLess(time.monotonic() - started, T(5),
                            "an idle hub waited for the drain deadline")

    def test_sigint_closes_clients_with_1001_and_exits_0(self):
        with Hub(drain_seconds=5) as hub:
            with WS.open(hub) as ws:
                hub.send_signal(signal.SIGINT)
                code, _ = ws.expect_close(T(5))
                self.assertEqual(code, 1001)
            self.assertEqual(hub.wait(T(10)), 0)

    def test_no_new_websocket_connections_while_draining(self):
        with Hub(drain_seconds=5, send_queue_bytes=STUCK_QUEUE_BYTES) as hub:
            stuck = stuck_client(hub, unique_channel("stuck"))
            try:
                hub.send_signal(signal.SIGTERM)
                wait = time.monotonic() + T(3)
                while ready_status(hub) != 503:
                    self.assertLess(time.monotonic(), wait, "/ready never turned 503")
                    self.assertTrue(hub.running())
                    time.sleep(0.01)
                # a newcomer is refused, closed at once or left waiting: never welcomed
                try:
                    late = WS.connect(hub, timeout=T(2))
                except (OSError, ConnectionClosed, HandshakeError, WSTimeout):
                    late = None
                if late is not None:
                    try:
                        first = late.recv_json(T(2))
                    except (OSError, ConnectionClosed, WSTimeout):
                        first = None
                    finally:
                        late.abort()
                    self.assertIsNone(first, "a client connecting during the drain got a frame")
            finally:
                stuck.abort()
            self.assertEqual(hub.wait(T(10)), 0)


if __name__ == "__main__":
    unittest.main()
