"""test_tls.py -- --listen over TLS (--tls-cert, --tls-key; SPEC.md): wss:// and https:// with
self-signed certificates the openssl program makes here, trusted by Python's ssl module. Events
arrive whole through TLS (bursts, frames larger than a TLS record, a reader with a tiny socket
buffer), admission is what it is in plain text, plain HTTP and TLS under 1.2 are refused
cleanly, a handshake that never ends is cut, a bad pair stops start-up (exit 2, one line), and
SIGHUP gives new handshakes the new pair while open connections keep receiving (a bad new pair
is logged and the current one kept). The API stays plain HTTP."""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

from authlib import expect_policy_close, mint, new_secret, run_herald, write_file
from harness import (HERALD_SUB_BIN, HERALD_WEB_ROOT, WRAPPER, BackgroundReader,
                     ConnectionClosed, HandshakeError, Hub, HubTestCase, Proc, Publisher, T, WS,
                     get, log_dir, metrics, publish_ok, recv_many, unique_channel, wait_until)

OPENSSL = shutil.which("openssl")


def make_pair(name, cn, kind="ec"):
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, made by the
    openssl program in the log directory: (certificate path, key path)."""
    if not OPENSSL:
        raise AssertionError("the openssl program is missing (hub/deps --test installs it)")
    crt = os.path.join(log_dir(), name + ".crt")
    key = os.path.join(log_dir(), name + ".key")
    newkey = {"ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
              "rsa": ["-newkey", "rsa:2048"], "rsa1024": ["-newkey", "rsa:1024"]}[kind]
    subprocess.run([OPENSSL, "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=T(60))
    return crt, key


def sha256_of_der(der):
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(crt):
    with open(crt) as f:
        return sha256_of_der(ssl.PEM_cert_to_DER_cert(f.read()))


def not_after(crt):
    """The certificate's notAfter in Unix seconds (from the openssl program)."""
    out = subprocess.run([OPENSSL, "x509", "-noout", "-enddate", "-in", crt], check=True,
                         capture_output=True, text=True, timeout=T(10)).stdout
    return ssl.cert_time_to_seconds(out.strip().split("=", 1)[1])


def trusting(*crts):
    """A client context that trusts exactly these certificates (and checks the name)."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata="".join(open(c).read() for c in crts))
    return ctx


def tls_socket(hub, ctx, timeout=None):
    raw = socket.create_connection(("127.0.0.1", hub.port), timeout=T(5) if timeout is None
                                   else timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def presented(hub, ctx):
    """The SHA-256 of the certificate a new handshake gets."""
    with tls_socket(hub, ctx) as s:
        return sha256_of_der(s.getpeercert(binary_form=True))


def https_get(hub, ctx, path):
    conn = http.client.HTTPSConnection("127.0.0.1", hub.port, context=ctx, timeout=T(5))
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def closed_within(sock, timeout):
    """Reads until the peer ends the connection; returns the seconds it took, or None when
    it is still open after timeout."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < timeout:
        try:
            if not sock.recv(4096):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            return time.monotonic() - start
    return None


