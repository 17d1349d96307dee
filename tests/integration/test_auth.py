"""test_auth.py -- connection tokens (--jwt-secret-file) and Origin checks on /ws.

SPEC.md, Auth: an absent, expired or badly signed token completes the handshake and is
closed at once with 1008 `unauthorized`, before any welcome; a subscription outside the
token's `channels` (a trailing `*` matches any suffix) gets an `error` `forbidden`; a token
that expires while connected closes with 1008 `token expired`. Tokens come as `?token=` or
`Authorization: Bearer`. --allowed-origins: another Origin is closed with 1008 (reason
"origin not allowed"), an allowed one or none at all is served. Each test also shows that a
client already connected on the same hub keeps receiving."""

import json
import os
import time
import unittest

from harness import (positionless, HubTestCase, ConnectionClosed, T, metrics, publish_ok, unique_channel,
                     wait_until)
from authlib import (Bystander, b64url, claims_of, connect, encode_jwt, expect_policy_close, mint,
                     new_secret, open_ws, token_path)

SECRET_FILE, SECRET = new_secret("test_auth.secret")
OTHER_FILE, OTHER_SECRET = new_secret("test_auth.other.secret")


class TokenTest(HubTestCase):
    hub_options = {"jwt_secret_file": SECRET_FILE, "client_rate": 1000, "client_burst": 1000}

    def setUp(self):
        self.good = mint(SECRET_FILE, ["*"], sub="bystander")
        self.bystander = Bystander(self.hub, token=self.good)

    def tearDown(self):
        self.bystander.close()

    def refused(self, path, headers=None, reason="unauthorized"):
        """Connects with path/headers: the handshake must complete (101) and the hub must
        close 1008 with reason before anything else; the bystander keeps receiving."""
        ws = connect(self.hub, path, headers=headers)
        expect_policy_close(self, ws, reason)
        self.bystander.check()

    # -- accepted ------------------------------------------------------------------------
    def test_valid_token_in_query_is_served(self):
        ch = unique_channel("orders")
        tok = mint(SECRET_FILE, [ch], sub="alice", ttl=60)
        self.assertEqual(claims_of(tok)["sub"], "alice")
        with open_ws(self.hub, [ch], token=tok) as ws:
            self.assertEqual(ws.welcome.get("type"), "welcome")
            publish_ok(self.hub, ch, {"n": 1})
            msg = ws.recv_json()
            self.assertEqual((msg.get("type"), msg.get("channel"), msg.get("data")),
                             ("event", ch, {"n": 1}))
            self.assertEqual(ws.request({"type": "ping", "ref": 1}), {"type": "pong", "ref": 1})
        self.bystander.check()

    def test_valid_token_as_authorization_bearer_is_served(self):
        ch = unique_channel("bearer")
        tok = mint(SECRET_FILE, [ch])
        with open_ws(self.hub, [ch], bearer=tok) as ws:
            publish_ok(self.hub, ch, "via-header")
            self.assertEqual(ws.recv_json().get("data"), "via-header")
            # a subscribe frame is checked against the same grant
            self.assertEqual(positionless(ws.request({"type": "subscribe", "channel": ch,
                                                       "ref": "again"})),
                             {"type": "subscribed", "channel": ch, "ref": "again"})
        self.bystander.check()

    # -- refused at the handshake: 1008 unauthorized before any welcome --------------------
    def test_missing_token_is_closed_1008_unauthorized(self):
        ch = unique_channel("nobody")
        self.refused(token_path(None, [ch]))
        self.refused("/ws")
        # an Authorization header that is not a Bearer token is no token either
        self.refused(token_path(None, [ch]), headers={"Authorization": "Basic " + self.good})

    def test_empty_or_garbage_token_is_closed_1008_unauthorized(self):
        for bad in ("", "abc", "a.b", "a.b.c", "a.b.c.d", self.good + "x", self.good[:-2]):
            with self.subTest(token=bad):
                self.refused(token_path(bad))
        self.refused("/ws", headers={"Authorization": "Bearer not-a-token"})

    def test_expired_token_is_closed_1008_unauthorized(self):
        ch = unique_channel("late")
        tok = mint(SECRET_FILE, [ch], ttl=-10)
        self.assertLess(claims_of(tok)["exp"], time.time())
        self.refused(token_path(tok, [ch]))
        self.refused(token_path(None, [ch]), headers={"Authorization": "Bearer " + tok})
        # expiring this very second counts as expired too (exp <= now)
        self.refused(token_path(mint(SECRET_FILE, [ch], ttl=0), [ch]))

    def test_token_signed_with_another_secret_is_closed_1008_unauthorized(self):
        ch = unique_channel("forged")
        tok = mint(OTHER_FILE, [ch])  # a well-formed HS256 token, but not from our secret
        self.refused(token_path(tok, [ch]))
        self.refused(token_path(None, [ch]), headers={"Authorization": "Bearer " + tok})

    def test_tampered_claims_are_closed_1008_unauthorized(self):
        ch = unique_channel("tamper")
        tok = mint(SECRET_FILE, [ch], ttl=60)
        head, _, sig = tok.split(".")
        claims = claims_of(tok)
        claims["channels"] = ["*"]  # widen the grant, keep the old signature
        forged = f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"
        self.refused(token_path(forged, [ch]))
        # a signature of the right length but wrong bytes
        self.refused(token_path(encode_jwt({"alg": "HS256", "typ": "JWT"}, claims,
                                           signature=os.urandom(32)), [ch]))

    def test_alg_none_is_closed_1008_unauthorized(self):
        ch = unique_channel("none")
        claims = {"sub": "mallory", "exp": int(time.time()) + 600, "channels": [ch]}
        cases = {
            "alg none, empty signature": encode_jwt({"alg": "none", "typ": "JWT"}, claims,
                                                    signature=b""),
            "alg None": encode_jwt({"alg": "None"}, claims, signature=b""),
            "alg none, HS256 signature": encode_jwt({"alg": "none"}, claims, secret=SECRET),
            "alg HS512": encode_jwt({"alg": "HS512"}, claims, secret=SECRET),
            "no alg": encode_jwt({"typ": "JWT"}, claims, secret=SECRET),
        }
        for what, tok in cases.items():
            with self.subTest(what):
                self.refused(token_path(tok, [ch]))
        # the same claims, properly signed, are accepted: the refusals were about alg
        with open_ws(self.hub, [ch], token=encode_jwt({"alg": "HS256", "typ": "JWT"}, claims,
                                                       secret=SECRET)) as ws:
            self.assertEqual(ws.request({"type": "ping"}), {"type": "pong"})

    def test_claims_without_exp_or_channels_are_closed_1008_unauthorized(self):
        ch = unique_channel("claims")
        later = int(time.time()) + 600
        for what, claims in {"no exp": {"channels": [ch]},
                             "exp not a number": {"exp": str(later), "channels": [ch]},
                             "no channels": {"exp": later},
                             "channels not a list": {"exp": later, "channels": ch}}.items():
            with self.subTest(what):
                tok = encode_jwt({"alg": "HS256", "typ": "JWT"}, claims, secret=SECRET)
                self.refused(token_path(tok, [ch]))

    def test_refusals_are_counted_and_leave_no_connection(self):
        def auth_closes():
            return metrics(self.hub).get("herald_disconnects_total", 0, reason="auth")

        def connections():
            return metrics(self.hub).get("herald_connections")

        before, open_before = auth_closes(), connections()
        for _ in range(3):
            self.refused("/ws")
        wait_until(lambda: auth_closes() - before >= 3, T(5), "3 more auth disconnects counted")
        wait_until(lambda: connections() == open_before, T(5),
                   f"herald_connections back to {open_before}")

    # -- the grant -------------------------------------------------------------------------
    def test_subscribe_outside_the_grant_is_forbidden_and_connection_stays(self):
        granted, other = unique_channel("mine"), unique_channel("theirs")
        tok = mint(SECRET_FILE, [granted])
        with open_ws(self.hub, [granted], token=tok) as ws:
            err = ws.request({"type": "subscribe", "channel": other, "ref": "x"})
            self.assertEqual((err.get("type"), err.get("code"), err.get("ref")),
                             ("error", "forbidden", "x"), err)
            self.assertIsInstance(err.get("message"), str)
            # nothing from the refused channel arrives; the granted one still does
            publish_ok(self.hub, other, "not-yours")
            publish_ok(self.hub, granted, "yours")
            msg = ws.recv_json()
            self.assertEqual((msg.get("channel"), msg.get("data")), (granted, "yours"))
        self.bystander.check()

    def test_channels_query_outside_the_grant_is_forbidden_and_connection_stays(self):
        granted, other = unique_channel("q-mine"), unique_channel("q-theirs")
        tok = mint(SECRET_FILE, [granted])
        with connect(self.hub, token_path(tok, [other, granted])) as ws:
            self.assertEqual(ws.recv_json().get("type"), "welcome")
            err = ws.recv_json()
            self.assertEqual((err.get("type"), err.get("code")), ("error", "forbidden"), err)
            self.assertEqual(positionless(ws.recv_json()), {"type": "subscribed", "channel": granted})
            publish_ok(self.hub, other, "not-yours")
            publish_ok(self.hub, granted, "yours")
            self.assertEqual(ws.recv_json().get("data"), "yours")

    def test_trailing_star_grants_any_suffix(self):
        base = unique_channel("team").replace("-", "_")
        tok = mint(SECRET_FILE, [base + ".*", "exact"])
        allowed = [base + ".a", base + ".b.c", base + ".", base + ".x-1:2", "exact"]
        refused = [base, base + "x", base + "_a", "x" + base + ".a", "exact.1", "exac"]
        with open_ws(self.hub, token=tok) as ws:
            for i, ch in enumerate(allowed):
                with self.subTest(allowed=ch):
                    self.assertEqual(
                        positionless(ws.request({"type": "subscribe", "channel": ch, "ref": i})),
                        {"type": "subscribed", "channel": ch, "ref": i})
            for i, ch in enumerate(refused):
                with self.subTest(refused=ch):
                    err = ws.request({"type": "subscribe", "channel": ch, "ref": i})
                    self.assertEqual((err.get("code"), err.get("ref")), ("forbidden", i), err)
            publish_ok(self.hub, base + ".b.c", "deep")
            self.assertEqual(ws.recv_json().get("data"), "deep")

    def test_star_alone_grants_every_channel(self):
        tok = mint(SECRET_FILE, ["*"])
        with open_ws(self.hub, [unique_channel("any"), "$stats"], token=tok) as ws:
            self.assertEqual(ws.request({"type": "ping", "ref": 0}), {"type": "pong", "ref": 0})

    # -- expiry while connected ------------------------------------------------------------
    def test_token_expiring_mid_connection_closes_1008_token_expired(self):
        ch = unique_channel("short")
        tok = mint(SECRET_FILE, [ch], ttl=2)
        exp = claims_of(tok)["exp"]
        with open_ws(self.hub, [ch], token=tok) as ws:
            # served until then
            publish_ok(self.hub, ch, "before-expiry")
            self.assertEqual(ws.recv_json().get("data"), "before-expiry")
            try:
                msg = ws.recv_json(T(6))
                self.fail(f"expected the close, got {msg!r}")
            except ConnectionClosed as c:
                closed_at = time.time()
                self.assertEqual((c.kind, c.code, c.reason), ("close", 1008, "token expired"))
            self.assertGreaterEqual(closed_at, exp - 0.25, "closed before the token expired")
            self.assertLessEqual(closed_at, exp + T(2), "closed long after the token expired")
        self.bystander.check()
        # and the expired token no longer opens a connection
        self.refused(token_path(tok, [ch]))


