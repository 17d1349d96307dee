"""test_sse.py -- GET /sse on --listen (SPEC.md "Server-sent events"), read by a raw HTTP
client (sseclient.py) from real hubs:

  - each event is `id:` (the stream's cursor), `event:` (its name, or "message") and `data:`
    (the very JSON a /ws client gets); welcome, subscribed, gap and reset frames come as
    events named by their type;
  - last=N gives the N newest kept events after subscribed;
  - a reconnect with Last-Event-ID after missing events gets them on every channel of the
    stream, each once, in order (also when the stream was cut before or inside a replay);
    a bad Last-Event-ID or query is a 400 JSON error;
  - the same admission as /ws: a missing or bad token 401, a foreign Origin with
    --allowed-origins 403, over --max-connections 503 and --max-connections-per-ip 429, each
    a JSON error with Retry-After; the slots are shared with /ws and given back on close;
  - heartbeats are `: hb` comments every --heartbeat seconds, and a stream whose client says
    nothing is not dropped as silent;
  - SIGTERM ends every stream (the response ends) and the hub exits 0;
  - a reader that stops reading is cut as a slow consumer, and resumes without loss;
  - with Redis, a lost numbering (reset) and a hole history cannot fill (gap) reach the
    stream and move its cursor."""

import json
import signal
import time
import unittest
import urllib.parse

from harness import (Hub, HubTestCase, Publisher, T, WS, metrics, publish, publish_ok,
                     unique_channel, wait_until)
from authlib import mint, new_secret
from redislib import Cluster, RedisTestCase, subscription_cut
from sseclient import SSE, SSEEnded, SSERefused, SSETimeout

SECRET_FILE, _ = new_secret("test_sse.secret")


def path(channels, **query):
    q = {"channels": ",".join(channels)}
    q.update({k: str(v) for k, v in query.items()})
    return "/sse?" + urllib.parse.urlencode(q, safe=",:$")


def open_stream(hub, channels, headers=None, source=None, **query):
    """An SSE stream of channels (from the local address source when given), read up to one
    `subscribed` per channel; the events replayed meanwhile stay in sse.backlog. Returns
    (sse, {channel: subscribed data})."""
    sse = SSE.connect(hub, path(channels, **query), headers=headers, source=source)
    try:
        welcome = sse.next_event(T(5))
        assert welcome.event in ("welcome", "message"), welcome  # names=0: message
        assert welcome.json["type"] == "welcome" and not welcome.had_id, welcome
        subs, early = {}, []
        while len(subs) < len(set(channels)):
            ev = sse.next_event(T(5))
            if ev.json["type"] == "subscribed":
                assert ev.had_id, ev
                subs[ev.json["channel"]] = ev.json
            else:
                early.append(ev)
        sse.backlog[:0] = early
        return sse, subs
    except BaseException:
        sse.close()
        raise


def events_of(sse, n, timeout=None):
    """The next n events named other than subscribed/gap/welcome/error (published ones)."""
    got = []
    deadline = time.monotonic() + (T(5) if timeout is None else timeout)
    while len(got) < n:
        ev = sse.next_event(max(0.01, deadline - time.monotonic()))
        if ev.event in ("subscribed", "gap", "welcome", "error"):
            raise AssertionError(f"expected an event, got {ev} after {len(got)}")
        got.append(ev)
    return got


def publish_batch(hub, items):
    status, _, answer = publish(hub, json.dumps(items))
    assert status == 202, answer


def assert_no_more(test, sse, wait=0.3):
    with test.assertRaises(SSETimeout):
        ev = sse.next_event(wait)
        test.fail(f"unexpected {ev}")


