"""test_limits.py -- the admission and publish limits, each from both sides: the client under
the limit is served, the one over it gets exactly the refusal SPEC.md and README.md name,
and the clients already on the hub keep receiving.

  --max-connections N        the (N+1)th upgrade: HTTP 503 {"error":"unavailable",...} with
                             Retry-After; after one closes a new one is accepted
  --max-connections-per-ip N HTTP 429 {"error":"rate_limited",...} per client address, the
                             address taken from X-Forwarded-For only when the peer is one of
                             --trusted-proxies (IPv4-mapped IPv6 entries match IPv4 peers)
  --api-key, --api-keys-file POST /publish without or with a wrong key: 401 unauthorized
                             with WWW-Authenticate; the right key: 202
  --publish-rate N           429 rate_limited with Retry-After >= 1, per API key or, without
                             keys, per client address; accepted again after Retry-After

Other clients come from 127.0.0.2 and 127.0.0.3 (the socket bound there: all of 127.0.0.0/8
is loopback on Linux). X-Forwarded-For carries documentation addresses (RFC 5737); they are
only header text, nothing is sent to them. --max-subscriptions is tested in test_pubsub.py.
"""

import json
import time
import unittest

from harness import (HubTestCase, T, metrics, publish, publish_ok, stats, unique_channel,
                     wait_until)
from authlib import (Bystander, http_from, open_ws, publish_as, refused_upgrade,
                     simultaneous_upgrades, write_file)

CLIENT_A = "203.0.113.7"
CLIENT_B = "203.0.113.8"
CLIENT_C = "198.51.100.23"


def retry_after(test, headers):
    value = headers.get("Retry-After") or headers.get("retry-after")
    test.assertIsNotNone(value, f"no Retry-After header in {dict(headers)}")
    test.assertRegex(value, r"^\d+$", "Retry-After is not a number of seconds")
    test.assertGreaterEqual(int(value), 1)
    return int(value)


class UpgradeRefusals:
    """Assertions on an upgrade refused with an HTTP status (mixed into the tests)."""

    def assertRefused(self, err, status, code):
        self.assertEqual(err.status, status, f"upgrade answered {err.status} {err.body!r}")
        self.assertTrue(err.headers.get("content-type", "").startswith("application/json"),
                        err.headers)
        self.assertIsInstance(err.body, dict, f"the refusal's body is not JSON: {err.body!r}")
        self.assertEqual(err.body.get("error"), code, err.body)
        self.assertIsInstance(err.body.get("message"), str, err.body)

    def assertEveryoneReceives(self, clients, channel, data):
        publish_ok(self.hub, channel, data)
        for i, ws in enumerate(clients):
            msg = ws.recv_json(T(5))
            self.assertEqual((msg.get("type"), msg.get("data")), ("event", data),
                             f"client {i} got {msg!r}")

    def wait_connections(self, n):
        wait_until(lambda: stats(self.hub).get("connections") == n, T(5),
                   f"the hub to count {n} connections")

    def check_simultaneous(self, limit, status, rounds=3, n=30):
        """n upgrades at once from 127.0.0.1, on a hub with no connection: exactly limit
        are accepted, whichever delivery plane each lands on; the rest get status."""
        for r in range(rounds):
            self.wait_connections(0)
            statuses = simultaneous_upgrades(self.hub, n)
            self.assertEqual(statuses.count(101), limit, f"round {r}: {statuses}")
            self.assertEqual(statuses.count(status), n - limit, f"round {r}: {statuses}")
        self.wait_connections(0)


