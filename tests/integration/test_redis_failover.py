"""test_redis_failover.py -- hubs on a real redis-server that crashes, restarts, freezes,
or wants a password: /ready and publishes answer 503 while Redis is gone (never a 202 for
an event that was not handed on), the loss is logged, and every instance recovers by
itself; clients stay connected throughout and get the events published after."""

import threading
import time
import unittest
from collections import Counter

from harness import (Hub, HubTestCase, Publisher, T, WS, metrics, open_many, publish,
                     publish_in_turn, recv_many, unique_channel, wait_until)
from dnslib import FakeDNS
from redislib import (BACKOFF_CAP_S, HEARTBEAT_LOST_S, HEARTBEAT_S, AttemptRecorder, Cluster,
                      RedisServer, RedisTestCase, log_lines, ready_status, wait_ready,
                      wait_status)

RESTART_READY_S = 2.0  # the issue: every instance is ready again within 2 s of a restart


def subscribers(cluster, ch, per_hub=2):
    return [ws for _, ws in open_many(cluster, [ch], per_hub)]


class StreamingPublisher:
    """Publishes round-robin over the hubs from a thread until stopped; records for every
    request (started, answered, hub index, seq, status, body), monotonic times."""

    def __init__(self, hubs, channel, pause=0.003):
        self.hubs, self.channel, self.pause = hubs, channel, pause
        self.log = []
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        pubs = [Publisher(h, timeout=T(10)) for h in self.hubs]
        try:
            seq = 0
            while not self._stop.is_set():
                k = seq % len(pubs)
                started = time.monotonic()
                status, _, body = pubs[k].publish({"channel": self.channel,
                                                   "data": {"seq": seq}})
                self.log.append((started, time.monotonic(), k, seq, status, body))
                seq += 1
                time.sleep(self.pause)
        except BaseException as e:
            self.error = e
        finally:
            for p in pubs:
                p.close()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(T(15))
        if self._thread.is_alive():
            raise AssertionError("publisher thread did not stop")
        if self.error is not None:
            raise AssertionError(f"publisher failed: {self.error!r}")

    def accepted(self):
        return [e for e in self.log if e[4] == 202]


def attempt_gaps(hub):
    """Seconds between consecutive connect attempts of each link, from the debug log
    (diagnostics for a slow recovery)."""
    gaps = {}
    last = {}
    for line in log_lines(hub, "link down -> connecting"):
        stamp, _, _, msg = line.split(None, 3)
        link = msg.split()[0]
        t = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(stamp[19:23])
        if link in last:
            gaps.setdefault(link, []).append(round(t - last[link], 2))
        last[link] = t
    return gaps


