"""test_history.py -- sequence numbers, history, resume and last value on the in-process
broker (SPEC.md "Sequence, history and resume"; the Redis side is test_redis_history.py):

  - every event of a channel has seq 1, 2, 3, ... with no holes, and subscribed gives the
    channel's epoch and position;
  - a client that drops and comes back with since gets exactly what it missed, in order, then
    live events: no duplicate at the seam, no hole;
  - history trimmed past the client's seq, another epoch (a restarted hub) or an expired
    event: recovered:false and live events only;
  - last:N (and ?last=N) gives the N newest kept events at once;
  - GET /history reads the kept events as clients receive them;
  - Idempotency-Key: a repeat within --idempotency-ttl is answered with the first answer and
    "duplicate":true, and is not delivered again."""

import json
import threading
import time
import unittest

from harness import (Hub, HubTestCase, T, WS, BackgroundReader, get, http_request, publish,
                     publish_ok, unique_channel, wait_until)


def subscribe(ws, channel, **extra):
    """Sends a subscribe (with since/last/...) and returns the subscribed answer."""
    frame = {"type": "subscribe", "channel": channel, "ref": channel}
    frame.update(extra)
    ws.send_json(frame)
    return ws.recv_until(lambda m: m.get("ref") == channel, T(5))


def events_of(ws, n, timeout=None):
    """The next n event frames (anything else fails)."""
    got = []
    for _ in range(n):
        m = ws.recv_json(timeout or T(5))
        if m.get("type") != "event":
            raise AssertionError(f"expected an event, got {m} after {len(got)}")
        got.append(m)
    return got


def publish_many(hub, channel, datas):
    body = json.dumps([{"channel": channel, "data": d} for d in datas])
    status, _, answer = publish(hub, body)
    assert status == 202, answer
    return answer["ids"]