class MaxConnectionsTest(UpgradeRefusals, HubTestCase):
    hub_options = {"max_connections": 3}

    def test_fourth_upgrade_gets_503_and_three_keep_receiving(self):
        ch = unique_channel("cap")
        clients = [open_ws(self.hub, [ch]) for _ in range(3)]
        try:
            self.wait_connections(3)
            for attempt in range(2):
                err = refused_upgrade(self.hub, f"/ws?channels={ch}")
                self.assertRefused(err, 503, "unavailable")
                retry_after(self, err.headers)
            # a refusal from another address is the same: the cap is per instance
            err = refused_upgrade(self.hub, "/ws", source="127.0.0.2")
            self.assertRefused(err, 503, "unavailable")
            self.assertEveryoneReceives(clients, ch, "three-served")
            m = metrics(self.hub)
            self.assertGreaterEqual(m.get("herald_connections_refused_total", 0,
                                          reason="capacity"), 3)

            # one leaves: a new one is accepted, and the cap holds again after it
            self.assertEqual(clients.pop(0).close(), 1000)
            self.wait_connections(2)
            clients.append(open_ws(self.hub, [ch]))
            self.assertRefused(refused_upgrade(self.hub, "/ws"), 503, "unavailable")
            self.assertEveryoneReceives(clients, ch, "after-one-left")
        finally:
            for ws in clients:
                ws.close()


    def test_simultaneous_upgrades_get_exactly_three(self):
        self.check_simultaneous(3, 503)


class MaxConnectionsPerIpTest(UpgradeRefusals, HubTestCase):
    hub_options = {"max_connections_per_ip": 2}

    def test_simultaneous_upgrades_from_one_address_get_exactly_two(self):
        self.check_simultaneous(2, 429)

    def test_third_from_one_address_gets_429_others_are_served(self):
        ch = unique_channel("perip")
        clients = [open_ws(self.hub, [ch]), open_ws(self.hub, [ch])]
        try:
            err = refused_upgrade(self.hub, f"/ws?channels={ch}")
            self.assertRefused(err, 429, "rate_limited")
            # another address has its own count
            clients.append(open_ws(self.hub, [ch], source="127.0.0.2"))
            clients.append(open_ws(self.hub, [ch], source="127.0.0.2"))
            self.assertRefused(refused_upgrade(self.hub, "/ws", source="127.0.0.2"), 429,
                               "rate_limited")
            self.assertRefused(refused_upgrade(self.hub, "/ws"), 429, "rate_limited")
            self.assertEveryoneReceives(clients, ch, "four-served")
            self.assertGreaterEqual(metrics(self.hub).get("herald_connections_refused_total",
                                                          0, reason="per_ip"), 3)
            # one from 127.0.0.1 leaves: 127.0.0.1 may connect once more
            self.assertEqual(clients.pop(0).close(), 1000)
            self.wait_connections(3)
            clients.append(open_ws(self.hub, [ch]))
            self.assertRefused(refused_upgrade(self.hub, "/ws"), 429, "rate_limited")
            self.assertEveryoneReceives(clients, ch, "after-one-left")
        finally:
            for ws in clients:
                ws.close()

    def test_forwarded_for_is_ignored_without_trusted_proxies(self):
        ch = unique_channel("xff-ignored")
        xff = lambda addr: {"X-Forwarded-For": addr}
        clients = [open_ws(self.hub, [ch], headers=xff(CLIENT_A), source="127.0.0.3"),
                   open_ws(self.hub, [ch], headers=xff(CLIENT_B), source="127.0.0.3")]
        try:
            # all three are 127.0.0.3 to the hub, whatever they claim
            for claimed in (CLIENT_C, CLIENT_A):
                self.assertRefused(refused_upgrade(self.hub, "/ws", headers=xff(claimed),
                                                   source="127.0.0.3"), 429, "rate_limited")
            self.assertEveryoneReceives(clients, ch, "xff-ignored")
        finally:
            for ws in clients:
                ws.close()


