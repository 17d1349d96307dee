"""test_redis_history.py -- sequence numbers, history and resume with Redis (real
redis-server, several hubs): one numbering for every hub, resume and last value through any
hub, GET /history from Redis, idempotency keys cluster-wide, holes in the numbers (a hub's
subscription killed while events go on) repaired from history before later events, a gap
when history cannot fill them, and a Redis that lost its keys announced as a new epoch."""

import json
import threading
import time
import unittest

from harness import (Hub, HubTestCase, T, WS, WSTimeout, get, metrics, publish, publish_ok,
                     unique_channel, wait_until)
from redislib import (Cluster, RedisServer, RedisTestCase, kill_subscription, log_lines, redis_call,
                      subscription_cut, wait_ready)


def subscribe(ws, channel, **extra):
    frame = {"type": "subscribe", "channel": channel, "ref": channel}
    frame.update(extra)
    ws.send_json(frame)
    return ws.recv_until(lambda m: m.get("ref") == channel, T(5))


class Publishing:
    """Publishes data 0, 1, 2, ... on channel through the hubs in turn from a thread, each
    with its own idempotency key, retrying a 503 with the same key (as a careful backend
    does), until stopped. .acked holds the data answered 202 (first time or duplicate)."""

    def __init__(self, hubs, channel, pause=0.005):
        self.hubs, self.channel, self.pause = hubs, channel, pause
        self.acked, self.sent = [], 0
        self.error = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            n = 0
            while not self._stop.is_set():
                body = {"channel": self.channel, "data": n}
                for attempt in range(200):
                    hub = self.hubs[(n + attempt) % len(self.hubs)]
                    try:
                        status, _, _ = publish(hub, body, headers={"Idempotency-Key": f"k{n}"},
                                               timeout=T(5))
                    except OSError:
                        status = None
                    if status == 202:
                        self.acked.append(n)
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError(f"event {n} never accepted")
                n += 1
                self.sent = n
                time.sleep(self.pause)
        except BaseException as e:  # noqa: BLE001 -- reported by stop()
            self.error = e

    def __enter__(self):
        self._t.start()
        return self

    def stop(self):
        self._stop.set()
        self._t.join(T(30))
        if self.error:
            raise self.error

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(T(30))


