"""test_bad_frames.py -- what the hub does with bad client frames: protocol errors that
keep the connection (error frames), frames that end it (close 1003, 1007, 1009), and the
per-connection frame rate limit (rate_limited, then 1008)."""

import json
import time
import unittest

from harness import (HubTestCase, WS, WSTimeout, ConnectionClosed, OP_TEXT, OP_CONT, T,
                     publish_ok, unique_channel)


class ProtocolErrorsTest(HubTestCase):
    """Bad requests inside valid frames: an error frame, and the connection stays."""

    hub_options = {"client_rate": 1000, "client_burst": 1000}

    def assertBadRequest(self, msg, ref=None):
        self.assertEqual(msg.get("type"), "error", msg)
        self.assertEqual(msg.get("code"), "bad_request", msg)
        self.assertIsInstance(msg.get("message"), str, msg)
        if ref is None:
            self.assertNotIn("ref", msg)
        else:
            self.assertEqual(msg.get("ref"), ref, msg)

    def assertStillWorks(self, ws, channel=None):
        self.assertEqual(ws.request({"type": "ping", "ref": "alive"}),
                         {"type": "pong", "ref": "alive"})
        if channel:
            publish_ok(self.hub, channel, "still-subscribed")
            self.assertEqual(ws.recv_json().get("data"), "still-subscribed")

    def test_invalid_json_gets_bad_request_and_connection_stays(self):
        ch = unique_channel("pe")
        with WS.open(self.hub, channels=[ch]) as ws:
            for text in ('{not json', '{"type":"ping"', '', '{"type":"ping"} extra', 'ping'):
                with self.subTest(frame=text):
                    ws.send_text(text)
                    self.assertBadRequest(ws.recv_json())
            self.assertStillWorks(ws, ch)

    def test_json_that_is_not_an_object_gets_bad_request(self):
        with WS.open(self.hub) as ws:
            for text in ('[{"type":"ping","ref":1}]', '"ping"', '42', 'null', 'true'):
                with self.subTest(frame=text):
                    ws.send_text(text)
                    self.assertBadRequest(ws.recv_json())
            self.assertStillWorks(ws)

    def test_unknown_or_missing_type_gets_bad_request_with_ref(self):
        with WS.open(self.hub) as ws:
            cases = [({"type": "dance", "ref": "r1"}, "r1"), ({"ref": 3}, 3),
                     ({"type": 5, "ref": "t"}, "t"), ({"type": "PING", "ref": "u"}, "u"),
                     ({"type": "event", "channel": "x", "ref": 9}, 9)]
            for frame, ref in cases:
                with self.subTest(frame=frame):
                    self.assertBadRequest(ws.request(frame), ref)
            self.assertStillWorks(ws)

    def test_subscribe_with_missing_or_invalid_channel_gets_bad_request(self):
        home = unique_channel("home")
        with WS.open(self.hub, channels=[home]) as ws:
            channels = [None, "", "has space", "a/b", "caf\u00e9", "x" * 129, 5, ["a"],
                        {"c": 1}]
            for i, channel in enumerate(channels):
                for kind in ("subscribe", "unsubscribe"):
                    with self.subTest(kind=kind, channel=channel):
                        frame = {"type": kind, "ref": f"{kind}-{i}"}
                        if channel is not None:
                            frame["channel"] = channel
                        self.assertBadRequest(ws.request(frame), f"{kind}-{i}")
            self.assertStillWorks(ws, home)


class BadFramesTest(HubTestCase):
    """Frames that end the connection, with the close code RFC 6455 and SPEC.md give."""

    hub_options = {"max_message_bytes": 1024}

    def test_binary_frame_closes_1003(self):
        with WS.open(self.hub) as ws:
            ws.send_binary(b'{"type":"ping"}')
            code, _ = ws.expect_close()
            self.assertEqual(code, 1003)

    def test_frame_over_max_message_bytes_closes_1009(self):
        with WS.open(self.hub) as ws:
            ws.send_json({"type": "ping", "pad": "x" * 2000})
            code, _ = ws.expect_close()
            self.assertEqual(code, 1009)

    def test_fragmented_message_over_max_message_bytes_closes_1009(self):
        with WS.open(self.hub) as ws:
            text = json.dumps({"type": "ping", "pad": "y" * 1500}).encode()
            parts = [text[:500], text[500:1000], text[1000:]]
            self.assertTrue(all(len(p) < 1024 for p in parts))
            ws.send_frame(OP_TEXT, parts[0], fin=False)
            ws.send_frame(OP_CONT, parts[1], fin=False)
            try:
                ws.send_frame(OP_CONT, parts[2], fin=True)
            except OSError:
                pass  # the hub may already have closed
            code, _ = ws.expect_close()
            self.assertEqual(code, 1009)

    def test_message_under_the_limit_is_accepted(self):
        with WS.open(self.hub) as ws:
            ws.send_json({"type": "ping", "ref": "fits", "pad": "z" * 900})
            self.assertEqual(ws.recv_json(), {"type": "pong", "ref": "fits"})
            text = json.dumps({"type": "ping", "ref": "fits2", "pad": "w" * 900}).encode()
            ws.send_frame(OP_TEXT, text[:400], fin=False)
            ws.send_frame(OP_CONT, text[400:], fin=True)
            self.assertEqual(ws.recv_json(), {"type": "pong", "ref": "fits2"})

    def test_invalid_utf8_text_frame_closes_1007(self):
        for payload in (b'{"type":"ping","ref":"\xff\xfe"}',
                        b'{"type":"ping","ref":"\xc3\x28"}',
                        b'{"type":"ping","ref":"\xed\xa0\x80"}'):  # UTF-16 surrogate
            with self.subTest(payload=payload):
                with WS.open(self.hub) as ws:
                    ws.send_text(payload)
                    code, _ = ws.expect_close()
                    self.assertEqual(code, 1007)

    def test_other_connections_are_unaffected(self):
        ch = unique_channel("bystander")
        with WS.open(self.hub, channels=[ch]) as bystander, WS.open(self.hub) as bad:
            bad.send_binary(b"\x00\x01")
            self.assertEqual(bad.expect_close()[0], 1003)
            publish_ok(self.hub, ch, "ok")
            self.assertEqual(bystander.recv_json().get("data"), "ok")


