"""test_redis_cluster.py -- several hubs on one real redis-server: every event published
through any instance reaches the subscribers of every instance exactly once, complete, and
in one order; what is on the shared channel is the documented wire format; --publish-rate
counts cluster-wide."""

import functools
import json
import math
import time
import unittest

from harness import (Hub, HubTestCase, Publisher, T, WS, assert_nothing_more, metrics,
                     open_many, publish, publish_in_turn, ready_status, recv_many,
                     recv_many_while, unique_channel, wait_until)
from redislib import Cluster, RedisServer, RedisSubscriber, RedisTestCase, redis_call

EVENTS = 1000
PER_HUB = 3  # subscribers on each instance


def open_clients(cluster, channels, per_hub=PER_HUB):
    """per_hub subscribers of channels on every hub, each welcomed by the instance it
    connected to; returns [(hub, ws)]."""
    out = open_many(cluster, channels, per_hub)
    for hub, ws in out:
        if ws.welcome.get("instance") != hub.instance_id:
            for _, w in out:
                w.abort()
            raise AssertionError(f"welcome from {hub.instance_id} names instance "
                                 f"{ws.welcome.get('instance')!r}")
    return out


class ClusterDeliveryTest(RedisTestCase):
    def test_1000_events_round_robin_through_three_apis_arrive_once_in_order_everywhere(self):
        ch, other = unique_channel("rr"), unique_channel("rr-other")
        with Cluster(self.redis, 3) as cluster:
            pairs = open_clients(cluster, [ch])
            bystanders = [WS.open(hub, channels=[other]) for hub in cluster]
            clients = [ws for _, ws in pairs]
            try:
                ids = []

                def publish_all():
                    ids.extend(publish_in_turn(cluster, ch, ({"seq": i, "via": i % 3}
                                                            for i in range(EVENTS))))

                started = time.monotonic()
                got = recv_many_while(clients, [publish_all], count=EVENTS, timeout=T(60))
                elapsed = time.monotonic() - started
                self.assertEqual(len(set(ids)), EVENTS, "event ids are not unique")
                for (hub, ws), msgs in zip(pairs, got.values()):
                    where = f"subscriber on {hub.instance_id}"
                    self.assertTrue(all(m.get("type") == "event" and m.get("channel") == ch
                                        for m in msgs), f"{where}: not all events of {ch}")
                    seqs = [m["data"]["seq"] for m in msgs]
                    if seqs != list(range(EVENTS)):
                        wrong = next(i for i, s in enumerate(seqs) if s != i)
                        self.fail(f"{where}: event {wrong} has seq {seqs[wrong]}")
                    self.assertEqual([m["id"] for m in msgs], ids, f"{where}: ids")
                assert_nothing_more(self, clients + bystanders)
                print(f"\n[cluster] {EVENTS} events round-robin over 3 hubs x "
                      f"{len(clients)} subscribers in {elapsed:.2f}s", flush=True)
            finally:
                for ws in clients + bystanders:
                    ws.abort()

    def test_concurrent_publishers_on_three_hubs_one_order_on_every_instance(self):
        ch = unique_channel("conc")
        with Cluster(self.redis, 3) as cluster:
            pairs = open_clients(cluster, [ch], per_hub=2)
            clients = [ws for _, ws in pairs]
            try:
                ids = {0: [], 1: [], 2: []}

                def publish_from(k):
                    with Publisher(cluster[k]) as pub:
                        for i in range(k, EVENTS, 3):
                            ids[k].append(pub.publish_ok(ch, {"seq": i, "via": k}))

                got = recv_many_while(clients, [functools.partial(publish_from, k)
                                                for k in range(3)],
                                      count=EVENTS, timeout=T(60))
                orders = [[m["id"] for m in msgs] for msgs in got.values()]
                everyone = set(ids[0]) | set(ids[1]) | set(ids[2])
                self.assertEqual(len(everyone), EVENTS)
                for (hub, _), order in zip(pairs, orders):
                    self.assertEqual(set(order), everyone,
                                     f"subscriber on {hub.instance_id}: not every event")
                    self.assertEqual(order, orders[0],
                                     f"subscriber on {hub.instance_id} saw another order than "
                                     f"the subscriber on {pairs[0][0].instance_id}")
                # each publisher's own events keep the order of its 202s
                for k in range(3):
                    own = [i for i in orders[0] if i in set(ids[k])]
                    self.assertEqual(own, ids[k], f"events published on hub {k} out of order")
                assert_nothing_more(self, clients)
            finally:
                for ws in clients:
                    ws.abort()

    def test_batch_crosses_instances_whole_and_in_order(self):
        ch = unique_channel("batch")
        with Cluster(self.redis, 2) as cluster:
            pairs = open_clients(cluster, [ch], per_hub=1)
            clients = [ws for _, ws in pairs]
            try:
                batch = [{"channel": ch, "event": "b", "data": {"seq": i}} for i in range(100)]
                status, _, body = publish(cluster[0], batch)
                self.assertEqual(status, 202, body)
                got = recv_many(clients, count=100, timeout=T(10))
                for msgs in got.values():
                    self.assertEqual([m["data"]["seq"] for m in msgs], list(range(100)))
                    self.assertEqual([m["id"] for m in msgs], body["ids"])
                assert_nothing_more(self, clients)
            finally:
                for ws in clients:
                    ws.abort()

    def test_awkward_payloads_cross_instances_intact(self):
        """Tabs, newlines, non-ASCII text, a long channel name, a near-limit event and a
        pretty-printed body go through the line-and-tab framing on Redis unchanged."""
        ch = "x" * 100 + ":a.b-c_" + unique_channel("odd")[-12:]
        payloads = [{"text": "tab\there\nnew line\r\n", "quote": "\"\\"},
                    {"text": "h\u00e9llo \u2028 \u2029 \U0001f600 end"},
                    [1, 2.5, None, True, {"nested": ["\t", "\n"]}],
                    "x" * 60000]
        with Cluster(self.redis, 2, max_message_bytes=65536) as cluster:
            ws = WS.open(cluster[1], channels=[ch])
            try:
                with Publisher(cluster[0]) as pub:
                    ids = [pub.publish_ok(ch, data, event="e\tv" if i == 0 else None)
                           for i, data in enumerate(payloads)]
                    # a pretty-printed body: newlines and tabs between tokens
                    pretty = json.dumps({"channel": ch, "data": {"n": 23.1, "list": [1, 2],
                                                                 "s": "a\tb"}}, indent="\t")
                    self.assertIn("\n", pretty)
                    status, _, body = pub.publish(pretty)
                    self.assertEqual(status, 202, body)
                    ids.append(body["id"])
                payloads.append({"n": 23.1, "list": [1, 2], "s": "a\tb"})
                got = [ws.recv_event(T(5)) for _ in payloads]
                self.assertEqual([m["id"] for m in got], ids)
                self.assertEqual([m["data"] for m in got], payloads)
                self.assertEqual(got[0]["event"], "e\tv")
                self.assertEqual({m["channel"] for m in got}, {ch})
                self.assertEqual(ws.request({"type": "ping"}), {"type": "pong"})
            finally:
                ws.abort()

    def test_wire_format_on_the_shared_channel(self):
        """What the hubs put on Redis is redis_wire.h's format (events H2E with epoch and seq, heartbeats H2B with
        a per-process nonce), and a hub delivers an event record put there by anyone speaking
        it (another hub, another version); payloads it does not understand are counted and
        skipped."""
        ch = unique_channel("wire")
        with Cluster(self.redis, 2) as cluster:
            spy = RedisSubscriber(self.redis.port, cluster.channel)
            ws = WS.open(cluster[1], channels=[ch])
            try:
                with Publisher(cluster[0]) as pub:
                    event_id = pub.publish_ok(ch, {"k": "v"}, event="made")
                payloads = spy.messages(HEARTBEAT_WINDOW)
                events = [p for p in payloads if p.startswith(b"H2E\n")]
                beats = [p for p in payloads if p.startswith(b"H2B\n")]
                self.assertEqual(len(events), 1, payloads)
                head, body = events[0].split(b"\n", 1)
                self.assertTrue(body.endswith(b"\n"))
                name, epoch, seq, frame = body[:-1].split(b"\t", 3)
                self.assertEqual(name.decode(), ch)
                frame = json.loads(frame)
                self.assertEqual((frame["type"], frame["channel"], frame["event"], frame["id"],
                                  frame["seq"], frame["data"]),
                                 ("event", ch, "made", event_id, 1, {"k": "v"}))
                self.assertEqual(int(seq), 1)
                self.assertEqual(epoch.decode(), ws.positions[ch][0])
                fields = [b.split(b"\n")[1].split(b"\t") for b in beats]
                self.assertTrue(all(len(f) == 5 for f in fields), beats)
                senders = {f[0].decode() for f in fields}
                self.assertEqual(senders, {h.instance_id for h in cluster},
                                 "each hub publishes a heartbeat a second")
                nonces = {f[0]: f[1] for f in fields}
                self.assertEqual(len(set(nonces.values())), 2, "one nonce per process")
                self.assertEqual(ws.recv_event(T(5))["id"], event_id)

                # foreign payloads: unknown kinds and malformed records are skipped, a
                # well-formed record from another publisher is delivered as it is
                before = metrics(cluster[1]).get("herald_redis_skipped_payloads_total", 0)
                foreign = {"type": "event", "channel": ch, "id": "from-elsewhere", "seq": 2,
                           "ts": 1, "data": {"x": 1}}
                for payload in (b"H9Z\nsomething newer\n", b"not herald at all",
                                b"H2E\nno-tab-here\n",
                                b"H2E\n" + ch.encode() + b"\t" + epoch + b"\t2\t" +
                                json.dumps(foreign, separators=(",", ":")).encode() + b"\n"):
                    redis_call(self.redis.port, "PUBLISH", cluster.channel, payload)
                got = ws.recv_event(T(5))
                self.assertEqual(got, foreign)
                wait_until(lambda: metrics(cluster[1]).get(
                    "herald_redis_skipped_payloads_total", 0) >= before + 3, T(5),
                    "three skipped payloads counted")
                self.assertEqual(ws.request({"type": "ping"}), {"type": "pong"})
                for hub in cluster:
                    self.assertTrue(hub.running(), f"{hub.instance_id} died on a foreign payload")
            finally:
                spy.close()
                ws.abort()


    def test_what_comes_from_redis_is_checked_like_a_publish(self):
        """Anything that can PUBLISH on the shared channel could inject frames: each record is
        checked as strictly as POST /publish checks a body (a valid channel that is not the
        hub's own, a size within --max-message-bytes, valid UTF-8 JSON, an event frame as hubs
        write it); what fails is counted and dropped, and never reaches a client."""
        ch = unique_channel("inject")
        with Cluster(self.redis, 1, max_message_bytes=1024, send_queue_bytes=65536) as cluster:
            hub = cluster[0]
            ws = WS.open(hub, channels=[ch, "$stats"])
            try:
                epoch = ws.positions[ch][0].encode()

                def record(channel, frame, seq=b"1"):
                    return b"H2E\n" + channel + b"\t" + epoch + b"\t" + seq + b"\t" + frame + b"\n"

                good = json.dumps({"type": "event", "channel": ch, "id": "ok-1", "seq": 1, "ts": 1,
                                   "data": 1}, separators=(",", ":")).encode()
                bad = [
                    # a frame on the hub's own $stats channel
                    record(b"$stats", b'{"type":"event","channel":"$stats","id":"x","seq":1,"ts":1,'
                                      b'"data":{"connections":-1}}'),
                    # not an event: a forged welcome, and a bare value
                    record(ch.encode(), b'{"type":"welcome","connection":"c-1"}'),
                    record(ch.encode(), b'[1,2,3]'),
                    # the frame's channel differs from the record's
                    record(ch.encode(), good.replace(ch.encode(), b"other")),
                    # invalid UTF-8 inside a string, broken JSON, a NUL byte
                    record(ch.encode(), good.replace(b'"ok-1"', b'"\xff\xfe"')),
                    record(ch.encode(), good[:-1]),
                    record(ch.encode(), good.replace(b'"ok-1"', b'"a\x00b"')),
                    # a frame whose seq is not the record's, and an epoch that is not one
                    record(ch.encode(), good, seq=b"2"),
                    b"H2E\n" + ch.encode() + b"\tno-no\t1\t" + good + b"\n",
                    # larger than any frame a publish of --max-message-bytes makes
                    record(ch.encode(), good.replace(b'"data":1', b'"data":"' + b"z" * 2000 +
                                                     b'"')),
                    # no data
                    record(ch.encode(), good.replace(b',"data":1', b'')),
                    # version 1: no seq
                    b"H1E\n" + ch.encode() + b"\t" + good + b"\n",
                ]
                before = metrics(hub).get("herald_redis_skipped_payloads_total", 0)
                for payload in bad:
                    redis_call(self.redis.port, "PUBLISH", cluster.channel, payload)
                # one good record after the bad ones, in a payload that also holds a bad one
                redis_call(self.redis.port, "PUBLISH", cluster.channel,
                           record(b"$stats", b"{}") + record(ch.encode(), good)[4:])
                seen = []
                got = ws.recv_until(lambda m: m.get("type") == "event" and m["channel"] == ch,
                                    T(5), skipped=seen)
                self.assertEqual(got["id"], "ok-1")
                for m in seen:  # only the hub's own $stats snapshots came before it
                    self.assertEqual(m.get("channel"), "$stats")
                    self.assertGreaterEqual(m["data"]["connections"], 1, m)
                wait_until(lambda: metrics(hub).get("herald_redis_skipped_payloads_total", 0)
                           >= before + len(bad) + 1, T(5), "every bad record counted")
                self.assertEqual(ws.request({"type": "ping"}), {"type": "pong"})
                self.assertTrue(hub.running())
                self.assertTrue(any("not events this hub writes" in line
                                    for line in hub.log_text().splitlines()))
            finally:
                ws.abort()

    def test_two_hubs_with_one_instance_id(self):
        """Each would take the other's heartbeat for its own and miss a dead subscription: the
        heartbeat carries a per-process nonce, both log it loudly, and the younger is not
        ready (the older keeps serving)."""
        with Cluster(self.redis, 1, instance_id="twin") as older:
            time.sleep(0.05)  # a later start
            younger = Hub(redis_url=self.redis.url(), redis_channel=older.channel,
                          instance_id="twin").start()
            try:
                wait_until(lambda: ready_status(younger) == 503, T(8), "the younger twin unready")
                wait_until(lambda: any("another hub publishes heartbeats as --instance-id twin"
                                       in l for l in younger.log_text().splitlines()), T(5),
                           "the younger logs the twin")
                wait_until(lambda: any("another hub publishes heartbeats as --instance-id twin"
                                       in l for l in older[0].log_text().splitlines()), T(5),
                           "the older logs the twin")
                for _ in range(10):  # the older stays ready throughout
                    self.assertEqual(ready_status(older[0]), 200)
                    time.sleep(0.2)
            finally:
                younger.stop()
            # with the twin gone, the older is alone and stays ready
            self.assertEqual(ready_status(older[0]), 200)