class SequenceTest(HubTestCase):
    hub_options = {"history_size": 50}

    def test_seq_counts_from_one_without_holes_and_subscribed_gives_the_position(self):
        ch = unique_channel("seq")
        with WS.open(self.hub) as ws:
            sub = subscribe(ws, ch)
            self.assertEqual((sub["type"], sub["channel"], sub["seq"]), ("subscribed", ch, 0))
            self.assertRegex(sub["epoch"], r"^[0-9a-f]{8}$")
            self.assertNotIn("recovered", sub)
            publish_ok(self.hub, ch, 0)
            publish_many(self.hub, ch, [1, 2, 3])
            got = events_of(ws, 4)
            self.assertEqual([m["seq"] for m in got], [1, 2, 3, 4])
            self.assertEqual([m["data"] for m in got], [0, 1, 2, 3])
            # a second subscriber starts at the position now
            with WS.open(self.hub) as late:
                sub2 = subscribe(late, ch)
                self.assertEqual((sub2["epoch"], sub2["seq"]), (sub["epoch"], 4))
                publish_ok(self.hub, ch, 4)
                self.assertEqual(events_of(late, 1)[0]["seq"], 5)
                self.assertEqual(events_of(ws, 1)[0]["seq"], 5)
            # another channel has its own numbering
            other = unique_channel("seq")
            self.assertEqual(subscribe(ws, other)["seq"], 0)
            publish_ok(self.hub, other, "x")
            self.assertEqual(events_of(ws, 1)[0]["seq"], 1)

    def test_resume_with_since_gets_exactly_what_was_missed(self):
        with Hub(history_size=200) as hub:
            self.resume(hub)

    def resume(self, hub):
        """A client drops; 100 events are published; it comes back with since: exactly those
        100, in order, then live ones."""
        ch = unique_channel("resume")
        with WS.open(hub) as ws:
            sub = subscribe(ws, ch)
            publish_many(hub, ch, list(range(5)))
            seen = events_of(ws, 5)
        epoch, last = sub["epoch"], seen[-1]["seq"]
        for i in range(0, 100, 25):  # while it is away
            publish_many(hub, ch, list(range(5 + i, 5 + i + 25)))
        with WS.open(hub) as ws:
            # live events go on while the replay is read: nothing twice, nothing lost
            stop = threading.Event()

            def keep_publishing():
                n = 105
                while not stop.is_set() and n < 130:
                    publish_ok(hub, ch, n)
                    n += 1

            t = threading.Thread(target=keep_publishing)
            sub = {"type": "subscribe", "channel": ch, "since": {"epoch": epoch, "seq": last},
                   "ref": 1}
            t.start()
            ws.send_json(sub)
            answer = ws.recv_until(lambda m: m.get("ref") == 1, T(5))
            self.assertEqual((answer["type"], answer["recovered"], answer["epoch"]),
                             ("subscribed", True, epoch))
            self.assertGreaterEqual(answer["seq"], 105)
            t.join(T(10))
            stop.set()
            got = events_of(ws, 125)  # 100 missed, then the 25 live ones
            self.assertEqual([m["seq"] for m in got], list(range(6, 131)))
            self.assertEqual([m["data"] for m in got], list(range(5, 130)))
            with self.assertRaises(AssertionError):
                ws.recv_json(0.3)  # nothing more

    def test_since_beyond_history_or_another_epoch_is_not_recovered(self):
        ch = unique_channel("lost")
        with WS.open(self.hub) as ws:
            sub = subscribe(ws, ch)
            publish_many(self.hub, ch, list(range(3)))
            events_of(ws, 3)
        publish_many(self.hub, ch, list(range(3, 63)))  # 60 more: history keeps 50
        with WS.open(self.hub) as ws:
            answer = subscribe(ws, ch, since={"epoch": sub["epoch"], "seq": 3})
            self.assertEqual((answer["recovered"], answer["seq"]), (False, 63))
            publish_ok(self.hub, ch, "live")
            got = events_of(ws, 1)  # live events only: no partial replay
            self.assertEqual((got[0]["seq"], got[0]["data"]), (64, "live"))
            # an epoch this hub never gave (a restarted hub, another channel's)
            other = subscribe(ws, unique_channel("lost"), since={"epoch": "ffffffff", "seq": 1})
            self.assertEqual(other["recovered"], False)
            # since at the position: nothing missed, recovered
            again = unique_channel("lost")
            sub3 = subscribe(ws, again)
            with WS.open(self.hub) as ws2:
                same = subscribe(ws2, again, since={"epoch": sub3["epoch"], "seq": 0})
                self.assertEqual(same["recovered"], True)

    def test_since_with_last_falls_back_to_the_newest(self):
        ch = unique_channel("fall")
        publish_many(self.hub, ch, list(range(70)))
        with WS.open(self.hub) as ws:
            answer = subscribe(ws, ch, since={"epoch": "ffffffff", "seq": 5}, last=3)
            self.assertEqual((answer["recovered"], answer["seq"]), (False, 70))
            self.assertEqual([m["seq"] for m in events_of(ws, 3)], [68, 69, 70])

    def test_last_gives_the_newest_kept_events(self):
        ch = unique_channel("last")
        publish_many(self.hub, ch, [{"v": i} for i in range(8)])
        with WS.open(self.hub) as ws:
            answer = subscribe(ws, ch, last=5)
            self.assertEqual((answer["seq"], answer.get("recovered")), (8, None))
            got = events_of(ws, 5)
            self.assertEqual([m["seq"] for m in got], [4, 5, 6, 7, 8])
            self.assertEqual([m["data"]["v"] for m in got], [3, 4, 5, 6, 7])
            publish_ok(self.hub, ch, {"v": 8})
            self.assertEqual(events_of(ws, 1)[0]["seq"], 9)
            # more than kept: what is kept
            more = unique_channel("last")
            publish_many(self.hub, more, [0, 1])
            self.assertEqual(subscribe(ws, more, last=10)["seq"], 2)
            self.assertEqual([m["seq"] for m in events_of(ws, 2)], [1, 2])
        # in the query, for every channel
        with WS.connect(self.hub, path=f"/ws?channels={ch},{more}&last=2") as ws:
            self.assertEqual(ws.recv_json()["type"], "welcome")
            got = [ws.recv_json(T(5)) for _ in range(6)]
            per = {}
            for m in got:
                per.setdefault(m["channel"], []).append((m["type"], m.get("seq")))
            self.assertEqual(per[ch], [("subscribed", 9), ("event", 8), ("event", 9)])
            self.assertEqual(per[more], [("subscribed", 2), ("event", 1), ("event", 2)])

    def test_bad_since_and_last_are_refused(self):
        with WS.open(self.hub) as ws:
            for extra in ({"since": {"epoch": "x y", "seq": 1}}, {"since": {"seq": 1}},
                          {"since": {"epoch": "ab", "seq": -1}}, {"since": 5},
                          {"last": -1}, {"last": 1001}, {"last": "5"}, {"max_rate": 0}):
                with self.subTest(extra=extra):
                    answer = subscribe(ws, unique_channel("bad"), **extra)
                    self.assertEqual((answer["type"], answer["code"]), ("error", "bad_request"))


