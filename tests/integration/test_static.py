"""test_static.py -- the dashboard files on --listen, health and readiness, /stats,
/metrics and the $stats channel."""

import os
import shutil
import tempfile
import time
import unittest

from harness import (HERALD_WEB_ROOT, Hub, HubTestCase, WS, T, get, get_static, metrics,
                     publish_ok, stats, unique_channel, wait_until)

STATS_FIELDS = ("connections", "subscriptions", "channels", "events_published",
                "events_delivered", "events_dropped")


class StaticFilesTest(HubTestCase):
    hub_options = {}

    def test_root_serves_the_index_page(self):
        status, headers, body = get_static(self.hub, "/")
        self.assertEqual(status, 200)
        self.assertTrue((headers.get("Content-Type") or "").startswith("text/html"),
                        headers.get("Content-Type"))
        with open(os.path.join(HERALD_WEB_ROOT, "index.html"), "rb") as f:
            self.assertEqual(body, f.read())

    def test_index_html_by_name(self):
        status, headers, body = get_static(self.hub, "/index.html")
        self.assertEqual(status, 200)
        with open(os.path.join(HERALD_WEB_ROOT, "index.html"), "rb") as f:
            self.assertEqual(body, f.read())

    def test_unknown_file_is_404(self):
        status, _, _ = get_static(self.hub, "/nope")
        self.assertEqual(status, 404)
        status, _, _ = get_static(self.hub, "/nope/deeper.js")
        self.assertEqual(status, 404)

    def test_no_file_outside_the_web_root(self):
        for path in ("/../CMakeLists.txt", "/%2e%2e/CMakeLists.txt", "/..%2fCMakeLists.txt"):
            with self.subTest(path=path):
                status, _, body = get_static(self.hub, path)
                self.assertNotEqual(status, 200, body[:200])

    def test_no_symbolic_link_out_of_the_web_root(self):
        """lws follows symbolic links; the hub serves only files whose real path is inside
        --web-root (a link inside it that stays inside still works)."""
        root = tempfile.mkdtemp(prefix="herald-webroot-")
        outside = tempfile.mkdtemp(prefix="herald-outside-")
        try:
            with open(os.path.join(root, "index.html"), "w") as f:
                f.write("<!doctype html><title>root</title>")
            with open(os.path.join(root, "inside.txt"), "w") as f:
                f.write("inside")
            with open(os.path.join(outside, "secret.txt"), "w") as f:
                f.write("secret")
            os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "secret.txt"))
            os.symlink(outside, os.path.join(root, "outdir"))
            os.symlink("inside.txt", os.path.join(root, "alias.txt"))
            with Hub(web_root=root) as hub:
                for path in ("/secret.txt", "/outdir/secret.txt", "/outdir/", "/outdir"):
                    with self.subTest(path=path):
                        status, _, body = get_static(hub, path)
                        self.assertNotEqual(status, 200, body[:100])
                        self.assertNotIn(b"secret", body)
                status, _, body = get_static(hub, "/alias.txt")
                self.assertEqual((status, body), (200, b"inside"))
                status, _, body = get_static(hub, "/")
                self.assertEqual(status, 200)
                self.assertIn(b"<title>root</title>", body)
        finally:
            shutil.rmtree(root)
            shutil.rmtree(outside)

    def test_health_is_ok(self):
        status, headers, body = get(self.hub, "/health")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"status": "ok"})

    def test_ready_is_ready(self):
        status, _, body = get(self.hub, "/ready")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"status": "ready"})