HEARTBEAT_WINDOW = 1.5  # seconds of listening that include at least one heartbeat per hub


class ClusterPublishRateTest(HubTestCase):
    RATE = 5
    BURST = 8

    def test_publish_rate_is_counted_across_instances(self):
        ch = unique_channel("rate")
        with RedisServer() as redis, Cluster(redis, 2, publish_rate=self.RATE) as cluster:
            pairs = open_clients(cluster, [ch], per_hub=1)
            clients = [ws for _, ws in pairs]
            pubs = [Publisher(hub) for hub in cluster]
            try:
                for attempt in range(3):
                    # start just after a second boundary: Redis counts per wall-clock second
                    now = time.time()
                    time.sleep(math.ceil(now) - now + 0.02)
                    window = math.floor(time.time())
                    answers = []
                    for i in range(self.BURST):
                        status, headers, body = pubs[i % 2].publish(
                            {"channel": ch, "data": {"n": i, "try": attempt}})
                        answers.append((status, headers.get("Retry-After"), body))
                    if math.floor(time.time()) == window:
                        break
                    # the burst straddled a boundary (a very slow machine): wait out this
                    # window and the next so no count is left over, then try again
                    time.sleep(2.1 - (time.time() - window))
                else:
                    self.fail("could not publish 8 times within one second")
                statuses = [a[0] for a in answers]
                self.assertEqual(statuses.count(202), self.RATE, answers)
                self.assertEqual(statuses.count(429), self.BURST - self.RATE, answers)
                # requests were sequential: the first RATE were taken
                self.assertEqual(statuses, [202] * self.RATE + [429] * (self.BURST - self.RATE))
                for status, retry_after, body in answers[self.RATE:]:
                    self.assertIsNotNone(retry_after, "429 without Retry-After")
                    self.assertGreaterEqual(int(retry_after), 1)
                    self.assertEqual(body.get("error"), "rate_limited")
                accepted = [a[2]["id"] for a in answers[:self.RATE]]
                got = recv_many(clients, count=self.RATE, timeout=T(10))
                for msgs in got.values():
                    self.assertEqual([m["id"] for m in msgs], accepted)
                assert_nothing_more(self, clients)
                # the next second starts a new count, on either instance
                wait_until(lambda: math.floor(time.time()) > window, T(2), "the next second")
                for pub in pubs:
                    status, _, body = pub.publish({"channel": ch, "data": "later"})
                    self.assertEqual(status, 202, body)
            finally:
                for p in pubs:
                    p.close()
                for ws in clients:
                    ws.abort()


if __name__ == "__main__":
    unittest.main()