class TlsTest(HubTestCase):
    """One hub on TLS for the class, with two planes (resumption must work on either)."""

    @classmethod
    def setUpClass(cls):
        cls.crt, cls.key = make_pair("tls-main", "herald-test")
        cls.ctx = trusting(cls.crt)
        cls.hub_options = {"tls_cert": cls.crt, "tls_key": cls.key, "delivery_threads": 2,
                           "send_queue_bytes": 8 << 20}
        super().setUpClass()

    def test_wss_subscribe_publish_receive(self):
        ch = unique_channel("wss")
        with WS.open(self.hub, channels=[ch], tls=self.ctx) as ws:
            self.assertIn(ws.sock.version(), ("TLSv1.2", "TLSv1.3"))
            self.assertEqual(sha256_of_der(ws.sock.getpeercert(binary_form=True)),
                             file_fingerprint(self.crt))
            self.assertEqual(ws.welcome["type"], "welcome")
            publish_ok(self.hub, ch, {"n": 1}, event="created")
            ev = ws.recv_event(T(5))
            self.assertEqual((ev["channel"], ev["event"], ev["data"]), (ch, "created", {"n": 1}))
            other = unique_channel("wss-frame")
            ws.send_json({"type": "subscribe", "channel": other, "ref": 7})
            msg = ws.recv_until(lambda m: m.get("ref") == 7, T(5))
            self.assertEqual((msg["type"], msg["channel"]), ("subscribed", other))
            self.assertEqual(ws.request({"type": "ping", "ref": "p"}), {"type": "pong", "ref": "p"})
            self.assertEqual(ws.close(), 1000)

    def test_wss_url_and_an_untrusted_certificate(self):
        ch = unique_channel("wss-url")
        with WS.connect(f"wss://127.0.0.1:{self.hub.port}/ws?channels={ch}", tls=self.ctx) as ws:
            self.assertEqual(ws.recv_json(T(5))["type"], "welcome")
            self.assertEqual(ws.recv_json(T(5))["type"], "subscribed")
            publish_ok(self.hub, ch, "x")
            self.assertEqual(ws.recv_event(T(5))["data"], "x")
        with self.assertRaises(ssl.SSLCertVerificationError):
            WS.open(self.hub, channels=[ch], tls=ssl.create_default_context())

    def test_herald_sub_over_wss(self):
        """herald-sub (lws's client, OpenSSL's default trust store: SSL_CERT_FILE names it)."""
        ch = unique_channel("sub-wss")
        env = dict(os.environ, SSL_CERT_FILE=self.crt)
        with Proc([HERALD_SUB_BIN, "--url", f"wss://127.0.0.1:{self.hub.port}/ws", ch],
                  env=env) as sub:
            sub.wait_stderr("ready", T(10))
            publish_ok(self.hub, ch, {"over": "wss"})
            line = sub.wait_stdout_lines(1, T(5))[0]
            self.assertEqual(json.loads(line)["data"], {"over": "wss"})
        with Proc([HERALD_SUB_BIN, "--url", f"wss://127.0.0.1:{self.hub.port}/ws", ch]) as sub:
            self.assertEqual(sub.wait(T(15)), 1, "herald-sub took a certificate nobody vouches for")

    def test_https_serves_the_page_over_http_1_1(self):
        status, headers, body = https_get(self.hub, self.ctx, "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("text/html"), headers)
        with open(os.path.join(HERALD_WEB_ROOT, "index.html"), "rb") as f:
            self.assertEqual(body, f.read())
        status, _, body = https_get(self.hub, self.ctx, "/herald.js")
        self.assertEqual(status, 200)
        self.assertIn(b"class Herald", body)
        # ALPN: HTTP/2 offered, HTTP/1.1 chosen (the writer sends WebSocket bytes, not h2)
        ctx = trusting(self.crt)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with tls_socket(self.hub, ctx) as s:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")

    def test_the_api_stays_plain_http(self):
        status, _, body = get(self.hub, "/health")
        self.assertEqual((status, body), (200, {"status": "ok"}))
        status, _, _ = get(self.hub, "/ready")
        self.assertEqual(status, 200)
        m = metrics(self.hub)
        self.assertAlmostEqual(m.get("herald_tls_certificate_expiry_timestamp_seconds"),
                               not_after(self.crt), delta=1)
        # io_uring would send bytes past OpenSSL: with TLS every plane writes with lws_write
        self.assertEqual(m.get("herald_delivery_io_uring_planes"), 0)
        self.assertIn("--io-uring is off with --tls-cert", self.hub.log_text())

    def test_plain_http_on_the_tls_port_fails_cleanly(self):
        for request in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", self.hub.port), timeout=T(5)) as s:
                s.sendall(request)
                self.assertIsNotNone(closed_within(s, T(5)), "the hub kept a plain-HTTP "
                                     "connection on its TLS port open")
        with self.assertRaises((ConnectionClosed, OSError)):
            WS.connect(self.hub)  # plain ws:// to a wss:// port
        self.assertTrue(self.hub.running())
        self.assertEqual(presented(self.hub, self.ctx), file_fingerprint(self.crt))

    def test_tls_below_1_2_is_refused(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.crt)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError) as e:
            tls_socket(self.hub, ctx).close()
        # refused by the hub (its alert), not by this client for want of a protocol to offer
        self.assertIn("PROTOCOL_VERSION", str(e.exception.reason))
        ctx = trusting(self.crt)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with tls_socket(self.hub, ctx) as s:
            self.assertEqual(s.version(), "TLSv1.2")
            name = s.cipher()[0]
            self.assertTrue(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name),
                            f"TLS 1.2 without forward secrecy and AEAD: {name}")
        ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384")  # CBC only
        with self.assertRaises(ssl.SSLError):
            tls_socket(self.hub, ctx).close()

    def test_a_session_resumes_on_either_plane(self):
        """Session tickets every plane of the hub decrypts: the kernel spreads connections
        over the planes, and each of these resumes."""
        with tls_socket(self.hub, self.ctx) as s:
            s.sendall(b"GET /favicon.svg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.recv(1024)  # the tickets of TLS 1.3 come after the handshake
            session = s.session
        self.assertIsNotNone(session)
        reused = []
        for _ in range(8):
            raw = socket.create_connection(("127.0.0.1", self.hub.port), timeout=T(5))
            with self.ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as s:
                reused.append(s.session_reused)
        self.assertEqual(reused, [True] * 8)

    def test_bursts_and_large_frames_arrive_whole(self):
        """TLS writes straight from the loop (writer.c): many frames per write, frames larger
        than a TLS record, and a reader whose socket takes 4 KiB at a time, so writes stop
        half way (OpenSSL wants the same bytes again: lws keeps them) and resume."""
        ch = unique_channel("tls-burst")
        clients = [WS.open(self.hub, channels=[ch], tls=self.ctx) for _ in range(6)]
        tiny = WS.open(self.hub, channels=[ch], tls=self.ctx, rcvbuf=4096)
        reader = BackgroundReader(tiny, "small-buffer reader")
        try:
            pad = "p" * 60000
            with Publisher(self.hub) as pub:
                for i in range(40):
                    pub.publish_ok(ch, {"i": i, "pad": pad})
                for i in range(40, 1040):
                    pub.publish_ok(ch, {"i": i})
            got = recv_many(clients, count=1040, timeout=T(30))
            for n, msgs in enumerate(got.values()):
                self.assertEqual([m["data"]["i"] for m in msgs], list(range(1040)), f"client {n}")
                self.assertTrue(all(m["data"]["pad"] == pad for m in msgs[:40]))
            reader.wait_events(1040, T(30))
            self.assertEqual([m["data"]["i"] for m in reader.events()], list(range(1040)))
            reader.stop()
        finally:
            for ws in clients + [tiny]:
                ws.abort()

    def test_a_handshake_that_never_completes_is_cut(self):
        """lws's timeout (10 s) ends a TLS handshake that stalls, and then an HTTP request that
        never comes: neither holds a descriptor forever."""
        silent = socket.create_connection(("127.0.0.1", self.hub.port), timeout=T(5))
        partial = socket.create_connection(("127.0.0.1", self.hub.port), timeout=T(5))
        partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello
        idle = tls_socket(self.hub, self.ctx)  # TLS done, no HTTP request
        results = {}

        def watch(name, s):
            results[name] = closed_within(s, T(20))

        threads = [threading.Thread(target=watch, args=a)
                   for a in (("silent", silent), ("partial", partial), ("idle", idle))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(T(25))
        for s in (silent, partial, idle):
            s.close()
        for name in ("silent", "partial", "idle"):
            self.assertIsNotNone(results.get(name), f"the {name} connection is still open")
            self.assertGreater(results[name], 5, f"the {name} connection was cut too soon")
        self.assertTrue(self.hub.running())

    def test_a_slow_consumer_over_tls_is_still_cut(self):
        ch = unique_channel("tls-slow")
        with Hub(tls_cert=self.crt, tls_key=self.key, send_queue_bytes=65536,
                 max_message_bytes=65536 - 256) as hub:
            slow = WS.open(hub, channels=[ch], tls=self.ctx, rcvbuf=4096)
            fast = WS.open(hub, channels=[ch], tls=self.ctx)
            reader = BackgroundReader(fast, "fast reader")
            pad = "x" * 40000
            published = 0
            with Publisher(hub) as pub:
                while published < 400:
                    reader.wait_for(lambda ms, n=published: len(ms) >= n, T(10))
                    pub.publish_ok(ch, {"seq": published, "pad": pad})
                    published += 1
                    if metrics(hub).get("herald_events_dropped_total", 0,
                                        reason="slow_consumer") > 0:
                        break
            self.assertLess(published, 400, "the reader that reads nothing was never cut")
            code, _ = slow.expect_close(T(10))
            self.assertIn(code, (1013, WS.EOF, WS.RESET))
            reader.wait_events(published, T(10))
            self.assertEqual([m["data"]["seq"] for m in reader.events()], list(range(published)))
            reader.stop()
            fast.close()


class TlsAdmissionTest(HubTestCase):
    """Token, Origin and the per-address cap judge a wss upgrade as they judge a ws one."""

    def test_admission_is_unchanged_over_tls(self):
        crt, key = make_pair("tls-admission", "herald-admission")
        ctx = trusting(crt)
        secret, _ = new_secret("tls-admission.secret")
        with Hub(tls_cert=crt, tls_key=key, jwt_secret_file=secret,
                 allowed_origins="https://127.0.0.1", max_connections_per_ip=2) as hub:
            ch = unique_channel("adm")
            token = mint(secret, [ch])
            expect_policy_close(self, WS.connect(hub, tls=ctx), "unauthorized")
            expect_policy_close(self, WS.connect(hub, path=f"/ws?token={token}", tls=ctx,
                                                 headers={"Origin": "https://evil.example"}),
                                "origin not allowed")
            first = WS.open(hub, channels=[ch], token=token, tls=ctx,
                            headers={"Origin": "https://127.0.0.1"})
            second = WS.open(hub, channels=[ch], token=token, tls=ctx)
            with self.assertRaises(HandshakeError) as e:
                WS.open(hub, channels=[ch], token=token, tls=ctx)
            self.assertEqual(e.exception.status, 429)
            publish_ok(hub, ch, "both")
            self.assertEqual(first.recv_event(T(5))["data"], "both")
            self.assertEqual(second.recv_event(T(5))["data"], "both")
            forbidden = unique_channel("adm-other")
            first.send_json({"type": "subscribe", "channel": forbidden, "ref": 1})
            self.assertEqual(first.recv_json(T(5))["code"], "forbidden")
            first.close()
            second.close()


class TlsStartupTest(HubTestCase):
    """A missing, unreadable, unmatched or refused pair stops start-up: exit 2, one line on
    stderr naming the option."""

    def refused(self, args, option, env=None):
        rc, out, err = run_herald(args, env=env)
        lines = err.strip("\n").split("\n")
        if WRAPPER:
            lines = [l for l in lines if l.startswith("herald:")]
        self.assertEqual(rc, 2, f"herald {args} {env or ''}: exit {rc}, stderr {err!r}")
        self.assertEqual(len(lines), 1, f"not one line on stderr: {err!r}")
        self.assertIn(option, lines[0])
        self.assertEqual(out, "")
        return lines[0]

    def test_bad_pairs_stop_start_up(self):
        ec_crt, ec_key = make_pair("startup-ec", "startup-ec")
        rsa_crt, rsa_key = make_pair("startup-rsa", "startup-rsa", "rsa")
        weak_crt, weak_key = make_pair("startup-weak", "startup-weak", "rsa1024")
        missing = os.path.join(log_dir(), "no-such.pem")
        garbage = write_file("tls-garbage.pem", "not a pem file\n")
        encrypted = os.path.join(log_dir(), "startup-enc.key")
        subprocess.run([OPENSSL, "pkey", "-in", ec_key, "-aes256", "-passout", "pass:secret",
                        "-out", encrypted], check=True, capture_output=True, timeout=T(10))

        line = self.refused(["--tls-cert", ec_crt], "--tls-key")
        self.assertIn("--tls-cert", line)
        self.refused(["--tls-key", ec_key], "--tls-cert")
        self.refused([], "--tls-key", env={"HERALD_TLS_CERT": ec_crt})
        line = self.refused(["--tls-cert", ec_crt, "--tls-key", rsa_key], "--tls-key")
        self.assertIn("not the private key", line)
        self.assertIn(missing, self.refused(["--tls-cert", missing, "--tls-key", ec_key],
                                            "--tls-cert"))
        self.assertIn(missing, self.refused(["--tls-cert", ec_crt, "--tls-key", missing],
                                            "--tls-key"))
        self.refused(["--tls-cert", garbage, "--tls-key", ec_key], "--tls-cert")
        self.refused(["--tls-cert", ec_crt, "--tls-key", garbage], "--tls-key")
        self.refused(["--tls-cert", ec_key, "--tls-key", ec_key], "--tls-cert")
        self.refused(["--tls-cert", ec_crt, "--tls-key", log_dir()], "--tls-key")
        line = self.refused(["--tls-cert", ec_crt, "--tls-key", encrypted], "--tls-key")
        self.assertIn("passphrase", line)
        line = self.refused(["--tls-cert", weak_crt, "--tls-key", weak_key], "--tls-cert")
        self.assertIn("too small", line)
        if os.geteuid() != 0:  # root reads any file
            unreadable = write_file("tls-unreadable.key", open(ec_key).read(), mode=0)
            self.assertIn("ermission", self.refused(["--tls-cert", ec_crt, "--tls-key",
                                                     unreadable], "--tls-key"))
        # the good pairs start, from flags and from the config file
        with Hub(tls_cert=rsa_crt, tls_key=rsa_key) as hub:
            self.assertEqual(presented(hub, trusting(rsa_crt)), file_fingerprint(rsa_crt))
        config = write_file("tls-config.json", json.dumps({"tls-cert": ec_crt, "tls-key": ec_key}))
        with Hub(config=config) as hub:
            self.assertEqual(presented(hub, trusting(ec_crt)), file_fingerprint(ec_crt))


class TlsReloadTest(HubTestCase):
    def test_sighup_gives_new_handshakes_the_new_pair_and_keeps_connections(self):
        a_crt, a_key = make_pair("reload-a", "herald-a", "ec")
        b_crt, b_key = make_pair("reload-b", "herald-b", "rsa")
        crt = os.path.join(log_dir(), "reload-live.crt")
        key = os.path.join(log_dir(), "reload-live.key")

        def install(src_crt, src_key):
            # as a renewal does: each file replaced whole (a rename over the old one)
            for src, dst in ((src_crt, crt), (src_key, key)):
                shutil.copyfile(src, dst + ".new")
                os.replace(dst + ".new", dst)

        install(a_crt, a_key)
        both = trusting(a_crt, b_crt)
        fp_a, fp_b = file_fingerprint(a_crt), file_fingerprint(b_crt)
        with Hub(tls_cert=crt, tls_key=key, delivery_threads=2) as hub:
            ch = unique_channel("reload")
            old = WS.open(hub, channels=[ch], tls=both)
            self.assertEqual(sha256_of_der(old.sock.getpeercert(binary_form=True)), fp_a)
            reader = BackgroundReader(old, "connection opened before the reload")

            install(b_crt, b_key)
            hub.send_signal(signal.SIGHUP)
            wait_until(lambda: presented(hub, both) == fp_b, T(5), "a handshake with cert B")
            self.assertEqual([presented(hub, both) for _ in range(10)], [fp_b] * 10,
                             "every new handshake, on either plane, gets cert B")
            # the old key type is gone too: a client that takes ECDSA only no longer finds A
            ecdsa_only = trusting(a_crt, b_crt)
            ecdsa_only.maximum_version = ssl.TLSVersion.TLSv1_2
            ecdsa_only.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
            with self.assertRaises(ssl.SSLError):
                tls_socket(hub, ecdsa_only).close()

            new = WS.open(hub, channels=[ch], tls=both)
            self.assertEqual(sha256_of_der(new.sock.getpeercert(binary_form=True)), fp_b)
            publish_ok(hub, ch, "after the reload")
            reader.wait_events(1, T(5))
            self.assertEqual(reader.events()[0]["data"], "after the reload")
            self.assertEqual(new.recv_event(T(5))["data"], "after the reload")
            m = metrics(hub)
            self.assertEqual(m.get("herald_tls_reloads_total"), 1)
            self.assertAlmostEqual(m.get("herald_tls_certificate_expiry_timestamp_seconds"),
                                   not_after(b_crt), delta=1)
            self.assertIn("SIGHUP: new handshakes get", hub.log_text())

            # a bad pair on reload: logged, the current one kept, the hub and its clients stay
            failures = 0
            for bad in ((b_crt, a_key), (b_crt, None), (a_key, a_key)):
                if bad[1] is None:
                    os.unlink(key)
                else:
                    install(*bad)
                hub.send_signal(signal.SIGHUP)
                failures += 1
                wait_until(lambda: metrics(hub).get("herald_tls_reload_failures_total") ==
                           failures, T(5), f"reload failure {failures}")
                self.assertTrue(hub.running())
                self.assertEqual(presented(hub, both), fp_b)
            log = hub.log_text()
            self.assertIn("not the private key of the certificate", log)
            self.assertIn("No such file or directory", log)
            self.assertIn("still serving the certificate loaded before", log)
            publish_ok(hub, ch, "after the bad reloads")
            reader.wait_events(2, T(5))
            self.assertEqual(new.recv_event(T(5))["data"], "after the bad reloads")

            # and back to A, a key type change the other way
            install(a_crt, a_key)
            hub.send_signal(signal.SIGHUP)
            wait_until(lambda: presented(hub, both) == fp_a, T(5), "a handshake with cert A")
            publish_ok(hub, ch, "after the third reload")
            reader.wait_events(3, T(5))
            reader.stop()
            old.close()
            new.close()

    def test_sighup_without_tls_is_harmless(self):
        with Hub() as hub:
            ch = unique_channel("plain-hup")
            with WS.open(hub, channels=[ch]) as ws:
                hub.send_signal(signal.SIGHUP)
                wait_until(lambda: "nothing to reload" in hub.log_text(), T(5), "the log line")
                self.assertTrue(hub.running())
                publish_ok(hub, ch, 1)
                self.assertEqual(ws.recv_event(T(5))["data"], 1)


if __name__ == "__main__":
    unittest.main()