class StatsTest(HubTestCase):
    def test_stats_counts_connections_subscriptions_and_events(self):
        a, b = unique_channel("sa"), unique_channel("sb")
        with Hub() as hub:
            s0 = stats(hub)
            for field in STATS_FIELDS:
                self.assertIsInstance(s0.get(field), int, f"{field} in {s0}")
            self.assertEqual((s0["connections"], s0["subscriptions"], s0["channels"]), (0, 0, 0))
            with WS.open(hub, channels=[a, b]) as w1, WS.open(hub, channels=[a]) as w2:
                s1 = stats(hub)
                self.assertEqual(s1["connections"], 2)
                self.assertEqual(s1["subscriptions"], 3)
                self.assertEqual(s1["channels"], 2)
                for i in range(3):
                    publish_ok(hub, a, i)
                publish_ok(hub, unique_channel("nobody"), "unheard")
                for ws in (w1, w2):
                    self.assertEqual([ws.recv_json()["data"] for _ in range(3)], [0, 1, 2])
                s2 = wait_until(lambda: (lambda s: s if s["events_delivered"] -
                                         s0["events_delivered"] >= 6 else None)(stats(hub)),
                                T(5), "events_delivered to count 6")
                self.assertEqual(s2["events_published"] - s0["events_published"], 4)
                self.assertEqual(s2["events_delivered"] - s0["events_delivered"], 6)
                self.assertEqual(s2["events_dropped"], 0)
            s3 = wait_until(lambda: (lambda s: s if s["connections"] == 0 else None)(stats(hub)),
                            T(5), "connections back to 0")
            self.assertEqual((s3["subscriptions"], s3["channels"]), (0, 0))

    def test_metrics_are_prometheus_text_with_herald_names(self):
        ch = unique_channel("m")
        with Hub() as hub:
            with WS.open(hub, channels=[ch]) as ws:
                publish_ok(hub, ch, 1)
                publish_ok(hub, ch, 2)
                self.assertEqual([ws.recv_json()["data"] for _ in range(2)], [1, 2])
                status, headers, _ = get(hub, "/metrics")
                self.assertEqual(status, 200)
                self.assertTrue((headers.get("Content-Type") or "").startswith("text/plain"),
                                headers.get("Content-Type"))
                m = wait_until(lambda: (lambda m: m if m.get("herald_events_delivered_total")
                                        == 2 else None)(metrics(hub)),
                               T(5), "herald_events_delivered_total to be 2")
                self.assertEqual(m.get("herald_connections"), 1)
                self.assertEqual(m.get("herald_subscriptions"), 1)
                self.assertEqual(m.get("herald_channels"), 1)
                self.assertEqual(m.get("herald_events_published_total"), 2)
                self.assertIn("herald_events_dropped_total", m)
                for labels, _ in m.samples["herald_events_dropped_total"]:
                    self.assertIn("reason", labels)
                for name in m.samples:
                    self.assertTrue(name.startswith("herald_"), name)
                self.assertEqual(m.types.get("herald_events_published_total"), "counter")
                self.assertEqual(m.types.get("herald_connections"), "gauge")

    def test_stats_channel_sends_a_snapshot_about_once_a_second(self):
        ch = unique_channel("observed")
        with Hub() as hub:
            with WS.open(hub, channels=["$stats", ch]) as ws:
                publish_ok(hub, ch, "x")
                snapshots, others = [], []  # snapshots: (arrival time, message)
                deadline = time.monotonic() + T(6)
                while len(snapshots) < 3:
                    remaining = deadline - time.monotonic()
                    self.assertGreater(remaining, 0, f"only {len(snapshots)} $stats events "
                                       f"in {T(6):.0f}s")
                    msg = ws.recv_event(remaining)
                    if msg.get("channel") == "$stats":
                        snapshots.append((time.monotonic(), msg))
                    else:
                        others.append(msg)
                api_fields = set(stats(hub))
            self.assertEqual([(m["channel"], m["data"]) for m in others], [(ch, "x")])
            for _, msg in snapshots:
                data = msg.get("data")
                self.assertIsInstance(data, dict, msg)
                self.assertEqual(set(data), api_fields, "$stats and /stats differ in fields")
                for field in STATS_FIELDS:
                    self.assertIsInstance(data.get(field), int, f"{field} in {data}")
                self.assertEqual(data["connections"], 1)
                self.assertIsInstance(msg.get("id"), str)
                self.assertIsInstance(msg.get("ts"), int)
            self.assertEqual(len({m["id"] for _, m in snapshots}), len(snapshots))
            # judged by the hub's own publish times, so a late reader cannot bunch them
            gaps = [(b["ts"] - a["ts"]) / 1000 for (_, a), (_, b) in zip(snapshots, snapshots[1:])]
            for gap in gaps:
                self.assertGreater(gap, 0.5, f"gaps between $stats events: {gaps}")
                self.assertLess(gap, T(2), f"gaps between $stats events: {gaps}")


if __name__ == "__main__":
    unittest.main()
