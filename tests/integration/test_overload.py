"""test_overload.py -- SPEC "Overload" and max_rate.

Overload: an open-loop publisher (herald-bench --saturate with no backlog bound, POSTing as
fast as it can over 8 connections) against 1,000 readers that read as fast as they can, for
10 s: the hub answers some publishes 503 overloaded with Retry-After, closes none of those
readers, and every event it answered 202 reaches every one of them once (herald-bench
--verify keeps, per subscriber, a bit per event accepted); one reader among them that stops
reading is still cut as a slow consumer. The readers are herald-bench's: a C client can read at the
rate the hub writes, where a Python one would itself be the slow consumer.

Events from another hub that this one cannot deliver: with Redis, a hub cannot refuse what
other hubs publish; past its backlog bound it keeps its readers connected and tells them, as a
gap, which events they will not get.

max_rate: a subscription paced at R events a second per event name gets the newest event of
each name at most every 1/R s, and the last event of a burst always arrives."""

import json
import os
import subprocess
import threading
import time
import unittest

from harness import (BackgroundReader, Hub, HubTestCase, Publisher, T, WS, WRAPPER, metrics,
                     publish, unique_channel, wait_until)
from redislib import RedisServer, wait_ready
from util import REPO_ROOT
from wsclient import WSTimeout

HERALD_BENCH_BIN = os.environ.get("HERALD_BENCH_BIN") or os.path.join(
    REPO_ROOT, "build", "clients", "herald-bench")

READERS = 1000
BURST_S = 10


