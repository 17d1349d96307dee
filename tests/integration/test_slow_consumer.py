"""test_slow_consumer.py -- a client that stops reading is cut (close 1013, or killed
when its socket stays stuck) while a client that keeps reading on the same channel gets
every event, in order."""

import json
import sys
import unittest

from harness import (BackgroundReader, Hub, HubTestCase, Publisher, WS, T, metrics, stats,
                     unique_channel, wait_until)

QUEUE_BYTES = 65536
EVENT_PAD = 40_000
MAX_EVENTS = 400


def slow_consumer_seen(hub):
    m = metrics(hub)
    dropped = m.get("herald_events_dropped_total", 0, reason="slow_consumer")
    disconnects = m.get("herald_slow_consumer_disconnects_total", 0)
    return dropped > 0 or disconnects >= 1


class SlowConsumerTest(HubTestCase):
    def test_slow_consumer_is_cut_and_fast_one_gets_everything(self):
        ch = unique_channel("slow")
        with Hub(send_queue_bytes=QUEUE_BYTES, max_message_bytes=QUEUE_BYTES - 256) as hub:
            slow = WS.open(hub, channels=[ch], rcvbuf=4096)
            fast = WS.open(hub, channels=[ch])
            reader = BackgroundReader(fast)
            published = 0
            try:
                # `slow` reads nothing from here on
                pad = "x" * EVENT_PAD
                with Publisher(hub) as pub:
                    while published < MAX_EVENTS:
                        # pace the publisher to the fast client: it has every earlier event
                        # before the next is published, so it is never behind by more than
                        # one event (40 KB, under the 64 KiB budget) however loaded the
                        # machine is; the slow client's backlog grows all the same
                        reader.wait_for(lambda ms, n=published: len(ms) >= n, T(10),
                                        f"event {published - 1} at the fast client")
                        pub.publish_ok(ch, {"seq": published, "pad": pad})
                        published += 1
                        if published % 5 == 0 and slow_consumer_seen(hub):
                            break
                self.assertTrue(wait_until(lambda: slow_consumer_seen(hub), T(10),
                                           "the slow consumer to be detected"),
                                f"not detected after {published} events")
                self.assertLess(published, MAX_EVENTS)

                # the slow one, reading again, sees a prefix of the events, then its end
                code, reason = slow.expect_close(T(10))
                self.assertIn(code, (1013, WS.EOF, WS.RESET),
                              f"slow consumer ended with {code} {reason!r}")
                print(f"\n[slow consumer] cut after {published} events published: "
                      f"{'close ' + str(code) if code == 1013 else code}, "
                      f"{len(slow.discarded)} events read before the end", file=sys.stderr)
                got = [json.loads(p)["data"]["seq"] for _, p in slow.discarded]
                self.assertEqual(got, list(range(len(got))), "the slow client's events are not "
                                 "a prefix of what was published")
                self.assertLess(len(got), published)

                # the fast reader gets every event, in order
                msgs = reader.wait_for(lambda ms: len(ms) >= published, T(20),
                                       f"{published} events at the fast client")
                reader.stop()
                seqs = [m.get("data", {}).get("seq") for m in msgs]
                self.assertEqual(seqs, list(range(published)))
                self.assertTrue(all(m["data"]["pad"] == pad for m in msgs))

                # the hub counts it and forgets the connection; the fast one stays
                m = metrics(hub)
                if "herald_slow_consumer_disconnects_total" in m:
                    self.assertGreaterEqual(m.get("herald_slow_consumer_disconnects_total"), 1)
                self.assertGreater(m.get("herald_events_dropped_total", 0,
                                         reason="slow_consumer"), 0)
                wait_until(lambda: stats(hub).get("connections") == 1, T(5),
                           "connections to drop to 1")
                self.assertEqual(fast.request({"type": "ping", "ref": "end"}),
                                 {"type": "pong", "ref": "end"})
            finally:
                reader.stop()
                slow.abort()
                fast.close()
            self.assertEqual(hub.stop(), 0)


if __name__ == "__main__":
    unittest.main()