class TrustedProxyTests(UpgradeRefusals):
    """With the peer (127.0.0.1) a trusted proxy, X-Forwarded-For names the client."""

    def check_forwarded_clients_are_counted_apart(self):
        ch = unique_channel("xff")
        xff = lambda addr: {"X-Forwarded-For": addr}
        clients = [open_ws(self.hub, [ch], headers=xff(CLIENT_A)),
                   open_ws(self.hub, [ch], headers=xff(CLIENT_A))]
        try:
            self.assertRefused(refused_upgrade(self.hub, "/ws", headers=xff(CLIENT_A)), 429,
                               "rate_limited")
            # another forwarded client, the proxy itself, and a chain whose last untrusted
            # hop is CLIENT_A (refused) or CLIENT_B (accepted)
            clients.append(open_ws(self.hub, [ch], headers=xff(CLIENT_B)))
            clients.append(open_ws(self.hub, [ch]))
            self.assertRefused(refused_upgrade(self.hub, "/ws",
                                               headers=xff(f"{CLIENT_C}, {CLIENT_A}")),
                               429, "rate_limited")
            clients.append(open_ws(self.hub, [ch], headers=xff(f"{CLIENT_A}, {CLIENT_B}")))
            self.assertRefused(refused_upgrade(self.hub, "/ws", headers=xff(CLIENT_B)), 429,
                               "rate_limited")
            # a peer that is not a trusted proxy is counted as itself, whatever it claims
            clients.append(open_ws(self.hub, [ch], headers=xff(CLIENT_A), source="127.0.0.2"))
            self.assertEveryoneReceives(clients, ch, "forwarded")
            # CLIENT_A leaves once: it may come back once
            self.assertEqual(clients.pop(0).close(), 1000)
            self.wait_connections(len(clients))
            clients.append(open_ws(self.hub, [ch], headers=xff(CLIENT_A)))
            self.assertRefused(refused_upgrade(self.hub, "/ws", headers=xff(CLIENT_A)), 429,
                               "rate_limited")
            self.assertEveryoneReceives(clients, ch, "forwarded-again")
        finally:
            for ws in clients:
                ws.close()


class TrustedProxyTest(TrustedProxyTests, HubTestCase):
    hub_options = {"max_connections_per_ip": 2, "trusted_proxies": "127.0.0.1"}

    def test_forwarded_clients_are_counted_apart(self):
        self.check_forwarded_clients_are_counted_apart()


class TrustedProxyMappedTest(TrustedProxyTests, HubTestCase):
    """--trusted-proxies ::ffff:127.0.0.1 (IPv4-mapped) must trust the IPv4 peer 127.0.0.1."""

    hub_options = {"max_connections_per_ip": 2, "trusted_proxies": "::ffff:127.0.0.1"}

    def test_ipv4_mapped_entry_trusts_ipv4_peer(self):
        self.check_forwarded_clients_are_counted_apart()


class TrustedProxyCidrTest(TrustedProxyTests, HubTestCase):
    hub_options = {"max_connections_per_ip": 2, "trusted_proxies": "192.0.2.0/24,127.0.0.0/31"}

    def test_cidr_entry_trusts_peer_inside(self):
        self.check_forwarded_clients_are_counted_apart()


# --------------------------------------------------------------------------------------
# The HTTP API

KEY = "k-single-0123456789abcdef"
KEY_1 = "k-first-0123456789abcdef"
KEY_2 = "k-second-0123456789abcdef"
KEYS_FILE = write_file("test_limits.keys",
                       f"# publishers of test_limits\n\n{KEY_1}\n# the second one\n\n"
                       f"{KEY_2}\r\n\n")


class ApiKeyTests:
    keys = ()

    def assertUnauthorized(self, status, headers, body):
        self.assertEqual(status, 401, body)
        self.assertEqual(body.get("error") if isinstance(body, dict) else body,
                         "unauthorized")
        self.assertIsInstance(body.get("message"), str)
        self.assertTrue((headers.get("WWW-Authenticate") or "").startswith("Bearer"),
                        f"401 without WWW-Authenticate: Bearer: {dict(headers)}")

    def check_keys(self):
        with Bystander(self.hub) as b:
            ch = b.channel
            refusals = {
                "no header": {},
                "wrong key": {"Authorization": "Bearer k-wrong-0123456789abcdef"},
                "key prefix": {"Authorization": "Bearer " + self.keys[0][:-1]},
                "key plus a byte": {"Authorization": "Bearer " + self.keys[0] + "x"},
                "not Bearer": {"Authorization": "Basic " + self.keys[0]},
                "bare key": {"Authorization": self.keys[0]},
                "empty Bearer": {"Authorization": "Bearer "},
                "a comment line": {"Authorization": "Bearer # publishers of test_limits"},
            }
            for what, headers in refusals.items():
                with self.subTest(what):
                    status, rh, body = publish(self.hub, {"channel": ch, "data": what},
                                               headers=headers)
                    self.assertUnauthorized(status, rh, body)
            for i, key in enumerate(self.keys):
                with self.subTest(key=i):
                    status, _, body = publish_as(self.hub, ch, f"key-{i}", key=key)
                    self.assertEqual(status, 202, body)
                    self.assertIsInstance(body.get("id"), str)
                    # the subscriber gets exactly the accepted events: none of the refused
                    msg = b.ws.recv_json(T(5))
                    self.assertEqual((msg.get("data"), msg.get("id")), (f"key-{i}", body["id"]))
            b.check(publish_key=self.keys[-1])
        m = metrics(self.hub)
        self.assertGreaterEqual(m.get("herald_publish_errors_total", 0), len(refusals))

    def check_other_routes_need_no_key(self):
        for path in ("/health", "/ready", "/stats", "/metrics"):
            status, _, _ = http_from(self.hub.api_port, "GET", path)
            self.assertEqual(status, 200, path)


