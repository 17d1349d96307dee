"""test_redis_shards.py -- hubs given several --redis-url (Redis shards), on real redis-servers:
each channel lives on the shard a stable hash gives it (FNV-1a 64 of its name, placed by jump
consistent hashing: computed here as in hub/common/shard.c, and checked against where its keys
are); events
of every shard reach every hub's subscribers with consecutive seq; a lost shard makes only its
channels' publishes answer 503 while the others go on and the subscribers keep their
connections; when it is back its channels recover (recovered:true when Redis kept their data, a
reset and recovered:false when it came back empty); a hole on one shard is mended from that
shard's history; a batch over shards; hubs given different lists notice and are not ready."""

import json
import threading
import time
import unittest

from harness import (Hub, HubTestCase, T, WS, get, metrics, publish, publish_ok, recv_many,
                     stats, unique_channel, wait_until)
from redislib import Cluster, RedisServer, kill_subscription, log_lines, wait_ready, wait_status

SHARDS = 3
PASSWORD = "s3cret-shard-pw"  # shard 1 wants it: it must never show outside the URL


def shard_of(channel, n=SHARDS):
    """hub/common/shard.c: FNV-1a 64 of the channel name's bytes, placed by jump consistent
    hashing (Lamping and Veach) on one of n shards."""
    key = 0xcbf29ce484222325
    for byte in channel.encode():
        key = ((key ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    b, j = -1, 0
    while j < n:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def channels_by_shard(prefix, per_shard, n=SHARDS):
    """per_shard fresh channel names on each shard: [[names of shard 0], [of 1], ...]."""
    out = [[] for _ in range(n)]
    while any(len(names) < per_shard for names in out):
        ch = unique_channel(prefix)
        if len(out[shard_of(ch, n)]) < per_shard:
            out[shard_of(ch, n)].append(ch)
    return out


def subscribe(ws, channel, **extra):
    frame = {"type": "subscribe", "channel": channel, "ref": channel}
    frame.update(extra)
    ws.send_json(frame)
    return ws.recv_until(lambda m: m.get("ref") == channel, T(5))


def ready_body(hub):
    status, _, body = get(hub, "/ready")
    return status, body


def shard_ready(hub, shard):
    _, body = ready_body(hub)
    return body["shards"][shard]["ready"]


class RedisShardsTest(HubTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = [RedisServer().start(), RedisServer(password=PASSWORD).start(),
                     RedisServer().start()]

    @classmethod
    def tearDownClass(cls):
        for r in cls.redis:
            r.terminate()
        super().tearDownClass()

    def urls(self, order=range(SHARDS)):
        return ",".join(self.redis[i].url() for i in order)

    def assert_placed(self, prefix, channels):
        """Each channel's numbering (its hash key) is on its shard's Redis and no other."""
        for ch in channels:
            held = [i for i, r in enumerate(self.redis)
                    if r.call("EXISTS", f"{prefix}:ch:{ch}") == 1]
            self.assertEqual(held, [shard_of(ch)], f"{ch}: keys on shards {held}")

    def test_every_shard_reaches_every_hub_in_order(self):
        by_shard = channels_by_shard("sh", 2)
        channels = [ch for names in by_shard for ch in names]
        events = 8
        with Cluster(self.redis[0], 3, url=self.urls()) as cluster:
            clients = [WS.open(hub, channels=channels) for hub in cluster]
            try:
                for k in range(events):
                    for j, ch in enumerate(channels):
                        publish_ok(cluster[(k + j) % 3], ch, {"k": k})
                got = recv_many(clients, count=events * len(channels), timeout=T(15))
                for hub, msgs in zip(cluster, got.values()):
                    for ch in channels:
                        mine = [m for m in msgs if m["channel"] == ch]
                        self.assertEqual([m["seq"] for m in mine], list(range(1, events + 1)),
                                         f"{ch} on {hub.instance_id}")
                        self.assertEqual([m["data"]["k"] for m in mine], list(range(events)))
                self.assert_placed(cluster.channel, channels)

                # a batch over every shard: split, taken whole, each channel's events in order
                batch = [{"channel": ch, "data": {"b": i}} for i, ch in enumerate(channels * 2)]
                status, _, body = publish(cluster[1], batch)
                self.assertEqual(status, 202, body)
                got = recv_many(clients, count=len(batch), timeout=T(10))
                for msgs in got.values():
                    self.assertEqual(sorted(m["id"] for m in msgs), sorted(body["ids"]))
                    for ch in channels:
                        self.assertEqual([m["seq"] for m in msgs if m["channel"] == ch],
                                         [events + 1, events + 2])

                # what each hub says about its shards, and never the password
                for hub in cluster:
                    status, body = ready_body(hub)
                    self.assertEqual((status, body["status"]), (200, "ready"))
                    self.assertEqual([s["url"] for s in body["shards"]],
                                     [f"redis://127.0.0.1:{r.port}/0" for r in self.redis])
                    self.assertTrue(all(s["ready"] for s in body["shards"]))
                    m = metrics(hub)
                    for i, r in enumerate(self.redis):
                        self.assertEqual(m.get("herald_redis_connected", shard=str(i)), 1)
                        self.assertEqual(m.get("herald_redis_shard_ready", shard=str(i)), 1)
                        self.assertEqual(m.get("herald_redis_shard_info", shard=str(i),
                                               url=f"redis://127.0.0.1:{r.port}/0"), 1)
                    self.assertEqual([s["ready"] for s in stats(hub)["shards"]], [True] * 3)
                    for text in (m.text, json.dumps(stats(hub)), json.dumps(body),
                                 hub.log_text()):
                        self.assertNotIn(PASSWORD, text)
            finally:
                for ws in clients:
                    ws.abort()

    def test_a_lost_shard_stops_only_its_channels(self):
        lost = 1
        a, b, c = (names[0] for names in channels_by_shard("loss", 1))
        with Cluster(self.redis[0], 3, url=self.urls()) as cluster:
            live = WS.open(cluster[0], channels=[a, b, c])
            away = WS.open(cluster[1], channels=[b])
            try:
                for i in range(3):
                    for ch in (a, b, c):
                        publish_ok(cluster[i], ch, i)
                first = recv_many([live], count=9, timeout=T(5))[live]
                self.assertEqual(sorted(m["seq"] for m in first), [1, 1, 1, 2, 2, 2, 3, 3, 3])
                epoch_b = live.positions[b][0]
                recv_many([away], count=3, timeout=T(5))
                away.abort()  # comes back later with since

                # --- Redis of shard 1 stops answering (SIGSTOP): it keeps its data
                self.redis[lost].pause()
                try:
                    wait_until(lambda: not any(shard_ready(h, lost) for h in cluster), T(6),
                               "every hub to see shard 1 lost")
                    for hub in cluster:  # one shard down: the hubs stay in rotation
                        status, body = ready_body(hub)
                        self.assertEqual((status, body["status"]), (200, "degraded"), body)
                        self.assertEqual([s["ready"] for s in body["shards"]],
                                         [True, False, True])
                        status, _, answer = publish(hub, {"channel": b, "data": "no"})
                        self.assertEqual((status, answer["error"]), (503, "unavailable"))
                        # it names the channel and the shard an operator should look at
                        self.assertIn(f"channel {b} (shard {lost}, ", answer["message"])
                        self.assertIn(f":{self.redis[lost].port}", answer["message"])
                    for i, hub in enumerate(cluster):
                        publish_ok(hub, a, f"a-{i}")
                        publish_ok(hub, c, f"c-{i}")
                    during = recv_many([live], count=6, timeout=T(5))[live]
                    self.assertEqual({m["channel"] for m in during}, {a, c})
                    self.assertEqual(live.request({"type": "ping"}), {"type": "pong"})
                    wait_until(lambda: metrics(cluster[0]).get(
                        "herald_redis_connected", shard=str(lost)) == 0, T(2),
                        "herald_redis_connected{shard=1} 0")
                finally:
                    self.redis[lost].resume()
                wait_until(lambda: all(ready_body(h)[1].get("status") == "ready"
                                       for h in cluster), T(8), "shard 1 back on every hub")
                publish_ok(cluster[2], b, "back")
                event = live.recv_event(T(5))
                self.assertEqual((event["channel"], event["seq"], event["data"]), (b, 4, "back"))
                # the data was kept: a subscriber that resumes through another hub recovers
                with WS.open(cluster[2]) as again:
                    answer = subscribe(again, b, since={"epoch": epoch_b, "seq": 3})
                    self.assertEqual((answer["recovered"], answer["seq"]), (True, 4))
                    self.assertEqual(again.recv_event(T(5))["data"], "back")

                # --- a hole on shard 1 only: hub 0's subscription there killed while events go
                # through hub 1; when it is back it reads what it missed from shard 1's history
                stop = threading.Event()
                sent = []

                def keep_publishing():
                    n = 0
                    while not stop.is_set():
                        if publish(cluster[1], {"channel": b, "data": f"h{n}"})[0] == 202:
                            sent.append(f"h{n}")
                        n += 1
                        time.sleep(0.003)

                pub = threading.Thread(target=keep_publishing, daemon=True)
                pub.start()
                try:
                    time.sleep(0.2)
                    for _ in range(3):
                        kill_subscription(self.redis[lost], cluster[0])
                        time.sleep(0.3)
                finally:
                    stop.set()
                    pub.join(T(10))
                frames = []
                while len([m for m in frames if m["type"] == "event"]) < len(sent):
                    frames.append(live.recv_json(T(10)))
                self.assertEqual([(m["type"], m["data"]) for m in frames],
                                 [("event", d) for d in sent])
                self.assertEqual([m["seq"] for m in frames], list(range(5, 5 + len(sent))))
                self.assertGreaterEqual(metrics(cluster[0]).get("herald_redis_reconnects_total",
                                                                shard=str(lost)), 3)

                # --- Redis of shard 1 crashes and comes back empty: a new epoch for b only
                seq_b = frames[-1]["seq"]
                self.redis[lost].kill()
                wait_until(lambda: not any(shard_ready(h, lost) for h in cluster), T(3),
                           "every hub to see shard 1 lost")
                self.assertEqual(publish(cluster[0], {"channel": b, "data": "lost"})[0], 503)
                self.redis[lost].restart()
                wait_until(lambda: all(ready_body(h)[1].get("status") == "ready"
                                       for h in cluster), T(6), "shard 1 back on every hub")
                reset = live.recv_json(T(5))
                self.assertEqual((reset["type"], reset["channel"], reset["seq"],
                                  reset["recovered"]), ("subscribed", b, 0, False))
                self.assertNotEqual(reset["epoch"], epoch_b)
                publish_ok(cluster[1], b, "anew")
                publish_ok(cluster[1], a, "still")
                got = [live.recv_event(T(5)) for _ in range(2)]
                self.assertEqual({(m["channel"], m["seq"], m["data"]) for m in got},
                                 {(b, 1, "anew"), (a, 7, "still")})
                with WS.open(cluster[2]) as late:
                    answer = subscribe(late, b, since={"epoch": epoch_b, "seq": seq_b})
                    self.assertEqual((answer["recovered"], answer["epoch"], answer["seq"]),
                                     (False, reset["epoch"], 1))
                # nothing but b was touched
                self.assertEqual(live.request({"type": "ping"}), {"type": "pong"})
                self.assert_placed(cluster.channel, [a, b, c])
            finally:
                live.abort()
                away.abort()

    def test_a_batch_taken_in_part_is_finished_by_its_retry(self):
        """A batch over two shards whose second shard stops answering while its part is out:
        the first part is published, the answer is 503 and says so; once the shard is back, a
        retry with the same Idempotency-Key publishes only the missing part, and its answer
        gives each event the id it went out with."""
        x, y = channels_by_shard("part", 1)[0][0], channels_by_shard("part", 1)[2][0]
        with Cluster(self.redis[0], 2, url=self.urls()) as cluster, \
                WS.open(cluster[0], channels=[x, y]) as ws:
            batch = [{"channel": x, "data": 1}, {"channel": y, "data": 2},
                     {"channel": x, "data": 3}]
            key = {"Idempotency-Key": unique_channel("retry")}
            self.redis[2].pause()
            try:
                status, _, body = publish(cluster[1], batch, headers=key, timeout=T(10))
            finally:
                self.redis[2].resume()
            self.assertEqual((status, body["error"]), (503, "unavailable"))
            self.assertIn("shard 2", body["message"])
            self.assertIn("retry with the same Idempotency-Key", body["message"])
            first = [ws.recv_event(T(5)) for _ in range(2)]
            self.assertEqual([(m["channel"], m["data"]) for m in first], [(x, 1), (x, 3)])
            wait_until(lambda: all(ready_body(h)[1].get("status") == "ready" for h in cluster),
                       T(8), "shard 2 back")
            status, _, body = publish(cluster[0], batch, headers=key)
            self.assertEqual(status, 202, body)
            self.assertTrue(body["duplicate"])
            event = ws.recv_event(T(5))
            self.assertEqual((event["channel"], event["data"]), (y, 2))
            self.assertEqual(body["ids"], [first[0]["id"], event["id"], first[1]["id"]])
            # and once more: every part remembered, nothing published
            status, _, again = publish(cluster[1], batch, headers=key)
            self.assertEqual((status, again), (202, body))
            self.assertEqual(ws.request({"type": "ping"}), {"type": "pong"})

    def test_hubs_given_different_lists_are_not_ready(self):
        """Two hubs given the same Redis in another order would number a channel on two
        shards: each hears the other's heartbeat, logs the mismatch and answers /ready 503;
        with the other gone it is ready again. A hub given one of the shards as its only Redis
        is caught the same way."""
        channel = unique_channel("herald-mismatch")
        one = Hub(redis_url=self.urls(), redis_channel=channel)
        other = Hub(redis_url=self.urls([0, 2, 1]), redis_channel=channel)
        alone = Hub(redis_url=self.redis[0].url(), redis_channel=channel)
        try:
            one.start()
            wait_ready([one])
            other.start()
            # a hub just started is 503 anyway (not connected yet): wait for the mismatch
            wait_until(lambda: log_lines(one, "shard list mismatch", f"hub {other.instance_id} ")
                       and log_lines(other, "shard list mismatch", f"hub {one.instance_id} "),
                       T(6), "both hubs to hear the other's list")
            wait_status([one, other], 503, T(6), "a different list heard")
            for hub, peer in ((one, other), (other, one)):
                lines = log_lines(hub, "shard list mismatch", f"hub {peer.instance_id} ")
                self.assertTrue(lines, f"{hub.instance_id} did not log the mismatch")
                status, body = ready_body(hub)
                self.assertEqual(status, 503)
                self.assertIn("different --redis-url list", body["message"])
                self.assertEqual(len(body["shards"]), SHARDS)
                self.assertEqual(publish(hub, {"channel": "x", "data": 1})[0], 503)
            self.assertEqual(metrics(one).get("herald_redis_shard_list_mismatch", shard="1"), 1)
            self.assertEqual(other.stop(), 0)
            wait_ready([one], T(6))

            alone.start()
            wait_until(lambda: log_lines(alone, "shard list mismatch", "only Redis")
                       and log_lines(one, "shard list mismatch", f"hub {alone.instance_id} "),
                       T(6), "both hubs to hear the mismatch")
            wait_status([one, alone], 503, T(6), "a hub with one of the shards alone")
            self.assertTrue(log_lines(alone, "shard list mismatch", "only Redis"))
            self.assertTrue(log_lines(one, "shard list mismatch", f"hub {alone.instance_id} "))
            self.assertEqual(alone.stop(), 0)
            wait_ready([one], T(6))
            self.assertEqual(one.stop(), 0)
        finally:
            for hub in (one, other, alone):
                if hub.running():
                    hub.stop()


if __name__ == "__main__":
    unittest.main()
