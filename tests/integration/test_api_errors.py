"""test_api_errors.py -- every HTTP API error: its status, its JSON error code, and that
nothing of a rejected request reaches a subscriber of the channel involved.

"Nothing delivered" is shown with a marker: after the rejected request the test publishes
a marker event on the same channel; the in-process broker keeps publish order, so the
subscriber's next event must be that marker."""

import http.client
import json
import time
import unittest
import uuid

from harness import HubTestCase, WS, T, http_request, publish, publish_ok, unique_channel

MAX_MESSAGE_BYTES = 4096


class ApiErrorsTest(HubTestCase):
    hub_options = {"max_message_bytes": MAX_MESSAGE_BYTES}

    # -- helpers -----------------------------------------------------------------------
    def assertApiError(self, answer, status, code):
        got_status, headers, body = answer
        self.assertEqual(got_status, status, f"body: {body!r}")
        self.assertIn("application/json", (headers.get("Content-Type") or "").lower(),
                      "an error must be JSON")
        self.assertIsInstance(body, dict, f"error body is not a JSON object: {body!r}")
        self.assertEqual(body.get("error"), code, body)
        self.assertIsInstance(body.get("message"), str, body)
        self.assertTrue(body["message"], "empty error message")
        return headers

    def assertNothingDelivered(self, ws, channel):
        marker = str(uuid.uuid4())
        publish_ok(self.hub, channel, {"marker": marker})
        msg = ws.recv_json(T(5))
        self.assertEqual((msg.get("type"), msg.get("channel"), msg.get("data")),
                         ("event", channel, {"marker": marker}),
                         "something of the rejected request was delivered")

    def subscriber(self, channel):
        return WS.open(self.hub, channels=[channel])

    def check_rejected(self, body, status, code, channel=None, **kw):
        """Publish body; expect status/code; then check nothing reached `channel`."""
        channel = channel or unique_channel("err")
        with self.subscriber(channel) as ws:
            headers = self.assertApiError(publish(self.hub, body, **kw), status, code)
            self.assertNothingDelivered(ws, channel)
        return headers

    # -- the accepted forms, as controls ---------------------------------------------
    def test_publish_answers_202_with_id(self):
        ch = unique_channel("ok")
        with self.subscriber(ch) as ws:
            status, headers, body = publish(self.hub, {"channel": ch, "event": "e", "data": 1})
            self.assertEqual(status, 202, body)
            self.assertIn("application/json", headers.get("Content-Type", ""))
            self.assertIsInstance(body, dict)
            self.assertIsInstance(body.get("id"), str)
            self.assertTrue(body["id"])
            msg = ws.recv_json()
            self.assertEqual((msg["id"], msg["data"]), (body["id"], 1))

    def test_batch_answers_202_with_ids_in_order(self):
        ch1, ch2 = unique_channel("b1"), unique_channel("b2")
        with self.subscriber(ch1) as w1, self.subscriber(ch2) as w2:
            batch = [{"channel": ch1, "data": "x"}, {"channel": ch2, "data": "y"},
                     {"channel": ch1, "data": "z"}]
            status, _, body = publish(self.hub, batch)
            self.assertEqual(status, 202, body)
            ids = body.get("ids")
            self.assertIsInstance(ids, list)
            self.assertEqual(len(ids), 3)
            m1, m3 = w1.recv_json(), w1.recv_json()
            m2 = w2.recv_json()
            self.assertEqual([(m1["id"], m1["data"]), (m2["id"], m2["data"]),
                              (m3["id"], m3["data"])],
                             [(ids[0], "x"), (ids[1], "y"), (ids[2], "z")])

    def test_data_null_is_accepted(self):
        ch = unique_channel("null")
        with self.subscriber(ch) as ws:
            status, _, body = publish(self.hub, {"channel": ch, "data": None})
            self.assertEqual(status, 202, body)
            msg = ws.recv_json()
            self.assertIn("data", msg)
            self.assertIsNone(msg["data"])

    def test_content_type_with_charset_is_accepted(self):
        ch = unique_channel("charset")
        with self.subscriber(ch) as ws:
            status, _, body = publish(self.hub, {"channel": ch, "data": "cs"},
                                      content_type="application/json; charset=utf-8")
            self.assertEqual(status, 202, body)
            self.assertEqual(ws.recv_json().get("data"), "cs")

    def test_body_just_under_the_limit_is_accepted(self):
        ch = unique_channel("big")
        with self.subscriber(ch) as ws:
            pad = "p" * (MAX_MESSAGE_BYTES - 400)
            status, _, body = publish(self.hub, {"channel": ch, "data": pad})
            self.assertEqual(status, 202, body)
            self.assertEqual(ws.recv_json().get("data"), pad)

    def test_valid_channel_name_characters_are_accepted(self):
        ch = "Az09_-.:" + unique_channel("x").replace("-", "_")
        ch128 = ("c" * 128)
        for name in (ch, ch128):
            with self.subscriber(name) as ws:
                status, _, body = publish(self.hub, {"channel": name, "data": name})
                self.assertEqual(status, 202, body)
                self.assertEqual(ws.recv_json().get("channel"), name)

    # -- 400 bad_request -------------------------------------------------------------
    def test_bad_json_is_400(self):
        ch = unique_channel("badjson")
        for raw in (b'{"channel": "' + ch.encode() + b'", "data": ', b"not json at all",
                    b'{"channel":"' + ch.encode() + b'","data":1} trailing', b""):
            with self.subTest(body=raw):
                self.check_rejected(raw, 400, "bad_request", channel=ch)

    def test_body_that_is_not_an_object_or_array_is_400(self):
        for raw in (b"42", b'"text"', b"null", b"true"):
            with self.subTest(body=raw):
                self.check_rejected(raw, 400, "bad_request")

    def test_invalid_utf8_body_is_400(self):
        ch = unique_channel("utf8")
        raw = b'{"channel":"' + ch.encode() + b'","data":"\xff\xfe"}'
        self.check_rejected(raw, 400, "bad_request", channel=ch)

    def test_channel_missing_is_400(self):
        self.check_rejected({"event": "e", "data": 1}, 400, "bad_request")

    def test_channel_not_a_string_is_400(self):
        for value in (123, None, ["a"], {"c": 1}, True):
            with self.subTest(channel=value):
                self.check_rejected({"channel": value, "data": 1}, 400, "bad_request")

    def test_invalid_channel_names_are_400(self):
        home = unique_channel("home")
        names = ["", "has space", "a/b", "caf\u00e9", "star*", "semi;colon", "new\nline",
                 home + "!", "c" * 129]
        for name in names:
            with self.subTest(channel=name):
                self.check_rejected({"channel": name, "data": 1}, 400, "bad_request",
                                    channel=home)
        # a name over 128 characters is not truncated onto its 128-character prefix
        self.check_rejected({"channel": "d" * 129, "data": 1}, 400, "bad_request",
                            channel="d" * 128)

    def test_channel_starting_with_dollar_is_400(self):
        with self.subscriber("$stats") as ws:
            for name in ("$stats", "$custom"):
                with self.subTest(channel=name):
                    marker = str(uuid.uuid4())
                    self.assertApiError(publish(self.hub, {"channel": name,
                                                           "data": {"marker": marker}}),
                                        400, "bad_request")
                    # the $stats subscriber sees only the hub's own snapshots: read until
                    # two of them arrived (about two seconds), none may carry the marker
                    snapshots = []
                    deadline = time.monotonic() + T(6)
                    while len(snapshots) < 2:
                        self.assertLess(time.monotonic(), deadline, "no $stats snapshots")
                        msg = ws.recv_event(T(5))
                        self.assertNotEqual(msg.get("data"), {"marker": marker})
                        self.assertEqual(msg.get("channel"), "$stats")
                        snapshots.append(msg)

    def test_data_absent_is_400(self):
        ch = unique_channel("nodata")
        self.check_rejected({"channel": ch, "event": "e"}, 400, "bad_request", channel=ch)

    def test_event_name_not_a_string_is_400(self):
        ch = unique_channel("evname")
        for value in (5, ["e"], {"e": 1}):
            with self.subTest(event=value):
                self.check_rejected({"channel": ch, "event": value, "data": 1}, 400,
                                    "bad_request", channel=ch)

    def test_empty_batch_is_400(self):
        self.check_rejected([], 400, "bad_request")

    def test_batch_with_one_bad_item_delivers_nothing(self):
        ch = unique_channel("batch")
        bad_items = [{"channel": ch},                  # data absent
                     {"channel": "bad name", "data": 1},
                     {"channel": "$stats", "data": 1},
                     {"data": 1},                      # channel absent
                     "not an object",
                     42]
        for bad in bad_items:
            with self.subTest(bad_item=bad):
                batch = [{"channel": ch, "data": "first"}, {"channel": ch, "data": "second"},
                         bad, {"channel": ch, "data": "last"}]
                self.check_rejected(batch, 400, "bad_request", channel=ch)

    # -- 413, 415 ---------------------------------------------------------------------
    def test_body_over_max_message_bytes_is_413(self):
        ch = unique_channel("huge")
        body = {"channel": ch, "data": "x" * (MAX_MESSAGE_BYTES + 100)}
        self.check_rejected(body, 413, "too_large", channel=ch)

    def test_batch_over_max_message_bytes_is_413(self):
        ch = unique_channel("hugebatch")
        item = {"channel": ch, "data": "y" * 500}
        self.check_rejected([item] * 10, 413, "too_large", channel=ch)

    def test_content_type_not_json_is_415(self):
        ch = unique_channel("ctype")
        body = {"channel": ch, "data": 1}
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                      None):
            with self.subTest(content_type=ctype):
                self.check_rejected(body, 415, "unsupported_media_type", channel=ch,
                                    content_type=ctype)

    # -- 404, 405 ---------------------------------------------------------------------
    def test_unknown_path_is_404(self):
        ch = unique_channel("nopath")
        body = json.dumps({"channel": ch, "data": 1}).encode()
        with self.subscriber(ch) as ws:
            for method, path in (("GET", "/nope"), ("POST", "/nope"), ("POST", "/publish/x"),
                                 ("POST", "/publishx"), ("GET", "/")):
                with self.subTest(method=method, path=path):
                    send = body if method == "POST" else None
                    headers = {"Content-Type": "application/json"} if send else {}
                    self.assertApiError(http_request(self.hub.api_port, method, path, body=send,
                                                     headers=headers), 404, "not_found")
            self.assertNothingDelivered(ws, ch)

    def test_wrong_method_is_405_with_allow(self):
        ch = unique_channel("method")
        body = json.dumps({"channel": ch, "data": 1}).encode()
        cases = [("GET", "/publish", "POST"), ("PUT", "/publish", "POST"),
                 ("DELETE", "/publish", "POST"), ("POST", "/health", "GET"),
                 ("POST", "/ready", "GET"), ("POST", "/stats", "GET"),
                 ("POST", "/metrics", "GET")]
        with self.subscriber(ch) as ws:
            for method, path, allowed in cases:
                with self.subTest(method=method, path=path):
                    send = body if method in ("POST", "PUT") else None
                    headers = {"Content-Type": "application/json"} if send else {}
                    h = self.assertApiError(http_request(self.hub.api_port, method, path,
                                                         body=send, headers=headers),
                                            405, "method_not_allowed")
                    allow = [m.strip().upper() for m in (h.get("Allow") or "").split(",")]
                    self.assertIn(allowed, allow, f"Allow: {h.get('Allow')!r}")
            self.assertNothingDelivered(ws, ch)

    def test_get_publish_delivers_nothing(self):
        ch = unique_channel("get")
        with self.subscriber(ch) as ws:
            self.assertApiError(http_request(self.hub.api_port, "GET",
                                             f"/publish?channel={ch}&data=1"),
                                405, "method_not_allowed")
            self.assertNothingDelivered(ws, ch)

    def test_errors_keep_the_http_connection_usable(self):
        ch = unique_channel("keepalive")
        conn = http.client.HTTPConnection("127.0.0.1", self.hub.api_port, timeout=T(10))
        try:
            with self.subscriber(ch) as ws:
                self.assertApiError(publish(self.hub, b"{bad", conn=conn), 400, "bad_request")
                self.assertApiError(publish(self.hub, {"channel": ch}, conn=conn), 400,
                                    "bad_request")
                status, _, body = publish(self.hub, {"channel": ch, "data": "fine"}, conn=conn)
                self.assertEqual(status, 202, body)
                self.assertEqual(ws.recv_json().get("data"), "fine")
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