class ApiKeyTest(ApiKeyTests, HubTestCase):
    hub_options = {"api_key": KEY}
    keys = (KEY,)

    def test_missing_or_wrong_key_401_right_key_202(self):
        self.check_keys()

    def test_other_routes_need_no_key(self):
        self.check_other_routes_need_no_key()


class ApiKeysFileTest(ApiKeyTests, HubTestCase):
    hub_options = {"api_keys_file": KEYS_FILE}
    keys = (KEY_1, KEY_2)

    def test_both_keys_of_the_file_work_comments_and_blank_lines_are_not_keys(self):
        self.check_keys()
        for line in ("", "#", "# the second one"):
            status, headers, body = publish_as(self.hub, unique_channel("c"), 1, key=line)
            self.assertUnauthorized(status, headers, body)


class ApiKeyAndFileTest(ApiKeyTests, HubTestCase):
    hub_options = {"api_key": KEY, "api_keys_file": KEYS_FILE}
    keys = (KEY, KEY_1, KEY_2)

    def test_flag_and_file_keys_all_work(self):
        self.check_keys()


RATE = 3


class PublishRateTests:
    def burst(self, n, key=None, source=None, headers=None, channel=None):
        """n publishes as fast as one client can send them: ([(status, headers, body)],
        seconds from the first request to the last answer)."""
        ch = channel or self.channel
        started = time.monotonic()
        answers = [publish_as(self.hub, ch, i, key=key, source=source, headers=headers)
                   for i in range(n)]
        return answers, time.monotonic() - started

    def check_burst(self, answers, seconds, what):
        """The first RATE are accepted, then 429s; a refill during the burst may let a few
        more through, never more than RATE tokens a second. Returns the accepted ids."""
        statuses = [a[0] for a in answers]
        self.assertEqual(statuses[:RATE], [202] * RATE, f"{what}: {answers[:RATE]}")
        limited = [a for a in answers if a[0] == 429]
        accepted = [a for a in answers if a[0] == 202]
        self.assertEqual(len(limited) + len(accepted), len(answers), f"{what}: {statuses}")
        self.assertGreaterEqual(len(limited), 1, f"{what}: nothing refused in {seconds:.2f}s")
        self.assertLessEqual(len(accepted), RATE + int(RATE * seconds) + 1,
                             f"{what}: the limit let {len(accepted)} through in {seconds:.2f}s")
        for status, headers, body in limited:
            self.assertEqual(body.get("error"), "rate_limited", body)
            self.assertIsInstance(body.get("message"), str, body)
            retry_after(self, headers)
        return [a[2]["id"] for a in accepted]

    def expect_delivered(self, ids):
        """The subscriber gets exactly the accepted events, in order."""
        got = [self.sub.recv_event(T(5)).get("id") for _ in ids]
        self.assertEqual(got, ids)
        self.assertEqual(self.sub.request({"type": "ping", "ref": "none-more"}),
                         {"type": "pong", "ref": "none-more"}, "a refused event was delivered")

    def wait_retry_after(self, answers):
        wait = max(retry_after(self, a[1]) for a in answers if a[0] == 429)
        self.assertLessEqual(wait, 2, "Retry-After longer than a bucket of 1 s needs")
        time.sleep(wait)
        return wait

    def setUp(self):
        self.channel = unique_channel("rate")
        self.sub = open_ws(self.hub, [self.channel])

    def tearDown(self):
        self.sub.close()