def run_bench(hub, channel, seconds, size):
    """herald-bench: READERS subscribers of channel, an open-loop publisher for seconds.
    Returns its JSON summary."""
    args = [HERALD_BENCH_BIN, "--ws", f"ws://127.0.0.1:{hub.port}/ws",
            "--api", f"http://127.0.0.1:{hub.api_port}/publish",
            "--subscribers", str(READERS), "--channel", channel, "--saturate",
            "--inflight", "8", "--size", str(size), "--duration", str(seconds),
            "--drain", str(T(10)), "--verify",
            "--json", "--quiet"]
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=T(seconds + 60))
    if done.returncode != 0:
        raise AssertionError(f"herald-bench exited {done.returncode}: "
                             f"{done.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(done.stdout)


@unittest.skipIf(WRAPPER, "1,000 readers at full speed: not under valgrind")
class OverloadTest(HubTestCase):
    def test_open_loop_publisher_meets_overloaded_and_no_reader_that_keeps_up_is_cut(self):
        ch = unique_channel("burst")
        # 1 KB events and a 256 KiB queue budget, so that the slow reader (whose kernel
        # buffers take some megabytes before its socket chokes) is cut within the run
        with Hub(max_backlog_bytes=16 << 20, send_queue_bytes=256 << 10) as hub:
            # a reader that stops reading: a small receive buffer, and nothing read after the
            # subscribe
            slow = WS.open(hub, channels=[ch], rcvbuf=4096)
            report = run_bench(hub, ch, BURST_S, 1000)
            m = metrics(hub)
            pub, got = report["published"], report["delivered"]
            print(f"\n[overload] {pub['events_acked']} events answered 202, "
                  f"{pub['status'].get('503', 0)} answered 503 in {BURST_S} s; "
                  f"{got['frames']} frames delivered to {READERS} readers, {got['lost']} lost; "
                  f"closes {report['closes']}", flush=True)

            self.assertGreater(pub["status"].get("503", 0), 0, "the publisher never met 503")
            self.assertIn("overloaded", pub["first_error"])
            self.assertGreater(m.get("herald_publish_overloaded_total"), 0)
            self.assertGreater(pub["events_acked"], 1000, "hardly anything was accepted")
            # no reader that kept up was closed, and each got every event answered 202
            self.assertEqual(report["closes"], {}, "readers that kept up were closed")
            self.assertEqual(got["expected"], pub["events_acked"] * READERS)
            self.assertEqual(got["lost"], 0, "events answered 202 are missing at readers")
            self.assertEqual(got["frames"], got["expected"])
            # and by event: each subscriber got each event answered 202 exactly once, and
            # none that was refused
            v = report["verify"]
            self.assertTrue(v["ok"])
            self.assertEqual(v["verified"], READERS)
            self.assertEqual((v["missing"], v["duplicates"], v["unacked"]), (0, 0, 0), v)
            self.assertEqual(m.get("herald_events_dropped_total", reason="overload"), 0)
            self.assertEqual(m.get("herald_sequence_lost_total"), 0)
            # the reader that stopped reading is cut, and it is the only one; its kernel
            # buffers took some megabytes first, which a slow machine may not have sent it
            # within the run: then the run's readers are gone and more events go to it alone
            cut = lambda: metrics(hub).get("herald_disconnects_total", reason="slow_consumer")
            deadline = time.monotonic() + T(20)
            with Publisher(hub) as p:
                while not cut() and time.monotonic() < deadline:
                    p.publish([{"channel": ch, "data": {"pad": "z" * 30000}}] * 8)
            self.assertEqual(cut(), 1, "the reader that stopped reading was not cut")
            slow.abort()

    def test_retry_after_comes_with_overloaded(self):
        """A backlog bound smaller than one event's fan-out: the first publish is taken
        (nothing is behind yet), and while the readers have it queued the next is 503
        overloaded with Retry-After."""
        ch = unique_channel("over")
        with Hub(max_backlog_bytes=65536, send_queue_bytes=1 << 20) as hub:
            readers = [WS.open(hub, channels=[ch], rcvbuf=4096) for _ in range(4)]
            big = {"channel": ch, "data": {"pad": "x" * 30000}}
            statuses = []
            deadline = time.monotonic() + T(10)
            with Publisher(hub) as p:
                while time.monotonic() < deadline:
                    status, headers, body = p.publish(big)
                    statuses.append(status)
                    if status == 503:
                        break
            self.assertEqual(statuses[0], 202)
            self.assertEqual(status, 503, f"never overloaded: {statuses}")
            self.assertEqual(body["error"], "overloaded")
            self.assertEqual(headers.get("Retry-After"), "1")
            for ws in readers:
                ws.abort()


class ReadersStallingTogetherTest(HubTestCase):
    def test_readers_that_stall_together_are_not_cut(self):
        """Every reader of a plane stops reading at once (their machine descheduled, a network
        that stalls): each queue passes --send-queue-bytes with its socket choked, but none is
        behind the others, so none is cut (the backlog bound slows the publishers instead), and
        once they read again each gets every event, in order. The cut rule was "past the budget
        and choked" alone, and each of them was cut with 1013."""
        ch = unique_channel("stall")
        budget = 256 << 10
        pad = "s" * 8000
        with Hub(send_queue_bytes=budget, max_message_bytes=160 << 10, delivery_threads=1) as hub:
            readers = [WS.open(hub, channels=[ch], rcvbuf=4096) for _ in range(3)]
            n = 0
            deadline = time.monotonic() + T(30)
            with Publisher(hub) as p:
                # until the queues hold about twice the budget each (the cap is four times)
                while True:
                    m = metrics(hub)
                    self.assertEqual(m.get("herald_disconnects_total", reason="slow_consumer"), 0,
                                     "a reader that stalled with the others was cut")
                    if m.get("herald_backlog_bytes") >= len(readers) * 2 * budget:
                        break
                    self.assertLess(time.monotonic(), deadline, "the readers' sockets never choked")
                    batch = [{"channel": ch, "data": {"i": n + k, "pad": pad}} for k in range(16)]
                    status, _, body = p.publish(batch)
                    self.assertEqual(status, 202, body)
                    n += 16
                time.sleep(2.5)  # more than a pace window in which no reader took anything
                status, _, body = p.publish({"channel": ch, "data": {"i": n, "pad": pad}})
                self.assertEqual(status, 202, body)
                n += 1
            print(f"\n[stall] {n} events of 8 KB queued for 3 readers that stopped reading",
                  flush=True)
            self.assertEqual(metrics(hub).get("herald_disconnects_total", reason="slow_consumer"), 0)
            for ws in readers:
                got = [ws.recv_event(T(20))["data"]["i"] for _ in range(n)]
                self.assertEqual(got, list(range(n)))
            self.assertEqual(metrics(hub).get("herald_disconnects_total", reason="slow_consumer"), 0)
            for ws in readers:
                ws.close()


class JamTest(HubTestCase):
    def test_slow_readers_holding_the_bound_are_cut_and_publishing_goes_on(self):
        """Slow readers (not stopped) that hold the backlog bound between them before any
        passes four times its budget: the hub refused every publish, the fast reader had
        nothing to take, and the pace the slow ones were compared with was their own, so none
        was cut while publishing stayed frozen (7 to 12 s in tests/bench/jam). Now, once the
        hub has refused every publish for a second while a reader is caught up, the reader
        furthest behind is cut (1013): publishing goes on within seconds, and the fast reader
        gets every event answered 202, in order."""
        ch = unique_channel("jam")
        pad = "j" * 2000
        with Hub(send_queue_bytes=65536, max_backlog_bytes=1 << 20, max_message_bytes=16384,
                 delivery_threads=1) as hub:
            fast = BackgroundReader(WS.open(hub, channels=[ch]), "fast reader")
            slow = [WS.open(hub, channels=[ch], rcvbuf=4096) for _ in range(8)]
            stop = threading.Event()

            def read_slowly(ws):  # 4 KiB every 50 ms, until the hub ends the connection
                ws.sock.settimeout(0.2)
                while not stop.is_set():
                    try:
                        if not ws.sock.recv(4096):
                            return
                    except OSError:
                        if stop.is_set():
                            return
                        continue
                    time.sleep(0.05)

            threads = [threading.Thread(target=read_slowly, args=(ws,), daemon=True)
                       for ws in slow]
            for t in threads:
                t.start()
            accepted, accepted_at, refused = [], [], 0
            started = time.monotonic()
            with Publisher(hub) as p:
                n = 0
                while time.monotonic() - started < T(10):
                    delay = started + n / 800 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    status, _, body = p.publish({"channel": ch, "data": {"i": n, "pad": pad}})
                    if status == 202:
                        accepted.append(n)
                        accepted_at.append(time.monotonic())
                    else:
                        self.assertEqual(status, 503, body)
                        self.assertEqual(body["error"], "overloaded", body)
                        refused += 1
                    n += 1
            stop.set()
            cut = metrics(hub).get("herald_disconnects_total", reason="slow_consumer")
            ended = time.monotonic()
            marks = [started] + accepted_at + [ended]  # the run's ends count as answers
            longest = max(b - a for a, b in zip(marks, marks[1:]))
            print(f"\n[jam] {n} publishes: {len(accepted)} accepted, {refused} refused; "
                  f"longest time without a 202: {longest:.1f} s; {cut:.0f} slow readers cut",
                  flush=True)
            self.assertGreater(refused, 0, "the slow readers never held the backlog bound")
            self.assertGreaterEqual(cut, 1, "no slow reader was cut")
            self.assertLess(longest, T(4), "publishing stayed frozen")
            fast.wait_for(lambda msgs: sum(m.get("type") == "event" for m in msgs)
                          >= len(accepted), T(20), "every accepted event at the fast reader")
            got = [m["data"]["i"] for m in fast.messages if m.get("type") == "event"]
            self.assertEqual(got, accepted)
            self.assertIsNone(fast.closed, "the fast reader was cut")
            fast.stop()
            for t in threads:
                t.join(T(2))
            for ws in slow:
                ws.sock.close()


class AdmittedBatchTest(HubTestCase):
    def test_a_batch_taken_on_an_idle_hub_is_delivered_whole(self):
        """A publish is taken while the backlog is under --max-backlog-bytes; what it adds
        may go past it (one batch here is twice the bound) and must still be delivered:
        every event, in order, no gap, nothing counted as dropped."""
        ch = unique_channel("batch")
        pad = "b" * 20000
        with Hub(max_backlog_bytes=65536, max_message_bytes=256 << 10, delivery_threads=1) as hub:
            ws = WS.open(hub, channels=[ch])
            batch = [{"channel": ch, "data": {"i": i, "pad": pad}} for i in range(7)]
            status, _, body = publish(hub, batch)
            self.assertEqual(status, 202, body)
            got = []
            for _ in range(7):
                got.append(ws.recv_until(lambda m: m.get("type") in ("event", "gap"), T(10)))
            self.assertEqual([(m["type"], m.get("data", {}).get("i")) for m in got],
                             [("event", i) for i in range(7)])
            self.assertEqual(metrics(hub).get("herald_events_dropped_total", reason="overload"), 0)
            ws.close()


class CrossHubOverloadTest(HubTestCase):
    def test_events_from_another_hub_past_the_bound_become_a_gap(self):
        """Hub B (one delivery plane, a 64 KiB backlog bound, a 32 MiB queue budget) holds a
        reader that stops reading and one that keeps reading; hub A publishes 16 KB events.
        When the stopped reader's queue takes B's plane past twice the bound, the channel's
        later events become a pending gap (A still answers 202: it cannot know); once the
        stopped reader is gone the reading one gets the gap, then the events after it: every
        seq once, as an event or inside the gap, in order, and it was never cut."""
        ch = unique_channel("xhub")
        pad = "y" * 16000
        with RedisServer() as redis:
            channel = unique_channel("herald-test")
            a = Hub(redis_url=redis.url(), redis_channel=channel)
            b = Hub(redis_url=redis.url(), redis_channel=channel, delivery_threads=1,
                    max_backlog_bytes=65536, send_queue_bytes=32 << 20)
            with a, b:
                wait_ready([a, b])
                stopped = WS.open(b, channels=[ch], rcvbuf=4096)
                reading = WS.open(b, channels=[ch])
                reader = BackgroundReader(reading, "reading")
                sent = 0
                with Publisher(a) as p:
                    for i in range(1200):
                        status, _, body = p.publish({"channel": ch, "data": {"i": i, "pad": pad}})
                        self.assertEqual(status, 202, body)
                        sent += 1
                        if i % 50 == 49 and metrics(b).get(
                                "herald_events_dropped_total", reason="overload") > 0:
                            break
                dropped = metrics(b).get("herald_events_dropped_total", reason="overload")
                self.assertGreater(dropped, 0, f"B never went past its bound in {sent} events")
                stopped.abort()  # B's backlog goes with it: the pending gap can be sent
                with Publisher(a) as p:
                    for i in range(5):
                        p.publish_ok(ch, {"after": i})
                total = sent + 5

                def covered(msgs):
                    seen = 0
                    for m in msgs:
                        if m.get("type") == "event":
                            seen = max(seen, m["seq"])
                        elif m.get("type") == "gap":
                            seen = max(seen, m["to"])
                    return seen >= total

                msgs = reader.wait_for(covered, T(20), "every seq, as events or a gap")
                reader.stop()
                seqs, gaps = [], []
                for m in msgs:
                    if m.get("type") == "event":
                        seqs.append(m["seq"])
                    elif m.get("type") == "gap":
                        gaps.append((m["from"], m["to"]))
                        seqs.extend(range(m["from"], m["to"] + 1))
                print(f"\n[overload] from another hub: {total} events, the reading client got "
                      f"{total - sum(t - f + 1 for f, t in gaps)} and gaps {gaps}", flush=True)
                self.assertTrue(gaps, "no gap was announced")
                self.assertEqual(seqs, list(range(1, total + 1)),
                                 "not every seq once, in order, as an event or in a gap")
                self.assertIsNone(reader.closed, "the reading client was cut")
                self.assertEqual(metrics(b).get("herald_sequence_lost_total"),
                                 sum(t - f + 1 for f, t in gaps))


def publish_paced(hub, channel, names, per_sec, seconds):
    """Publishes events of the given names in turn at per_sec for seconds over one
    connection; returns [(name, id)] in publish order."""
    sent = []
    interval = 1.0 / per_sec
    start = time.monotonic()
    with Publisher(hub) as p:
        i = 0
        while time.monotonic() - start < seconds:
            name = names[i % len(names)]
            status, _, body = p.publish({"channel": channel, "event": name, "data": {"i": i}})
            if status != 202:
                raise AssertionError(f"publish answered {status} {body!r}")
            sent.append((name, body["id"]))
            i += 1
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    return sent


def collect(ws, until_id, timeout):
    """(arrival time, frame) of every event ws receives until the one with id until_id
    (None: until timeout passes)."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = ws.recv_json(timeout=max(0.05, deadline - time.monotonic()))
        except WSTimeout:
            if until_id is None:
                return got
            raise
        if msg.get("type") != "event":
            continue
        got.append((time.monotonic(), msg))
        if msg["id"] == until_id:
            return got
    if until_id is None:
        return got
    raise AssertionError(f"no event {until_id} within {timeout} s; got "
                         f"{[m['seq'] for _, m in got][-10:]}")


class MaxRateTest(HubTestCase):
    def test_one_name_at_100_per_second_arrives_at_about_2_per_second(self):
        ch = unique_channel("pace")
        with Hub() as hub:
            paced = WS.open(hub)
            paced.request({"type": "subscribe", "channel": ch, "max_rate": 2})
            every = WS.open(hub, channels=[ch])
            seconds = 3.0
            # read as they come, to see when each arrives
            frames = []
            reader = threading.Thread(target=lambda: frames.extend(
                collect(paced, None, seconds + T(3))), daemon=True)
            reader.start()
            sent = publish_paced(hub, ch, ["gauge"], 100, seconds)
            last = sent[-1][1]
            order = {eid: i + 1 for i, (_, eid) in enumerate(sent)}
            ended = time.monotonic()
            reader.join()
            got = frames
            all_got = collect(every, last, T(5))
            seqs = [m["seq"] for _, m in got]
            self.assertEqual(seqs, [order[m["id"]] for _, m in got])  # seq n is the n-th
            print(f"\n[max_rate] 2/s: {len(sent)} published in {seconds:.0f} s, "
                  f"{len(got)} delivered: seq {seqs}", flush=True)
            # about 2 a second: the first at once, then one per 0.5 s, then the last
            self.assertLessEqual(len(got), seconds * 2 + 2)
            self.assertGreaterEqual(len(got), seconds * 2 - 1)
            self.assertEqual(seqs, sorted(seqs))
            self.assertEqual(got[-1][1]["id"], last, "the last event of the burst did not arrive")
            self.assertLess(got[-1][0] - ended, 0.5 + T(0.3), "the last came late")
            # at most one per 1/R s (a little slack for the scheduler)
            gaps = [b[0] - a[0] for a, b in zip(got, got[1:])]
            self.assertGreater(min(gaps), 0.4, f"closer than 1/R s: {gaps}")
            # the unpaced subscriber got every event
            self.assertEqual([m["id"] for _, m in all_got], [eid for _, eid in sent])
            paced.close()
            every.close()

    def test_two_names_are_paced_separately(self):
        ch = unique_channel("pace2")
        with Hub() as hub:
            paced = WS.open(hub)
            paced.request({"type": "subscribe", "channel": ch, "max_rate": 4})
            sent = publish_paced(hub, ch, ["cpu", "mem"], 100, 2.0)
            last = {name: eid for name, eid in sent}
            got = collect(paced, sent[-1][1], T(3))
            time.sleep(0.5)  # the other name's last may come after the overall last seq
            while True:
                try:
                    msg = paced.recv_json(timeout=0.3)
                except WSTimeout:  # nothing more
                    break
                if msg.get("type") == "event":
                    got.append((time.monotonic(), msg))
            by_name = {}
            for _, m in got:
                by_name.setdefault(m["event"], []).append(m["id"])
            print(f"\n[max_rate] 4/s, two names: {len(sent)} published, delivered "
                  f"{ {k: len(v) for k, v in by_name.items()} }", flush=True)
            for name in ("cpu", "mem"):
                self.assertIn(name, by_name)
                self.assertEqual(by_name[name][-1], last[name], f"{name}: its last is missing")
                self.assertLessEqual(len(by_name[name]), 2 * 4 + 2, name)
                self.assertGreaterEqual(len(by_name[name]), 2 * 4 - 2, name)
            seqs = [m["seq"] for _, m in got]
            self.assertEqual(seqs, sorted(seqs), "paced events out of order")
            paced.close()

    def test_max_rate_out_of_range_is_bad_request(self):
        ch = unique_channel("pace-bad")
        with Hub() as hub:
            ws = WS.open(hub)
            for bad in (0, 1001, -1, "2", 1.5):
                reply = ws.request({"type": "subscribe", "channel": ch, "max_rate": bad,
                                    "ref": "r"})
                self.assertEqual((reply["type"], reply["code"]), ("error", "bad_request"), bad)
            ws.close()


if __name__ == "__main__":
    unittest.main()