def read_events(ws, until_data, timeout):
    """Frames until an event with data until_data; returns every frame."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        m = ws.recv_json(max(0.1, deadline - time.monotonic()))
        got.append(m)
        if m.get("type") == "event" and m["data"] == until_data:
            return got


class RedisHistoryTest(RedisTestCase):
    def test_one_numbering_for_every_hub_and_resume_through_another(self):
        ch = unique_channel("rseq")
        with Cluster(self.redis, 2) as cluster:
            a = WS.open(cluster[0])
            b = WS.open(cluster[1])
            try:
                sa, sb = subscribe(a, ch), subscribe(b, ch)
                self.assertEqual((sa["epoch"], sa["seq"]), (sb["epoch"], sb["seq"]))
                self.assertEqual(sa["seq"], 0)
                for i in range(6):
                    publish_ok(cluster[i % 2], ch, i)
                ga = [a.recv_event(T(5)) for _ in range(6)]
                gb = [b.recv_event(T(5)) for _ in range(6)]
                self.assertEqual([m["seq"] for m in ga], [1, 2, 3, 4, 5, 6])
                self.assertEqual(ga, gb)
                epoch = sa["epoch"]
            finally:
                a.abort()
                b.abort()
            for i in range(6, 20):  # while the client is away
                publish_ok(cluster[i % 2], ch, i)
            with WS.open(cluster[1]) as c:  # back through the other hub
                answer = subscribe(c, ch, since={"epoch": epoch, "seq": 6})
                self.assertEqual((answer["recovered"], answer["seq"]), (True, 20))
                got = [c.recv_event(T(5)) for _ in range(14)]
                self.assertEqual([m["seq"] for m in got], list(range(7, 21)))
                self.assertEqual([m["data"] for m in got], list(range(6, 20)))
                last = subscribe(c, unique_channel("none"), last=3)
                self.assertEqual(last["seq"], 0)
            with WS.open(cluster[0]) as d:
                answer = subscribe(d, ch, last=4)
                self.assertEqual([d.recv_event(T(5))["seq"] for _ in range(4)], [17, 18, 19, 20])
            status, _, body = get(cluster[1], f"/history?channel={ch}&since=18")
            self.assertEqual((status, body["epoch"], body["seq"]), (200, epoch, 20))
            self.assertEqual([e["data"] for e in body["events"]], [18, 19])

    def test_idempotency_keys_are_cluster_wide(self):
        ch = unique_channel("ridem")
        with Cluster(self.redis, 2) as cluster, WS.open(cluster[0], channels=[ch]) as ws:
            s1, _, first = publish(cluster[0], {"channel": ch, "data": 1},
                                   headers={"Idempotency-Key": "same"})
            s2, _, again = publish(cluster[1], {"channel": ch, "data": 1},
                                   headers={"Idempotency-Key": "same"})
            self.assertEqual((s1, s2), (202, 202))
            self.assertEqual(again, {"id": first["id"], "duplicate": True})
            self.assertEqual(ws.recv_event(T(5))["data"], 1)
            with self.assertRaises(AssertionError):
                ws.recv_json(0.4)

    def test_a_killed_subscription_loses_nothing_history_holds(self):
        """Events published while a hub's subscription was down (killed by Redis) and in the
        moment before it was back are read from history: that hub's subscribers get every
        seq, once, in order."""
        ch = unique_channel("hole")
        with Cluster(self.redis, 2) as cluster:
            ws = WS.open(cluster[1], channels=[ch])
            try:
                with Publishing([cluster[0]], ch) as pub:
                    time.sleep(0.3)
                    for _ in range(3):
                        kill_subscription(self.redis, cluster[1])
                        time.sleep(0.4)
                    pub.stop()
                last = pub.acked[-1]
                frames = read_events(ws, last, T(15))
                events = [m for m in frames if m["type"] == "event"]
                self.assertEqual([m["data"] for m in events], list(range(last + 1)))
                self.assertEqual([m["seq"] for m in events], list(range(1, last + 2)))
                self.assertEqual([m for m in frames if m["type"] != "event"], [])
                m = metrics(cluster[1])
                self.assertGreaterEqual(m.get("herald_sequence_repaired_total"), 1,
                                        "nothing was read back: the kill did not lose anything")
                self.assertEqual(m.get("herald_sequence_lost_total"), 0)
                print(f"\n[hole] {last + 1} events, {m.get('herald_sequence_holes_total'):.0f} "
                      f"holes, {m.get('herald_sequence_repaired_total'):.0f} events repaired")
            finally:
                ws.abort()

    def test_a_hole_history_cannot_fill_is_a_gap(self):
        ch = unique_channel("gap")
        with Cluster(self.redis, 2, history_size=3) as cluster:
            ws = WS.open(cluster[1], channels=[ch])
            try:
                publish_ok(cluster[0], ch, "before")
                self.assertEqual(ws.recv_event(T(5))["seq"], 1)
                # cluster[1] hears nothing while 20 events go through the other hub
                with subscription_cut(self.redis, cluster[1]):
                    for i in range(20):
                        publish_ok(cluster[0], ch, i)
                publish_ok(cluster[0], ch, "after")
                frames = read_events(ws, "after", T(15))
                kinds = [(m["type"], m.get("seq"), m.get("from"), m.get("to")) for m in frames]
                gaps = [m for m in frames if m["type"] == "gap"]
                self.assertTrue(gaps, kinds)
                covered = set()
                for g in gaps:
                    self.assertEqual(g["channel"], ch)
                    covered |= set(range(g["from"], g["to"] + 1))
                seqs = [m["seq"] for m in frames if m["type"] == "event"]
                # every seq from 2 to 22 is either an event or inside a gap, once, in order
                self.assertEqual(sorted(covered | set(seqs)), list(range(2, 23)), kinds)
                self.assertFalse(covered & set(seqs), kinds)
                self.assertEqual(seqs, sorted(seqs))
                self.assertGreaterEqual(metrics(cluster[1]).get("herald_sequence_lost_total"), 1)
            finally:
                ws.abort()

    def test_a_hole_found_before_history_can_be_read_waits_for_it(self):
        """After an outage a hub's subscription can come back before its publishing link can
        read history (here: its Redis user may not run scripts for a while). A hole found then
        is not a gap: the events behind it wait until history can be read, and the subscriber
        gets every seq in order. (Found by the chaos test: this was a false gap.)"""
        ch = unique_channel("wait")
        user = unique_channel("hy").replace("-", "")
        self.redis.call("ACL", "SETUSER", user, "on", ">pw-wait-for-it", "~*", "&*", "+@all")
        channel = unique_channel("herald-test")
        x = Hub(redis_url=self.redis.url(), redis_channel=channel)
        y = Hub(redis_url=self.redis.url(user=user, password="pw-wait-for-it"),
                redis_channel=channel)
        with x, y:
            wait_ready([x, y])
            ws = WS.open(y, channels=[ch])
            try:
                publish_ok(x, ch, "one")
                self.assertEqual(ws.recv_event(T(5))["seq"], 1)
                # y's links die; they come back able to subscribe but not to run scripts
                self.redis.call("ACL", "SETUSER", user, "-@scripting")
                self.redis.call("CLIENT", "KILL", "USER", user)
                publish_ok(x, ch, "two")  # y is not subscribed: a hole for y
                wait_until(lambda: f"herald-{y.instance_id}-sub" in
                           str(self.redis.call("CLIENT", "LIST")), T(10), "y to resubscribe")
                publish_ok(x, ch, "three")  # y sees 3, finds the hole, cannot read history
                wait_until(lambda: log_lines(y, "cannot be read from history now"), T(5),
                           "y to find the hole and wait")
                with self.assertRaises(WSTimeout):  # nothing is handed on past the hole
                    ws.recv_event(0.5)
                self.redis.call("ACL", "SETUSER", user, "+@scripting")
                frames = read_events(ws, "three", T(15))
                self.assertEqual([(m["type"], m.get("seq"), m.get("data")) for m in frames],
                                 [("event", 2, "two"), ("event", 3, "three")])
                self.assertEqual(metrics(y).get("herald_sequence_lost_total"), 0)
            finally:
                ws.abort()

    def test_lost_keys_are_a_new_epoch_never_a_silent_jump(self):
        ch = unique_channel("epoch")
        with Cluster(self.redis, 1) as cluster, WS.open(cluster[0], channels=[ch]) as ws:
            old = ws.positions[ch][0]
            for i in range(3):
                publish_ok(cluster[0], ch, i)
            self.assertEqual([ws.recv_event(T(5))["seq"] for _ in range(3)], [1, 2, 3])
            self.redis.call("FLUSHALL")  # Redis lost everything (a restart without persistence)
            publish_ok(cluster[0], ch, "new")
            reset = ws.recv_json(T(5))
            self.assertEqual((reset["type"], reset["channel"], reset["seq"], reset["recovered"]),
                             ("subscribed", ch, 0, False))
            self.assertNotEqual(reset["epoch"], old)
            event = ws.recv_event(T(5))
            self.assertEqual((event["seq"], event["data"]), (1, "new"))
            # a client resuming with the old epoch is told it was not recovered
            with WS.open(cluster[0]) as late:
                answer = subscribe(late, ch, since={"epoch": old, "seq": 3})
                self.assertEqual((answer["recovered"], answer["epoch"], answer["seq"]),
                                 (False, reset["epoch"], 1))

    def test_an_epoch_no_hub_wrote_is_not_passed_on(self):
        """The epoch read back from a channel's hash reaches subscribed replies and SSE ids:
        one that is not 1 to 24 letters and digits (written by something else on Redis) is
        refused like an unanswered read, never sent."""
        ch = unique_channel("badepoch")
        with Cluster(self.redis, 1) as cluster:
            publish_ok(cluster[0], ch, "first")
            self.redis.call("HSET", f"{cluster.channel}:ch:{ch}", "e", 'x"\nid: 9')
            status, _, body = get(cluster[0], f"/history?channel={ch}&last=1")
            self.assertEqual(status, 503, body)
            self.assertNotIn("id: 9", json.dumps(body))
            self.assertTrue(log_lines(cluster[0], "an epoch no hub writes"))


if __name__ == "__main__":
    unittest.main()