class OriginTest(HubTestCase):
    hub_options = {"allowed_origins": "http://app.example, https://admin.example:8443"}

    def setUp(self):
        self.bystander = Bystander(self.hub, headers={"Origin": "http://app.example"})

    def tearDown(self):
        self.bystander.close()

    def test_allowed_origin_is_served(self):
        for origin in ("http://app.example", "https://admin.example:8443", "HTTP://APP.example"):
            with self.subTest(origin=origin):
                ch = unique_channel("origin-ok")
                with open_ws(self.hub, [ch], headers={"Origin": origin}) as ws:
                    publish_ok(self.hub, ch, origin)
                    self.assertEqual(ws.recv_json().get("data"), origin)

    def test_no_origin_header_is_served(self):
        ch = unique_channel("no-origin")
        with open_ws(self.hub, [ch]) as ws:
            publish_ok(self.hub, ch, "no-origin")
            self.assertEqual(ws.recv_json().get("data"), "no-origin")

    def test_other_origin_is_closed_1008(self):
        ch = unique_channel("origin-bad")
        for origin in ("http://evil.example", "https://app.example", "http://app.example:80",
                       "http://app.example.evil.example", "https://admin.example", "null"):
            with self.subTest(origin=origin):
                ws = connect(self.hub, token_path(None, [ch]), headers={"Origin": origin})
                expect_policy_close(self, ws, "origin not allowed")
                self.bystander.check()
        m = metrics(self.hub)
        self.assertGreaterEqual(m.get("herald_disconnects_total", 0, reason="origin"), 6)


class OriginWithTokenTest(HubTestCase):
    """Both checks on: a refused Origin is closed even with a valid token, a good Origin
    without a token is still unauthorized."""

    hub_options = {"allowed_origins": "http://app.example", "jwt_secret_file": SECRET_FILE}

    def test_both_checks_apply(self):
        ch = unique_channel("both")
        tok = mint(SECRET_FILE, [ch])
        with Bystander(self.hub, token=mint(SECRET_FILE, ["*"]),
                       headers={"Origin": "http://app.example"}) as b:
            ws = connect(self.hub, token_path(tok, [ch]), headers={"Origin": "http://evil.example"})
            expect_policy_close(self, ws, "origin not allowed")
            ws = connect(self.hub, token_path(None, [ch]), headers={"Origin": "http://app.example"})
            expect_policy_close(self, ws, "unauthorized")
            with open_ws(self.hub, [ch], token=tok, headers={"Origin": "http://app.example"}) as ok:
                publish_ok(self.hub, ch, "both-ok")
                self.assertEqual(ok.recv_json().get("data"), "both-ok")
            b.check()


if __name__ == "__main__":
    unittest.main()