class RedisLossTest(HubTestCase):
    def test_redis_killed_mid_stream_then_restarted(self):
        ch = unique_channel("kill")
        with RedisServer() as redis, Cluster(redis, 3) as cluster:
            clients = subscribers(cluster, ch)
            stream = StreamingPublisher(cluster.hubs, ch)
            try:
                stream.start()
                wait_until_count = time.monotonic() + T(5)
                while len(stream.accepted()) < 60 and time.monotonic() < wait_until_count:
                    time.sleep(0.01)
                self.assertGreaterEqual(len(stream.accepted()), 60, "publishing did not start")

                redis.kill()
                dead = time.monotonic()
                went = wait_status(cluster.hubs, 503, T(HEARTBEAT_S), "Redis killed")
                slowest = max(went.values())
                self.assertLessEqual(slowest, T(HEARTBEAT_S), "/ready 503 within one heartbeat")
                for hub in cluster:
                    self.assertEqual(metrics(hub).get("herald_redis_connected"), 0)
                time.sleep(1.2)  # publishing goes on while Redis is down
                stream.stop()
                restarted_at = time.monotonic()
                redis.restart()
                restart_took = time.monotonic() - restarted_at
                back = wait_status(cluster.hubs, 200, T(RESTART_READY_S + 2),
                                   "after the restart")
                down_for = time.monotonic() - dead

                after_kill = [e for e in stream.log if e[0] >= dead]
                self.assertGreater(len(after_kill), 20, "few publishes while Redis was down")
                wrong = [e for e in after_kill if e[4] != 503]
                self.assertEqual(wrong, [], "publishes sent while Redis was down must be 503")
                self.assertTrue(all(e[5].get("error") == "unavailable" for e in after_kill))
                slow = max(e[1] - e[0] for e in after_kill)
                self.assertLess(slow, T(1.0), "a publish hung while Redis was down")

                # recovery within 2 s of redis-server answering again
                worst = max(back.values())
                self.assertLessEqual(worst, T(RESTART_READY_S),
                                     f"ready {worst:.2f}s after the restart "
                                     f"(Redis down {down_for:.1f}s); attempt gaps: "
                                     f"{attempt_gaps(cluster[0])}")

                # events after the restart reach every subscriber of every instance, and
                # everything that was answered 202 arrived, once, in one order; Redis kept
                # nothing (no persistence), so the channel's numbering restarted: each
                # subscriber is told (a new epoch, recovered:false) before the new events,
                # never given a silent jump back to seq 1
                later = publish_in_turn(cluster, ch, ({"after": i} for i in range(30)))
                before = [e[5]["id"] for e in stream.accepted()]
                got = recv_many(clients, until=lambda m: len(m) >= 1 and
                                m[-1].get("id") == later[-1], timeout=T(10))
                for n, msgs in enumerate(got.values()):
                    self.assertEqual([m["id"] for m in msgs if m["type"] == "event"],
                                     before + later,
                                     f"subscriber {n}: not every accepted event, once, in order")
                    kinds = [m["type"] for m in msgs]
                    self.assertEqual(kinds, ["event"] * len(before) + ["subscribed"] +
                                     ["event"] * len(later), f"subscriber {n}")
                    reset = msgs[len(before)]
                    self.assertEqual((reset["channel"], reset["seq"], reset["recovered"]),
                                     (ch, 0, False))
                    self.assertEqual([m["seq"] for m in msgs[:len(before)]],
                                     list(range(1, len(before) + 1)))
                    self.assertEqual([m["seq"] for m in msgs[len(before) + 1:]],
                                     list(range(1, len(later) + 1)))
                for ws in clients:
                    self.assertIsNone(ws.closed)

                # each step logged once per outage
                for hub in cluster:
                    self.assertEqual(len(log_lines(hub, "link lost", level="warn")), 2,
                                     f"{hub.instance_id}: 'link lost' once per link")
                    self.assertEqual(len(log_lines(hub, "broker not ready", level="warn")), 1)
                    self.assertEqual(len(log_lines(hub, "link up again", level="info")), 2)
                    self.assertEqual(len(log_lines(hub, "broker ready", level="info")), 2)
                    self.assertGreater(metrics(hub).get("herald_redis_reconnects_total"), 0)
                    self.assertEqual(metrics(hub).get("herald_redis_connected"), 1)
                print(f"\n[failover] kill: /ready 503 after {slowest * 1000:.0f} ms; "
                      f"{len(after_kill)} publishes while down, all 503; restart took "
                      f"{restart_took:.2f}s, ready again after {worst:.2f}s", flush=True)
            finally:
                stream._stop.set()
                for ws in clients:
                    ws.abort()

    def test_reconnect_schedule_during_a_long_outage(self):
        """A restart can come at any moment of an outage, also after the backoff has grown.
        For every instance to be ready within 2 s of Redis answering again, no link may
        wait 2 s or more between connect attempts; and the jitter must spread the hubs'
        attempts rather than have every hub reconnect at the same instant. A stand-in on
        Redis's port records each link's attempts during an 8 s outage (each hub selects
        its own database, which tells them apart)."""
        base = unique_channel("sched")
        with RedisServer() as redis:
            hubs = [Hub(redis_url=redis.url(db=i + 1), redis_channel=base) for i in range(3)]
            with hubs[0], hubs[1], hubs[2]:
                wait_ready(hubs)
                redis.kill()
                wait_status(hubs, 503, T(HEARTBEAT_S), "Redis killed")
                recorder = AttemptRecorder(redis.port)
                try:
                    time.sleep(8.0)
                finally:
                    recorder.stop()
                redis.restart()
                back = wait_status(hubs, 200, T(BACKOFF_CAP_S + 3), "after the restart")
                gaps = {(db, word): recorder.gaps(db, word)
                        for db in (1, 2, 3) for word in ("SUBSCRIBE", "PING")}
                print(f"\n[failover] 8 s outage: ready "
                      f"{', '.join(f'{v:.2f}' for v in back.values())}s after the restart; "
                      f"seconds between hub 1's attempts: sub "
                      f"{[round(g, 2) for g in gaps[1, 'SUBSCRIBE']]}, pub "
                      f"{[round(g, 2) for g in gaps[1, 'PING']]}", flush=True)
                for key, g in gaps.items():
                    self.assertGreaterEqual(len(g), 3, f"few attempts recorded for {key}: "
                                                       f"{recorder.attempts}")
                with self.subTest("no link waits 2 s between attempts"):
                    worst = max(max(g) for g in gaps.values())
                    self.assertLess(worst, RESTART_READY_S - 0.1,
                                    f"a link waited {worst:.2f}s between connect attempts: a "
                                    f"Redis back then is not used for that long (the issue: "
                                    f"every instance ready within {RESTART_READY_S:.0f}s)")
                    self.assertLessEqual(max(back.values()), T(RESTART_READY_S))
                with self.subTest("the hubs do not reconnect in lockstep"):
                    # attempts from the fourth on (backoff >= 400 ms, jitter >= 200 ms):
                    # how many have another hub's sub link attempt within 5 ms
                    late = {db: recorder.times(db, "SUBSCRIBE")[3:] for db in (1, 2, 3)}
                    together = sum(1 for db, ts in late.items() for t in ts
                                   if any(abs(t - u) < 0.005 for o, us in late.items()
                                          if o != db for u in us))
                    total = sum(len(ts) for ts in late.values())
                    self.assertLess(together, total / 2,
                                    f"{together} of {total} reconnect attempts came within "
                                    f"5 ms of another hub's: the jitter is the same in every "
                                    f"process (is random() seeded?)")

    def test_redis_paused_longer_than_the_heartbeat_window(self):
        ch = unique_channel("pause")
        with RedisServer() as redis, Cluster(redis, 3) as cluster:
            clients = subscribers(cluster, ch, per_hub=1)
            try:
                with Publisher(cluster[0]) as pub:
                    first = pub.publish_ok(ch, "before")
                for msgs in recv_many(clients, count=1, timeout=T(5)).values():
                    self.assertEqual(msgs[0]["id"], first)
                reconnects = [metrics(h).get("herald_redis_reconnects_total") for h in cluster]

                redis.pause()
                paused = time.monotonic()
                # a publish sent while the hubs still think Redis is there: Redis never
                # answers its PUBLISH, so it must not get a 202
                inflight = {}

                def publish_inflight():
                    started = time.monotonic()
                    status, _, body = publish(cluster[1], {"channel": ch, "data": "frozen"})
                    inflight.update(status=status, body=body, took=time.monotonic() - started,
                                    at=started - paused)

                t = threading.Thread(target=publish_inflight, daemon=True)
                time.sleep(0.2)
                t.start()
                lost = wait_status(cluster.hubs, 503, T(HEARTBEAT_LOST_S + HEARTBEAT_S + 1),
                                   "Redis paused")
                detected = max(lost.values())
                t.join(T(5))
                self.assertFalse(t.is_alive(), "the in-flight publish was never answered")
                self.assertEqual(inflight["status"], 503, inflight)
                self.assertEqual(inflight["body"].get("error"), "unavailable")
                # reported: the hub says why (at its next heartbeat tick: /ready goes 503
                # as soon as the window passes, the check that logs runs once a second)
                wait_until(lambda: all(log_lines(h, "own heartbeat not heard", level="warn")
                                       for h in cluster), T(HEARTBEAT_S + 0.5),
                           "'own heartbeat not heard' logged by every hub")
                for hub in cluster:
                    self.assertEqual(len(log_lines(hub, "own heartbeat not heard",
                                                   level="warn")), 1, hub.instance_id)
                    self.assertEqual(len(log_lines(hub, "broker not ready", level="warn")), 1)
                    self.assertEqual(ready_status(hub), 503)
                # while it stays frozen, publishes are refused at once
                started = time.monotonic()
                status, _, body = publish(cluster[2], {"channel": ch, "data": "refused"})
                self.assertEqual(status, 503, body)
                self.assertLess(time.monotonic() - started, T(0.5))

                hold = max(paused + HEARTBEAT_LOST_S + 2.0, time.monotonic() + 0.5)
                time.sleep(max(0.0, hold - time.monotonic()))
                paused_for = time.monotonic() - paused
                redis.resume()
                back = wait_status(cluster.hubs, 200, T(RESTART_READY_S + 2), "after SIGCONT")
                recovered = max(back.values())
                self.assertLessEqual(recovered, T(RESTART_READY_S),
                                     f"ready {recovered:.2f}s after Redis resumed")
                for hub, before in zip(cluster, reconnects):
                    self.assertEqual(len(log_lines(hub, "link up again", level="info")), 2)
                    self.assertGreater(metrics(hub).get("herald_redis_reconnects_total"), before)

                later = publish_in_turn(cluster, ch, ({"after": i} for i in range(9)))
                got = recv_many(clients, until=lambda m: len(m) >= 1 and
                                m[-1].get("id") == later[-1], timeout=T(10))
                frozen_seen = 0
                for n, msgs in enumerate(got.values()):
                    ids = [m["id"] for m in msgs]
                    # The frozen PUBLISH was answered 503, but it sat in Redis's socket
                    # buffer: Redis may run it when it resumes (before the hubs have
                    # subscribed again, it reaches nobody). Never more than once.
                    extra = [m for m in msgs if m.get("data") == "frozen"]
                    frozen_seen += len(extra)
                    self.assertLessEqual(len(extra), 1)
                    self.assertEqual([i for i in ids if i not in {m["id"] for m in extra}],
                                     later, f"subscriber {n}")
                print(f"\n[failover] SIGSTOP {paused_for:.1f}s: /ready 503 after "
                      f"{detected:.2f}s, in-flight publish 503 after {inflight['took']:.2f}s, "
                      f"ready {recovered:.2f}s after SIGCONT; the 503'd event reached "
                      f"{frozen_seen} of {len(clients)} subscribers later", flush=True)
            finally:
                for ws in clients:
                    ws.abort()


