"""test_fanout.py -- many subscribers, many events: complete, exactly once, in order."""

import time
import unittest

from harness import (positionless, Hub, HubTestCase, WS, T, assert_nothing_more, publish, publish_in_turn,
                     recv_many, recv_many_while, unique_channel)

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
                    self.assertEqual(positionless(msgs[1]), {"type": "subscribed", "channel": ch})
                self.assertEqual(len({m[0]["connection"] for m in hello.values()}), SUBSCRIBERS)

                ids = []

                def publish_all():
                    ids.extend(publish_in_turn([hub], ch, ({"seq": i} for i in range(EVENTS))))

                started = time.monotonic()
                got = recv_many_while(clients, [publish_all], count=EVENTS, timeout=T(60))
                elapsed = time.monotonic() - started
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
                assert_nothing_more(self, clients, timeout=T(20))
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