class HistoryApiTest(HubTestCase):
    hub_options = {"history_size": 10}

    def test_history_reads_the_kept_events(self):
        ch = unique_channel("hist")
        ids = publish_many(self.hub, ch, [{"n": i} for i in range(15)])
        status, _, body = get(self.hub, f"/history?channel={ch}")
        self.assertEqual(status, 200, body)
        self.assertEqual((body["channel"], body["seq"]), (ch, 15))
        self.assertRegex(body["epoch"], r"^[0-9a-f]{8}$")
        self.assertEqual([e["seq"] for e in body["events"]], list(range(6, 16)))
        self.assertEqual([e["id"] for e in body["events"]], ids[5:])
        self.assertEqual(body["events"][0],
                         {"type": "event", "channel": ch, "id": ids[5], "seq": 6,
                          "ts": body["events"][0]["ts"], "data": {"n": 5}})
        status, _, body = get(self.hub, f"/history?channel={ch}&since=12&limit=2")
        self.assertEqual([e["seq"] for e in body["events"]], [13, 14])
        status, _, body = get(self.hub, f"/history?channel={ch}&since=15")
        self.assertEqual((body["seq"], body["events"]), (15, []))
        # a channel never published has a position too
        status, _, body = get(self.hub, f"/history?channel={unique_channel('none')}")
        self.assertEqual((status, body["seq"], body["events"]), (200, 0, []))
        # the hub's own channels are kept too
        wait_until(lambda: get(self.hub, "/history?channel=$stats")[2]["seq"] >= 1, T(5),
                   "a $stats snapshot")

    def test_history_bad_requests(self):
        for query in ("", "?channel=", "?channel=a%20b", "?channel=ok&since=x",
                      "?channel=ok&limit=-1", "?channel=ok&limit=100000"):
            with self.subTest(query=query):
                status, _, body = get(self.hub, "/history" + query)
                self.assertEqual((status, body["error"]), (400, "bad_request"))
        status, headers, body = http_request(self.hub.api_port, "POST", "/history", b"{}")
        self.assertEqual((status, body["error"]), (405, "method_not_allowed"))


class ShortTtlTest(HubTestCase):
    hub_options = {"history_ttl": 1}

    def test_an_expired_event_is_neither_replayed_nor_read(self):
        ch = unique_channel("ttl")
        with WS.open(self.hub) as ws:
            sub = subscribe(ws, ch)
            publish_ok(self.hub, ch, 1)
            events_of(ws, 1)
        publish_ok(self.hub, ch, 2)
        time.sleep(1.5)
        self.assertEqual(get(self.hub, f"/history?channel={ch}")[2]["events"], [])
        with WS.open(self.hub) as ws:
            answer = subscribe(ws, ch, since={"epoch": sub["epoch"], "seq": 1})
            self.assertEqual((answer["recovered"], answer["seq"]), (False, 2))


class NoHistoryTest(HubTestCase):
    hub_options = {"history_size": 0}

    def test_seq_without_history(self):
        ch = unique_channel("nohist")
        with WS.open(self.hub) as ws:
            sub = subscribe(ws, ch)
            publish_many(self.hub, ch, [1, 2])
            self.assertEqual([m["seq"] for m in events_of(ws, 2)], [1, 2])
        self.assertEqual(get(self.hub, f"/history?channel={ch}")[2]["events"], [])
        with WS.open(self.hub) as ws:
            self.assertEqual(subscribe(ws, ch, since={"epoch": sub["epoch"], "seq": 1})
                             ["recovered"], False)
            self.assertEqual(subscribe(ws, unique_channel("x"), last=5)["seq"], 0)