SECRET = "s3cret-pass-for-herald"
WRONG = "not-the-pass-word"


class RedisAuthTest(HubTestCase):
    def assert_secret_not_logged(self, hub, *secrets):
        text = hub.log_text()
        for s in secrets:
            self.assertNotIn(s, text, f"{hub.instance_id} logged a Redis password")

    def test_right_password_works(self):
        ch = unique_channel("auth")
        with RedisServer(password=SECRET) as redis:
            # one hub also selects a database: AUTH and SELECT before SUBSCRIBE
            a = Hub(redis_url=redis.url(), redis_channel="herald-auth")
            b = Hub(redis_url=redis.url(db=3), redis_channel="herald-auth")
            with a, b:
                wait_ready([a, b])
                ws = WS.open(b, channels=[ch])
                try:
                    with Publisher(a) as pub:
                        sent = pub.publish_ok(ch, {"secret": "no"})
                    self.assertEqual(ws.recv_event(T(5))["id"], sent)
                finally:
                    ws.abort()
                self.assert_secret_not_logged(a, SECRET)
                self.assert_secret_not_logged(b, SECRET)

    def test_acl_user_and_password_work(self):
        ch = unique_channel("acl")
        acl = ["--user", "default", "off", "--user", "herald", "on", ">" + SECRET, "~*", "&*",
               "+@all"]
        with RedisServer(password=SECRET, user="herald", extra_args=acl) as redis:
            good = Hub(redis_url=redis.url(), redis_channel="herald-acl")
            bad = Hub(redis_url=redis.url(password=WRONG), redis_channel="herald-acl")
            with good, bad:
                wait_ready([good])
                ws = WS.open(good, channels=[ch])
                try:
                    with Publisher(good) as pub:
                        sent = pub.publish_ok(ch, 1)
                    self.assertEqual(ws.recv_event(T(5))["id"], sent)
                finally:
                    ws.abort()
                self.assertEqual(ready_status(bad), 503)
                self.assertTrue(log_lines(bad, "WRONGPASS", level="error"), bad.log_tail())
                self.assert_secret_not_logged(good, SECRET)
                self.assert_secret_not_logged(bad, WRONG)

    def test_wrong_password_logs_clearly_stays_unready_and_does_not_crash(self):
        with RedisServer(password=SECRET) as redis:
            wrong = Hub(redis_url=redis.url(password=WRONG), redis_channel="herald-auth")
            none = Hub(redis_url=redis.url(password=""), redis_channel="herald-auth")
            with wrong, none:
                # it keeps trying (backoff) and never becomes ready
                deadline = time.monotonic() + 2.5
                while time.monotonic() < deadline:
                    self.assertEqual(ready_status(wrong), 503)
                    self.assertEqual(ready_status(none), 503)
                    time.sleep(0.1)
                for hub in (wrong, none):
                    status, _, body = publish(hub, {"channel": "x", "data": 1})
                    self.assertEqual(status, 503, body)
                    self.assertEqual(body.get("error"), "unavailable")
                    self.assertTrue(hub.running(), f"{hub.instance_id} exited")
                # a clear line naming the cause
                refused = log_lines(wrong, "refused the login", level="error")
                self.assertTrue(refused, wrong.log_tail())
                self.assertTrue(any("WRONGPASS" in l for l in refused), refused)
                noauth = log_lines(none, "NOAUTH", level="error")
                self.assertTrue(noauth, none.log_tail())
                self.assert_secret_not_logged(wrong, WRONG, SECRET)
                print(f"\n[auth] wrong password: {refused[0].split(None, 3)[3]!r}; "
                      f"no password: {noauth[0].split(None, 3)[3]!r}", flush=True)
                # once, not once per retry (SPEC: "logs each step once"); a second line
                # for the first retry is tolerated
                for hub, lines in ((wrong, refused), (none, noauth)):
                    retries = metrics(hub).get("herald_redis_reconnects_total")
                    self.assertGreaterEqual(retries, 6, f"{hub.instance_id} retries")
                    per_link = Counter(l.split(None, 3)[3].split()[0] for l in lines)
                    with self.subTest(hub=hub.instance_id):
                        for link, n in per_link.items():
                            self.assertLessEqual(
                                n, 2, f"{hub.instance_id}: {n} error lines from the {link} link "
                                      f"in 2.5 s, one per retry: {lines}")

