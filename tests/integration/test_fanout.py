"""test_fanout.py -- many subscribers, many events: complete, exactly once, in order."""

import threading
import time
import unittest

from harness import Hub, HubTestCase, Publisher, WS, T, publish, recv_many, unique_channel

SUBSCRIBERS = 200
EVENTS = 1000


class FanoutTest(HubTestCase):
    def test_1000_events_reach_200_subscribers_complete_and_in_order(self):
        ch = unique_channel("fan")
        with Hub() as hub:
            clients = []
            try:
                for _ in range(SUBSCRIBERS):
                    clients.append(WS.connect(hub, path=f"/ws?channels={ch}", timeout=T(10)))
                hello = recv_many(clients, count=2, timeout=T(20))
                for ws, msgs in hello.items():
                    self.assertEqual(msgs[0].get("type"), "welcome")
                    self.assertEqual(msgs[1], {"type": "subscribed", "channel": ch})
                self.assertEqual(len({m[0]["connection"] for m in hello.values()}), SUBSCRIBERS)

                ids = []
                failure = []

                def publish_all():
                    try:
                        with Publisher(hub) as pub:
                            for i in range(EVENTS):
                                ids.append(pub.publish_ok(ch, {"seq": i}))
                    except BaseException as e:  # reported below
                        failure.append(e)

                started = time.monotonic()
                publisher = threading.Thread(target=publish_all, daemon=True)
                publisher.start()
                try:
                    got = recv_many(clients, count=EVENTS, timeout=T(60))
                finally:
                    publisher.join(T(60))
                elapsed = time.monotonic() - started
                self.assertFalse(publisher.is_alive(), "publisher still running")
                self.assertEqual(failure, [])
                self.assertEqual(len(ids), EVENTS)
                self.assertEqual(len(set(ids)), EVENTS, "event ids are not unique")
                for n, (ws, msgs) in enumerate(got.items()):
                    seqs = [m.get("data", {}).get("seq") for m in msgs]
                    if seqs != list(range(EVENTS)):
                        wrong = next(i for i, s in enumerate(seqs) if s != i)
                        self.fail(f"subscriber {n}: event {wrong} has seq {seqs[wrong]}")
                    self.assertTrue(all(m.get("type") == "event" and m.get("channel") == ch
                                        for m in msgs), f"subscriber {n}: not all events of {ch}")
                    self.assertEqual([m.get("id") for m in msgs], ids, f"subscriber {n}: ids")
                # exactly once: nothing more is pending for anyone (a pong comes next)
                for ws in clients:
                    ws.send_json({"type": "ping", "ref": "end"})
                tail = recv_many(clients, count=1, timeout=T(20))
                for msgs in tail.values():
                    self.assertEqual(msgs, [{"type": "pong", "ref": "end"}])
                print(f"\n[fanout] {EVENTS} events x {SUBSCRIBERS} subscribers in "
                      f"{elapsed:.2f}s", flush=True)
            finally:
                for ws in clients:
                    ws.abort()

    def test_batch_publish_of_100_arrives_in_order(self):
        ch = unique_channel("batch")
        with Hub() as hub:
            clients = [WS.open(hub, channels=[ch]) for _ in range(5)]
            try:
                batch = [{"channel": ch, "event": "b", "data": {"seq": i}} for i in range(100)]
                status, _, body = publish(hub, batch)
                self.assertEqual(status, 202, body)
                self.assertIsInstance(body, dict)
                ids = body.get("ids")
                self.assertIsInstance(ids, list)
                self.assertEqual(len(ids), 100)
                self.assertEqual(len(set(ids)), 100)
                got = recv_many(clients, count=100, timeout=T(20))
                for msgs in got.values():
                    self.assertEqual([m["data"]["seq"] for m in msgs], list(range(100)))
                    self.assertEqual([m["id"] for m in msgs], ids)
                    self.assertTrue(all(m.get("event") == "b" for m in msgs))
            finally:
                for ws in clients:
                    ws.close()


if __name__ == "__main__":
    unittest.main()