class PublishRatePerKeyTest(PublishRateTests, HubTestCase):
    hub_options = {"publish_rate": RATE, "api_keys_file": KEYS_FILE}

    def test_each_key_has_its_own_budget_and_recovers_after_retry_after(self):
        answers, secs = self.burst(6, key=KEY_1)
        ids = self.check_burst(answers, secs, "key 1")
        # the second key is not touched by the first one's burst, from the same address
        answers2, secs2 = self.burst(6, key=KEY_2)
        ids += self.check_burst(answers2, secs2, "key 2")
        # nor is the budget per address: another address with key 1 is still limited
        status, headers, body = publish_as(self.hub, self.channel, "other-ip", key=KEY_1,
                                           source="127.0.0.2")
        if status == 429:
            retry_after(self, headers)
        else:
            self.assertEqual(status, 202, body)  # only if key 1's bucket refilled meanwhile
            ids.append(body["id"])
        self.expect_delivered(ids)
        self.wait_retry_after(answers)
        status, _, body = publish_as(self.hub, self.channel, "after-wait", key=KEY_1)
        self.assertEqual(status, 202, f"still refused after Retry-After: {body}")
        self.expect_delivered([body["id"]])
        self.assertGreaterEqual(metrics(self.hub).get("herald_publish_rate_limited_total", 0), 2)

    def test_wrong_key_is_401_not_429(self):
        self.burst(RATE + 2, key=KEY_2)
        status, _, body = publish_as(self.hub, self.channel, 1, key="k-wrong-0123456789abcdef")
        self.assertEqual((status, body.get("error")), (401, "unauthorized"))


class PublishRatePerIpTest(PublishRateTests, HubTestCase):
    hub_options = {"publish_rate": RATE}

    def test_each_address_has_its_own_budget_and_recovers_after_retry_after(self):
        answers, secs = self.burst(6, source="127.0.0.1")
        ids = self.check_burst(answers, secs, "127.0.0.1")
        answers2, secs2 = self.burst(6, source="127.0.0.2")
        ids += self.check_burst(answers2, secs2, "127.0.0.2")
        # without trusted proxies X-Forwarded-For does not make a new budget
        status, headers, body = publish_as(self.hub, self.channel, "xff", source="127.0.0.2",
                                           headers={"X-Forwarded-For": CLIENT_A})
        if status == 202:
            ids.append(body["id"])
        else:
            self.assertEqual(status, 429, body)
        self.expect_delivered(ids)
        self.wait_retry_after(answers)
        status, _, body = publish_as(self.hub, self.channel, "after-wait", source="127.0.0.1")
        self.assertEqual(status, 202, f"still refused after Retry-After: {body}")
        self.expect_delivered([body["id"]])

    def test_batch_counts_as_one_publish(self):
        batch = json.dumps([{"channel": self.channel, "data": i} for i in range(5)]).encode()
        started = time.monotonic()
        answers = [http_from(self.hub.api_port, "POST", "/publish", body=batch,
                             headers={"Content-Type": "application/json"}, source="127.0.0.3")
                   for _ in range(RATE + 1)]
        seconds = time.monotonic() - started
        statuses = [a[0] for a in answers]
        self.assertEqual(statuses[:RATE], [202] * RATE,
                         f"a batch of 5 counted as more than one publish: {answers}")
        if seconds < 1 / RATE:  # no token could have come back during the burst
            self.assertEqual(statuses[RATE], 429, answers[RATE])
        ids = [i for status, _, body in answers if status == 202 for i in body["ids"]]
        self.assertEqual(len(ids), 5 * statuses.count(202))
        self.expect_delivered(ids)


class PublishRateTrustedProxyTest(PublishRateTests, HubTestCase):
    hub_options = {"publish_rate": RATE, "trusted_proxies": "127.0.0.1"}

    def test_forwarded_clients_have_their_own_budgets(self):
        xa, xb = {"X-Forwarded-For": CLIENT_A}, {"X-Forwarded-For": CLIENT_B}
        answers, secs = self.burst(6, headers=xa)
        ids = self.check_burst(answers, secs, CLIENT_A)
        answers2, secs2 = self.burst(6, headers=xb)
        ids += self.check_burst(answers2, secs2, CLIENT_B)
        self.expect_delivered(ids)


if __name__ == "__main__":
    unittest.main()