class RedisHostNameTest(RedisTestCase):
    """hiredis resolves a host name with a blocking getaddrinfo on the control thread at every
    reconnect: the hub resolves it off the loop (evdns, --resolv-conf) within the connect
    deadline, so a dead resolver never freezes the API, $stats or the watchdog."""

    def test_a_dead_resolver_does_not_freeze_the_api(self):
        with FakeDNS(silent=True) as dns:
            url = f"redis://redis.herald.test:{self.redis.port}"
            with Hub(redis_url=url, resolv_conf=dns.resolv_conf()) as hub:
                wait_until(lambda: dns.queries, T(5), "the hub to ask the resolver")
                slowest = 0.0
                deadline = time.monotonic() + T(4)
                while time.monotonic() < deadline:  # several lookups time out meanwhile
                    started = time.monotonic()
                    self.assertEqual(ready_status(hub, timeout=T(2)), 503)
                    slowest = max(slowest, time.monotonic() - started)
                    time.sleep(0.05)
                self.assertLess(slowest, T(0.5), "the API stalled behind a name lookup")
                self.assertGreaterEqual(len(dns.queries), 2, "no retry after a timed-out lookup")
                self.assertTrue(log_lines(hub, "cannot resolve redis.herald.test"),
                                "the failed lookup is logged")

    def test_a_host_name_is_resolved_and_used(self):
        ch = unique_channel("dns")
        with FakeDNS(answer="127.0.0.1") as dns:
            url = f"redis://redis.herald.test:{self.redis.port}"
            with Hub(redis_url=url, resolv_conf=dns.resolv_conf()) as hub:
                wait_ready([hub], T(10))
                self.assertIn("redis.herald.test", [q.lower() for q in dns.queries])
                ws = WS.open(hub, channels=[ch])
                try:
                    event_id = publish_in_turn([hub], ch, [1])[0]
                    self.assertEqual(ws.recv_event(T(5))["id"], event_id)
                finally:
                    ws.abort()

    def test_localhost_comes_from_the_hosts_file(self):
        with FakeDNS(silent=True) as dns:
            url = f"redis://localhost:{self.redis.port}"
            with Hub(redis_url=url, resolv_conf=dns.resolv_conf()) as hub:
                wait_ready([hub], T(10))
        self.assertEqual(dns.queries, [], "localhost went to the DNS server")


if __name__ == "__main__":
    unittest.main()