RATE, BURST = 5, 5


class RateLimitTest(HubTestCase):
    hub_options = {"client_rate": RATE, "client_burst": BURST}

    def burst(self, ws, n):
        """Send n pings at once; returns the n replies. self.burst_seconds is the time from
        the first send to the last reply (the bucket refills during it)."""
        started = time.monotonic()
        for i in range(n):
            ws.send_json({"type": "ping", "ref": i})
        replies = [ws.recv_json() for _ in range(n)]
        self.burst_seconds = time.monotonic() - started
        return replies

    def test_frames_over_the_burst_get_rate_limited(self):
        with WS.open(self.hub) as ws:
            replies = self.burst(ws, 20)
        self.assertEqual(replies[:BURST], [{"type": "pong", "ref": i} for i in range(BURST)])
        limited = [r for r in replies if r.get("type") == "error"]
        self.assertGreaterEqual(len(limited), 1)
        for r in limited:
            self.assertEqual(r.get("code"), "rate_limited", r)
            self.assertIsInstance(r.get("message"), str, r)
        pongs = [r for r in replies if r.get("type") == "pong"]
        self.assertEqual(len(pongs) + len(limited), 20, "every frame gets exactly one reply")
        refill = int(RATE * self.burst_seconds) + 1
        self.assertLessEqual(len(pongs), BURST + refill,
                             f"the bucket did not limit the burst ({self.burst_seconds:.3f}s)")
        pong_refs = [r["ref"] for r in pongs]
        self.assertEqual(pong_refs, sorted(pong_refs), "pongs out of order")

    def test_rate_limited_error_echoes_the_frames_ref(self):
        # SPEC.md: any client frame may carry "ref"; replies to it echo that ref
        with WS.open(self.hub) as ws:
            replies = self.burst(ws, 12)
        self.assertTrue(any(r.get("code") == "rate_limited" for r in replies), replies)
        self.assertEqual([r.get("ref") for r in replies], list(range(12)),
                         "every reply, rate_limited errors included, echoes its frame's ref")

    def test_rate_limited_connection_recovers_after_refill(self):
        with WS.open(self.hub) as ws:
            replies = self.burst(ws, 10)
            self.assertTrue(any(r.get("code") == "rate_limited" for r in replies))
            # the bucket refills at RATE tokens a second: after BURST/RATE seconds (plus a
            # margin) a full burst is allowed again
            time.sleep(BURST / RATE + 0.3)
            self.assertEqual(self.burst(ws, BURST),
                             [{"type": "pong", "ref": i} for i in range(BURST)])

    def test_sustained_flood_is_closed_1008(self):
        with WS.open(self.hub) as ws:
            start = time.monotonic()
            closed = None
            sent = 0
            while closed is None and sent < 400 and time.monotonic() - start < T(8):
                try:
                    ws.send_json({"type": "ping", "ref": sent})
                    sent += 1
                except OSError:
                    break
                try:  # read what has come, pacing the flood at about 50 frames a second
                    while True:
                        ws.recv_message(0.02)
                except WSTimeout:
                    pass
                except ConnectionClosed as c:
                    closed = c
            elapsed = time.monotonic() - start
            if closed is None:
                code, reason = ws.expect_close(T(3))
            else:
                code, reason = closed.code if closed.kind == "close" else closed.kind, closed.reason
        self.assertEqual(code, 1008, f"after {sent} frames in {elapsed:.1f}s")
        self.assertGreaterEqual(elapsed, 1.0, "closed before the flood lasted a second")
        self.assertLessEqual(elapsed, T(7))


if __name__ == "__main__":
    unittest.main()