class StreamTest(HubTestCase):
    hub_options = {"history_size": 100}

    def test_events_come_with_id_event_and_data_as_ws_frames(self):
        a, b = unique_channel("sse-a"), unique_channel("sse-b")
        sse, subs = open_stream(self.hub, [a, b])
        with sse, WS.open(self.hub, channels=[a, b]) as ws:
            self.assertEqual(sse.headers["content-type"], "text/event-stream")
            self.assertEqual(sse.headers["cache-control"], "no-cache")
            self.assertEqual((subs[a]["seq"], subs[b]["seq"]), (0, 0))
            ea, eb = subs[a]["epoch"], subs[b]["epoch"]
            self.assertEqual(sse.last_event_id, f"{ea}:0,{eb}:0")
            publish_ok(self.hub, a, {"n": 1}, event="created")
            publish_ok(self.hub, b, [1, 2], event=None)
            publish_ok(self.hub, a, "two", event="ünïcode \"q\"")
            got = events_of(sse, 3)
            frames = [ws.recv_message(T(5))[1].decode() for _ in range(3)]
            self.assertEqual([e.data for e in got], frames, "data: is the /ws frame, byte for byte")
            self.assertEqual([e.event for e in got], ["created", "message", "ünïcode \"q\""])
            self.assertEqual([e.id for e in got],
                             [f"{ea}:1,{eb}:0", f"{ea}:1,{eb}:1", f"{ea}:2,{eb}:1"])
            self.assertTrue(all(e.had_id for e in got))
            assert_no_more(self, sse)
            m = metrics(self.hub)
            self.assertGreaterEqual(m.get("herald_sse_connections"), 1)
            self.assertGreaterEqual(m.get("herald_connections"), 2)
        wait_until(lambda: metrics(self.hub).get("herald_sse_connections") == 0, T(5),
                   "herald_sse_connections back to 0")

    def test_last_n_gives_the_newest_kept_events_first(self):
        ch = unique_channel("sse-last")
        publish_batch(self.hub, [{"channel": ch, "data": i} for i in range(6)])
        sse, subs = open_stream(self.hub, [ch], last=3)
        with sse:
            self.assertEqual(subs[ch]["seq"], 6)
            got = events_of(sse, 3)
            self.assertEqual([e.json["seq"] for e in got], [4, 5, 6])
            self.assertEqual([e.json["data"] for e in got], [3, 4, 5])
            epoch = subs[ch]["epoch"]
            self.assertEqual(got[-1].id, f"{epoch}:6")
            publish_ok(self.hub, ch, "live")
            self.assertEqual(events_of(sse, 1)[0].json["data"], "live")

    def test_a_reconnect_with_last_event_id_resumes_every_channel(self):
        a, b = unique_channel("sse-ra"), unique_channel("sse-rb")
        sse, subs = open_stream(self.hub, [a, b])
        with sse:
            publish_batch(self.hub, [{"channel": a, "data": 1}, {"channel": b, "data": 1},
                                     {"channel": a, "data": 2}])
            seen = events_of(sse, 3)
            cursor = seen[-1].id
        # while it is away: events on both channels, interleaved
        publish_batch(self.hub, [{"channel": c, "data": n} for n in range(3, 9)
                                 for c in (a, b)])
        sse, subs2 = open_stream(self.hub, [a, b], headers={"Last-Event-ID": cursor})
        with sse:
            for ch in (a, b):
                self.assertEqual((subs2[ch]["recovered"], subs2[ch]["epoch"]),
                                 (True, subs[ch]["epoch"]), subs2[ch])
            # live events meanwhile: nothing twice, nothing lost
            publish_ok(self.hub, a, "live-a")
            publish_ok(self.hub, b, "live-b")
            got = events_of(sse, 14)
            assert_no_more(self, sse)
        for ch, live in ((a, "live-a"), (b, "live-b")):
            mine = [e.json for e in seen + got if e.json["channel"] == ch]
            # every seq once, in order: a 1..9 (2 seen, 6 missed, 1 live), b 1..8
            self.assertEqual([m["seq"] for m in mine], list(range(1, len(mine) + 1)), ch)
            self.assertEqual(mine[-1]["data"], live)
            self.assertEqual(len(mine), 9 if ch == a else 8)

    def test_a_stream_cut_before_its_events_resumes_from_its_subscribed(self):
        """The id of `subscribed` already resumes: a client cut before any event (or by a
        hub that went on publishing) misses nothing."""
        a, b = unique_channel("sse-ca"), unique_channel("sse-cb")
        sse, _ = open_stream(self.hub, [a, b])
        cursor = sse.last_event_id
        sse.close()
        publish_batch(self.hub, [{"channel": a, "data": "x"}, {"channel": b, "data": "y"}])
        sse, subs = open_stream(self.hub, [a, b], headers={"Last-Event-ID": cursor})
        with sse:
            self.assertTrue(subs[a]["recovered"] and subs[b]["recovered"])
            got = events_of(sse, 2)
            self.assertEqual(sorted((e.json["channel"], e.json["seq"]) for e in got),
                             sorted([(a, 1), (b, 1)]))

    def test_a_stream_cut_inside_a_replay_resumes_where_it_was_cut(self):
        a = unique_channel("sse-replay")
        sse, subs = open_stream(self.hub, [a])
        cursor = sse.last_event_id
        sse.close()
        publish_batch(self.hub, [{"channel": a, "data": i} for i in range(1, 11)])
        # the second stream reads subscribed and 4 replayed events, then is cut
        sse, subs2 = open_stream(self.hub, [a], headers={"Last-Event-ID": cursor})
        with sse:
            self.assertTrue(subs2[a]["recovered"])
            self.assertEqual(subs2[a]["seq"], 10)
            # subscribed's own id is where the replay starts, not where it ends
            self.assertEqual(sse.last_event_id, f"{subs[a]['epoch']}:0")
            part = events_of(sse, 4)
            cursor = part[-1].id
        self.assertEqual(cursor, f"{subs[a]['epoch']}:4")
        sse, _ = open_stream(self.hub, [a], headers={"Last-Event-ID": cursor})
        with sse:
            rest = events_of(sse, 6)
            self.assertEqual([e.json["data"] for e in rest], list(range(5, 11)))
            assert_no_more(self, sse)

    def test_since_in_the_query_resumes_and_last_event_id_wins_over_it(self):
        """since= carries the cursor for a client that opens a new stream and cannot set
        headers (an EventSource, herald.js changing its channels): it resumes as
        Last-Event-ID does. An EventSource's own reconnect sends its first URL (the old
        since=) with a newer Last-Event-ID: the header wins."""
        a, b = unique_channel("sse-qa"), unique_channel("sse-qb")
        sse, subs = open_stream(self.hub, [a])
        with sse:
            publish_batch(self.hub, [{"channel": a, "data": n} for n in (1, 2)])
            old = sse.last_event_id
            cursor = events_of(sse, 2)[-1].id
        self.assertEqual(cursor, f"{subs[a]['epoch']}:2")
        publish_batch(self.hub, [{"channel": a, "data": n} for n in (3, 4)])
        # a new stream, with a channel added: since= keeps a's place, b has none yet
        sse, subs2 = open_stream(self.hub, [a, b], since=cursor + ",")
        with sse:
            self.assertTrue(subs2[a]["recovered"])
            self.assertNotIn("recovered", subs2[b])
            self.assertEqual([e.json["data"] for e in events_of(sse, 2)], [3, 4])
            assert_no_more(self, sse)
        sse, subs3 = open_stream(self.hub, [a], since=old, headers={"Last-Event-ID": cursor})
        with sse:
            self.assertTrue(subs3[a]["recovered"])
            self.assertEqual([e.json["data"] for e in events_of(sse, 2)], [3, 4])
            assert_no_more(self, sse)
        for bad in ["zz", f"{subs[a]['epoch']}:1,x:2", "a:01"]:
            with self.assertRaises(SSERefused, msg=bad) as cm:
                SSE.connect(self.hub, path([a], since=bad))
            self.assertEqual(cm.exception.status, 400, bad)
            self.assertIn("since=", cm.exception.json["message"])

    def test_names_0_sends_every_frame_as_a_message(self):
        """names=0: no event: line, so an EventSource's onmessage gets every frame (herald.js
        cannot know the event names in advance); the data and the ids are the same."""
        a = unique_channel("sse-unnamed")
        sse = SSE.connect(self.hub, path([a], names=0))
        with sse:
            frames = [sse.next_event(T(5)) for _ in range(2)]
            self.assertEqual([(f.event, f.json["type"]) for f in frames],
                             [("message", "welcome"), ("message", "subscribed")])
            publish_ok(self.hub, a, {"n": 1}, event="created")
            ev = sse.next_event(T(5))
            self.assertEqual((ev.event, ev.json["event"], ev.id),
                             ("message", "created", f"{frames[1].json['epoch']}:1"))
        for bad in ("2", "", "yes"):
            with self.assertRaises(SSERefused, msg=bad) as cm:
                SSE.connect(self.hub, path([a], names=bad))
            self.assertEqual(cm.exception.status, 400, bad)
            self.assertIn("names=", cm.exception.json["message"])

    def test_max_rate_paces_each_channel_as_listed(self):
        """max_rate=2, : channel a paced at 2 events a second per event name (the newest
        wins, the last of a burst arrives), channel b not paced; one value paces every
        channel; a bad list is 400."""
        a, b = unique_channel("sse-ra"), unique_channel("sse-rb")
        sse, _ = open_stream(self.hub, [a, b], max_rate="2,")
        with sse:
            publish_batch(self.hub, [{"channel": c, "event": "tick", "data": n}
                                     for n in range(1, 21) for c in (a, b)])
            got = {a: [], b: []}
            deadline = time.monotonic() + T(5)
            while (len(got[b]) < 20 or not got[a] or got[a][-1] != 20) and \
                    time.monotonic() < deadline:
                ev = sse.next_event(max(0.01, deadline - time.monotonic()))
                if ev.json["type"] == "event":
                    got[ev.json["channel"]].append(ev.json["data"])
            self.assertEqual(got[b], list(range(1, 21)), "b is not paced")
            self.assertEqual(got[a][-1], 20, "the last of the burst arrives")
            self.assertLessEqual(len(got[a]), 3, f"a paced at 2/s: {got[a]}")
            self.assertEqual(got[a], sorted(got[a]))
        for bad in ("0", "1001", "x", "2,3,4", "", "02", "2,,"):
            with self.assertRaises(SSERefused, msg=bad) as cm:
                SSE.connect(self.hub, path([a, b], max_rate=bad))
            self.assertEqual(cm.exception.status, 400, bad)
            self.assertIn("max_rate=", cm.exception.json["message"])

    def test_a_lost_position_is_not_recovered(self):
        a, b = unique_channel("sse-lost"), unique_channel("sse-kept")
        sse, subs = open_stream(self.hub, [a, b], headers={"Last-Event-ID": "ffffffff:3,"})
        with sse:
            self.assertEqual(subs[a]["recovered"], False)
            self.assertNotIn("recovered", subs[b])  # an empty entry: a plain subscribe
            publish_ok(self.hub, a, "live")
            self.assertEqual(events_of(sse, 1)[0].json["data"], "live")

    def test_bad_last_event_id_or_query_is_400(self):
        a, b = unique_channel("sse-bad"), unique_channel("sse-bad")
        bad_ids = ["zz", "abc:1", "abc:1,def:2,ghi:3", "abc:01,", "abc:-1,", "a-b:1,",
                   "abcdefghijklmnopqrstuvwxy:1,", "abc:9223372036854775808,", "abc:1,def:x",
                   "abc: 1,"]
        for bad in bad_ids:
            with self.assertRaises(SSERefused, msg=bad) as cm:
                SSE.connect(self.hub, path([a, b]), headers={"Last-Event-ID": bad})
            self.assertEqual(cm.exception.status, 400, bad)
            self.assertEqual(cm.exception.json["error"], "bad_request", bad)
            self.assertIn("Last-Event-ID", cm.exception.json["message"])
        for query in ["/sse", "/sse?channels=", "/sse?channels=a%20b", "/sse?channels=a&last=x",
                      "/sse?channels=a&last=1001", "/sse?channels=" + ",".join(["x"] * 101),
                      "/sse?channels=" + "a" * 3000]:
            with self.assertRaises(SSERefused, msg=query) as cm:
                SSE.connect(self.hub, query)
            self.assertEqual((cm.exception.status, cm.exception.json["error"]),
                             (400, "bad_request"), query)
        with self.assertRaises(SSERefused) as cm:
            SSE.connect(self.hub, "/sse/other?channels=a")
        self.assertEqual(cm.exception.status, 404)
        # an empty Last-Event-ID is none
        sse, subs = open_stream(self.hub, [a], headers={"Last-Event-ID": ""})
        sse.close()
        self.assertNotIn("recovered", subs[a])
        # refusals keep no slot
        wait_until(lambda: metrics(self.hub).get("herald_connections") == 0, T(5),
                   "no connection left")

    def test_a_refusal_leaves_the_connection_for_another_request(self):
        """HTTP/1.1 keep-alive: a 400 is a whole answer; the same connection then streams."""
        import socket
        ch = unique_channel("sse-ka")
        with socket.create_connection(("127.0.0.1", self.hub.port), timeout=T(5)) as s:
            s.sendall(b"GET /sse?channels=bad%20name HTTP/1.1\r\nHost: x\r\n\r\n"
                      + f"GET /sse?channels={ch} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while b"event: subscribed" not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, f"closed after {data!r}")
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:100])
        self.assertIn(b"HTTP/1.1 200", data)
        self.assertIn(b"content-type: text/event-stream", data)


    def test_bytes_after_the_request_end_only_that_stream(self):
        """A client sends nothing after GET /sse; one that does (a pipelined request, or
        garbage) loses its stream, the hub goes on and gives its slot back."""
        import socket
        ch = unique_channel("sse-extra")
        sse, _ = open_stream(self.hub, [ch])
        with sse:
            for extra in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\xff junk\r\n\r\n" * 50):
                with socket.create_connection(("127.0.0.1", self.hub.port), timeout=T(5)) as s:
                    s.sendall(f"GET /sse?channels={ch} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    time.sleep(0.2)
                    s.sendall(extra)
                    s.settimeout(1)
                    try:
                        while s.recv(65536):
                            pass  # what lws answers to the extra bytes, until it closes
                    except socket.timeout:
                        pass  # lws keeps a connection it served a page on
            publish_ok(self.hub, ch, "on")
            self.assertEqual(events_of(sse, 1)[0].json["data"], "on")
            wait_until(lambda: metrics(self.hub).get("herald_connections") == 1, T(5),
                       "only the well-behaved stream left")


class HeartbeatTest(HubTestCase):
    hub_options = {"heartbeat": 1}

    def test_heartbeats_are_comments_and_a_quiet_client_is_not_dropped(self):
        ch = unique_channel("sse-hb")
        sse, _ = open_stream(self.hub, [ch])
        with sse:
            started = time.monotonic()
            sse.wait_comment("hb", T(3))
            self.assertLess(time.monotonic() - started, 2.5)
            time.sleep(3.5)  # more than twice the heartbeat without a byte from the client
            publish_ok(self.hub, ch, "still here")
            got = events_of(sse, 1, T(5))
            self.assertEqual(got[0].json["data"], "still here")
            self.assertGreaterEqual(sse.comments.count("hb"), 3)
            self.assertEqual(metrics(self.hub).get("herald_disconnects_total", reason="timeout"),
                             0)


    def test_an_unnamed_stream_beats_with_events(self):
        """names=0: the heartbeat is an event {"type":"heartbeat"} (an EventSource reports
        no comment), so a client tells a quiet stream from a dead one."""
        ch = unique_channel("sse-hb0")
        sse = SSE.connect(self.hub, path([ch], names=0))
        with sse:
            beats = []
            deadline = time.monotonic() + T(5)
            while len(beats) < 2 and time.monotonic() < deadline:
                ev = sse.next_event(T(3))
                if ev.json["type"] == "heartbeat":
                    beats.append((ev.event, ev.had_id))
            self.assertEqual(beats, [("message", False)] * 2)
            self.assertEqual(sse.comments, [])
            publish_ok(self.hub, ch, "after")
            ev = sse.next_event(T(5))
            while ev.json["type"] == "heartbeat":
                ev = sse.next_event(T(5))
            self.assertEqual(ev.json["data"], "after")


class AdmissionTest(HubTestCase):
    def test_no_or_bad_token_is_401_and_a_good_one_streams(self):
        ch = unique_channel("sse-auth")
        with Hub(jwt_secret_file=SECRET_FILE) as hub:
            for p in (path([ch]), path([ch], token="not.a.token")):
                with self.assertRaises(SSERefused) as cm:
                    SSE.connect(hub, p)
                self.assertEqual(cm.exception.status, 401)
                self.assertEqual(cm.exception.json["error"], "unauthorized")
            token = mint(SECRET_FILE, [ch, "granted-*"])
            sse, _ = open_stream(hub, [ch], token=token)
            sse.close()
            sse, _ = open_stream(hub, [ch], headers={"Authorization": "Bearer " + token})
            with sse:
                publish_ok(hub, ch, 1)
                self.assertEqual(events_of(sse, 1)[0].json["data"], 1)
            # a channel the token does not grant: an error event, the others stream
            other = unique_channel("sse-nope")
            sse = SSE.connect(hub, path([other, ch], token=token))
            with sse:
                skipped = []
                err = sse.next_of("error", T(5), skipped)
                self.assertEqual(err.json["code"], "forbidden")
                sub = sse.next_of("subscribed", T(5))
                self.assertEqual(sub.json["channel"], ch)
                self.assertEqual(sub.id, f",{sub.json['epoch']}:{sub.json['seq']}")
            m = metrics(hub)
            self.assertEqual(m.get("herald_connections_refused_total", reason="auth"), 2)

    def test_a_token_that_expires_ends_the_stream(self):
        ch = unique_channel("sse-exp")
        with Hub(jwt_secret_file=SECRET_FILE) as hub:
            token = mint(SECRET_FILE, [ch], ttl=2)
            sse, _ = open_stream(hub, [ch], token=token)
            with sse:
                sse.read_until_end(T(6))
                self.assertIn("close 1008 token expired", sse.comments)
            # its EventSource would come back with the same token: refused, and it stops
            with self.assertRaises(SSERefused) as cm:
                SSE.connect(hub, path([ch], token=token))
            self.assertEqual(cm.exception.status, 401)

    def test_a_foreign_origin_is_403_an_allowed_one_streams(self):
        ch = unique_channel("sse-origin")
        with Hub(allowed_origins="http://app.example") as hub:
            with self.assertRaises(SSERefused) as cm:
                SSE.connect(hub, path([ch]), headers={"Origin": "http://evil.example"})
            self.assertEqual((cm.exception.status, cm.exception.json["error"]), (403, "forbidden"))
            sse, _ = open_stream(hub, [ch], headers={"Origin": "http://app.example"})
            with sse:
                self.assertEqual(sse.headers.get("access-control-allow-origin"),
                                 "http://app.example")
            sse, _ = open_stream(hub, [ch])  # no Origin: not a browser
            sse.close()

    def test_connection_caps_are_shared_with_ws_and_given_back(self):
        ch = unique_channel("sse-cap")
        with Hub(max_connections=2) as hub:
            first, _ = open_stream(hub, [ch])
            ws = WS.open(hub, channels=[ch])
            with self.assertRaises(SSERefused) as cm:
                SSE.connect(hub, path([ch]))
            self.assertEqual((cm.exception.status, cm.exception.json["error"]),
                             (503, "unavailable"))
            self.assertEqual(cm.exception.headers.get("retry-after"), "5")
            first.close()
            wait_until(lambda: metrics(hub).get("herald_connections") == 1, T(5),
                       "the stream's slot given back")
            second, _ = open_stream(hub, [ch])
            second.close()
            ws.close()
        with Hub(max_connections_per_ip=1) as hub:
            first, _ = open_stream(hub, [ch])
            with self.assertRaises(SSERefused) as cm:
                SSE.connect(hub, path([ch]))
            self.assertEqual((cm.exception.status, cm.exception.json["error"]),
                             (429, "rate_limited"))
            self.assertEqual(cm.exception.headers.get("retry-after"), "5")
            other, _ = open_stream(hub, [ch], source="127.0.0.2")  # another address gets in
            other.close()
            first.close()
            wait_until(lambda: metrics(hub).get("herald_connections") == 0, T(5),
                       "the address's slot given back")
            again, _ = open_stream(hub, [ch])
            again.close()

    def test_joins_cost_frame_tokens_as_channels_on_ws(self):
        chans = [unique_channel("sse-rate") for _ in range(5)]
        with Hub(client_rate=1, client_burst=3) as hub:
            sse = SSE.connect(hub, path(chans))
            with sse:
                events = [sse.next_event(T(5)) for _ in range(1 + 5)]
                kinds = sorted(e.event for e in events[1:])
                self.assertEqual(kinds, ["error"] * 2 + ["subscribed"] * 3)
                self.assertTrue(all(e.json["code"] == "rate_limited"
                                    for e in events if e.event == "error"))


class DrainTest(HubTestCase):
    def test_sigterm_ends_every_stream_and_the_hub_exits_0(self):
        ch = unique_channel("sse-drain")
        hub = Hub(drain_seconds=5).start()
        with hub:
            streams = [open_stream(hub, [ch])[0] for _ in range(3)]
            # an unnamed stream (names=0) says it as an event: an EventSource hides comments
            streams.append(open_stream(hub, [ch], names=0)[0])
            try:
                publish_ok(hub, ch, "before")
                started = time.monotonic()
                hub.send_signal(signal.SIGTERM)
                for sse in streams[:3]:
                    rest = sse.read_until_end(T(5))
                    self.assertEqual([e.json["data"] for e in rest], ["before"])
                    self.assertIn("close 1001 going away", sse.comments)
                rest = streams[3].read_until_end(T(5))
                self.assertEqual([e.json.get("data") for e in rest
                                  if e.json["type"] == "event"], ["before"])
                self.assertEqual(rest[-1].json, {"type": "close", "code": 1001,
                                                 "reason": "going away"})
                self.assertEqual(streams[3].comments, [])
                self.assertEqual(hub.wait(T(5)), 0)
                self.assertLess(time.monotonic() - started, T(4))
            finally:
                for sse in streams:
                    sse.close()
        with self.assertRaises(OSError):
            SSE.connect(hub.port, path([ch]), timeout=1)


class SlowReaderTest(HubTestCase):
    def test_a_reader_that_stops_is_cut_and_resumes_without_loss(self):
        ch = unique_channel("sse-slow")
        queue = 65536
        with Hub(send_queue_bytes=queue, max_message_bytes=queue - 256, history_size=1000,
                 history_memory=256 << 20) as hub:
            sse = SSE.connect(hub, path([ch]), rcvbuf=4096)
            with sse:
                sse.next_of("subscribed", T(5))
                cursor = sse.last_event_id
                published = 0
                with Publisher(hub) as pub:  # it reads nothing from here on
                    while published < 400:
                        pub.publish_ok(ch, {"n": published, "pad": "p" * 40_000})
                        published += 1
                        if published % 5 == 0 and metrics(hub).get(
                                "herald_events_dropped_total", 0, reason="slow_consumer"):
                            break
                wait_until(lambda: metrics(hub).get("herald_disconnects_total",
                                                    reason="slow_consumer") >= 1, T(10),
                           "the stream cut as a slow consumer")
                self.assertLess(published, 400)
                # reading again: a prefix of the events, then the end (with a last comment,
                # unless the socket stayed stuck and was cut)
                got = [e for e in sse.read_until_end(T(10)) if e.event == "message"]
                self.assertEqual([e.json["data"]["n"] for e in got], list(range(len(got))))
                self.assertLess(len(got), published)
                if got:
                    cursor = got[-1].id
            sse, _ = open_stream(hub, [ch], headers={"Last-Event-ID": cursor})
            with sse:
                rest = events_of(sse, published - len(got), T(20))
                assert_no_more(self, sse)
            self.assertEqual([e.json["data"]["n"] for e in got + rest], list(range(published)))


class RedisStreamTest(RedisTestCase):
    def test_a_reset_and_a_gap_reach_the_stream_and_move_its_cursor(self):
        ch = unique_channel("sse-redis")
        with Cluster(self.redis, 2, history_size=3) as cluster:
            sse, subs = open_stream(cluster[1], [ch])
            with sse:
                old = subs[ch]["epoch"]
                publish_ok(cluster[0], ch, "before")
                self.assertEqual(events_of(sse, 1)[0].id, f"{old}:1")
                # cluster[1] hears nothing while 20 events go through the other hub, and
                # history keeps 3: a gap
                with subscription_cut(self.redis, cluster[1]):
                    for i in range(20):
                        publish_ok(cluster[0], ch, i)
                publish_ok(cluster[0], ch, "after")
                got = []
                while not got or got[-1].event != "message" or got[-1].json["data"] != "after":
                    got.append(sse.next_event(T(15)))
                gaps = [e for e in got if e.event == "gap"]
                self.assertTrue(gaps, [(e.event, e.data) for e in got])
                for g in gaps:
                    self.assertEqual(g.json["type"], "gap")
                    self.assertEqual(g.id, f"{old}:{g.json['to']}")
                self.assertEqual(got[-1].id, f"{old}:22")
                # Redis loses the channel's numbering: a reset, a subscribed event
                self.redis.call("FLUSHALL")
                publish_ok(cluster[0], ch, "new")
                reset = sse.next_event(T(10))
                self.assertEqual((reset.event, reset.json["seq"], reset.json["recovered"]),
                                 ("subscribed", 0, False))
                new = reset.json["epoch"]
                self.assertNotEqual(new, old)
                self.assertEqual(reset.id, f"{new}:0")
                ev = events_of(sse, 1, T(10))[0]
                self.assertEqual((ev.json["data"], ev.id), ("new", f"{new}:1"))


if __name__ == "__main__":
    unittest.main()