class HistoryMemoryTest(HubTestCase):
    """--history-memory is a hard bound on what the in-process broker keeps: past it the
    oldest events go first, whichever channel they belong to."""
    BOUND = 256 * 1024
    hub_options = {"history_memory": BOUND, "history_size": 1000}

    def test_the_oldest_go_first_past_the_bound(self):
        from harness import metrics
        pad = "m" * 900
        chans = [unique_channel("mem") for _ in range(4)]
        def stats_share():
            # the gauge also counts the hub's own $stats snapshots (kept in the hub's local
            # history, not the broker's): allow each kept one its JSON and a generous 512
            # bytes of bookkeeping, and 512 for the channel's own state, which that history
            # keeps when its snapshots have expired (the gauge was once 128 bytes over with
            # none kept)
            body = get(self.hub, "/history?channel=%24stats")[2]
            return 512 + sum(len(json.dumps(e)) + 512 for e in body["events"])

        for start in range(0, 2000, 50):  # about 2 MB of events, 8 x the bound
            publish_many(self.hub, chans[(start // 50) % 4],
                         [{"i": start + i, "p": pad} for i in range(50)])
            m = metrics(self.hub)
            self.assertLessEqual(m.get("herald_history_bytes"), self.BOUND + stats_share())
        m = metrics(self.hub)
        kept = m.get("herald_history_events")
        self.assertGreater(kept, 100, "the bound keeps a fair share")
        self.assertLess(kept, 2000)
        # what is kept is the newest: the last channel's newest events are all there
        status, _, body = get(self.hub, f"/history?channel={chans[3]}")
        self.assertEqual(body["events"][-1]["data"]["i"], 1999)
        # the first channel's oldest are gone: resuming from its start is not recovered
        with WS.open(self.hub) as ws:
            answer = subscribe(ws, chans[0], since={"epoch": body["epoch"], "seq": 0})
            self.assertEqual(answer["recovered"], False)


class IdempotencyTest(HubTestCase):
    hub_options = {"api_key": "0123456789abcdef-one", "idempotency_ttl": 2}

    def pub(self, body, key=None, api_key="0123456789abcdef-one"):
        headers = {"Authorization": "Bearer " + api_key}
        if key is not None:
            headers["Idempotency-Key"] = key
        return publish(self.hub, body, headers=headers)

    def test_a_repeat_is_answered_not_delivered(self):
        ch = unique_channel("idem")
        with WS.open(self.hub, channels=[ch]) as ws:
            s1, _, first = self.pub({"channel": ch, "data": 1}, key="order-42")
            self.assertEqual(s1, 202, first)
            self.assertNotIn("duplicate", first)
            s2, _, again = self.pub({"channel": ch, "data": 1}, key="order-42")
            self.assertEqual((s2, again), (202, {"id": first["id"], "duplicate": True}))
            # a batch remembers its ids
            s3, _, batch = self.pub([{"channel": ch, "data": 2}, {"channel": ch, "data": 3}],
                                    key="batch-7")
            s4, _, batch2 = self.pub([{"channel": ch, "data": 2}, {"channel": ch, "data": 3}],
                                     key="batch-7")
            self.assertEqual(batch2, {"ids": batch["ids"], "duplicate": True})
            # delivered once each: 1, 2, 3, then the marker
            got = [ws.recv_json(T(5)) for _ in range(3)]
            self.assertEqual([m["data"] for m in got], [1, 2, 3])
            with self.assertRaises(AssertionError):
                ws.recv_json(0.3)
            # after the TTL the key is free again
            time.sleep(2.2)
            s5, _, later = self.pub({"channel": ch, "data": 4}, key="order-42")
            self.assertEqual(s5, 202)
            self.assertNotIn("duplicate", later)
            self.assertEqual(ws.recv_json(T(5))["data"], 4)

    def test_bad_keys_are_refused(self):
        for key in ("", "x" * 129, "with space", "tab\tkey", "café"):
            with self.subTest(key=key):
                try:
                    status, _, body = self.pub({"channel": "k", "data": 1}, key=key)
                except ValueError:  # http.client refuses to send some of these itself
                    continue
                self.assertEqual((status, body["error"]), (400, "bad_request"))
        status, _, _ = self.pub({"channel": "k", "data": 1}, key="x" * 128)
        self.assertEqual(status, 202)


if __name__ == "__main__":
    unittest.main()
