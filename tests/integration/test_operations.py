"""test_operations.py -- what an operator relies on: systemd notifications (READY, WATCHDOG,
STOPPING), JSON logs without payloads, the metrics of the observability list, and the option
table end to end (environment vs flag).

systemd is not PID 1 here: the tests play its part with a datagram socket in NOTIFY_SOCKET,
which is exactly what sd_notify writes to."""

import json
import os
import signal
import socket
import tempfile
import time
import unittest

from harness import (T, Hub, HubTestCase, WS, free_port, metrics, publish, unique_channel,
                     wait_until)


class NotifySocket:
    """A unix datagram socket standing in for systemd's notification socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="herald-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def read(self, seconds):
        """Collects messages for the given time."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        return self.messages

    def wait_for(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(m.startswith(prefix) for m in self.messages):
                return
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        raise AssertionError(f"no {prefix!r} notification within {timeout}s: {self.messages}")

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


class EnvFor:
    """Sets environment variables for the hubs started inside the block."""

    def __init__(self, **env):
        self.env = env
        self.saved = {}

    def __enter__(self):
        for k, v in self.env.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class SystemdNotifyTest(HubTestCase):
    def test_ready_then_watchdog_then_stopping(self):
        ns = NotifySocket()
        self.addCleanup(ns.close)
        with EnvFor(NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="1000000"):
            hub = Hub().start()
        try:
            ns.wait_for("READY=1", T(5))
            first = ns.messages[0]
            self.assertTrue(first.startswith("READY=1"), f"READY=1 comes first: {ns.messages}")
            self.assertIn("STATUS=ready", first)
            ns.read(T(1.2))
            pings = [m for m in ns.messages if m == "WATCHDOG=1"]
            # pinged every 250 ms while both loops turn; at least 3 in 1.2 s
            self.assertGreaterEqual(len(pings), 3, ns.messages)
        finally:
            rc = hub.stop()
        self.assertEqual(rc, 0)
        ns.read(T(0.3))
        self.assertTrue(any(m.startswith("STOPPING=1") for m in ns.messages), ns.messages)

    def test_not_ready_while_the_broker_is_down(self):
        ns = NotifySocket()
        self.addCleanup(ns.close)
        dead_redis = free_port()  # nothing listens there
        with EnvFor(NOTIFY_SOCKET=ns.path):
            hub = Hub(redis_url=f"redis://127.0.0.1:{dead_redis}").start()
        try:
            ns.read(T(1.5))
            self.assertFalse(any(m.startswith("READY=1") for m in ns.messages),
                             f"READY=1 sent while Redis is unreachable: {ns.messages}")
            status, _, body = publish(hub, {"channel": "x", "data": 1})
            self.assertEqual(status, 503, body)
        finally:
            self.assertEqual(hub.stop(), 0)


class JsonLogTest(HubTestCase):
    def test_every_line_is_a_json_object_without_payloads(self):
        secret = "payload-marker-7f3a9c"
        hub = Hub(log_format="json").start()
        ch = unique_channel()
        try:
            ws = WS.connect(hub.port, f"/ws?channels={ch}")
            ws.recv_json()  # welcome
            ws.recv_json()  # subscribed
            status, _, _ = publish(hub, {"channel": ch, "data": {"secret": secret}})
            self.assertEqual(status, 202)
            self.assertEqual(ws.recv_json()["data"]["secret"], secret)
            ws.send_json({"type": "subscribe", "channel": secret})
            ws.recv_json()
            ws.close()
        finally:
            self.assertEqual(hub.stop(), 0)
        with open(hub.log_path, encoding="utf-8") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        self.assertGreater(len(lines), 3)
        for line in lines:
            obj = json.loads(line)  # raises on a line that is not JSON
            for key in ("time", "level", "subsystem", "instance", "msg"):
                self.assertIn(key, obj, line)
            self.assertEqual(obj["instance"], hub.instance_id)
            self.assertIn(obj["level"], ("debug", "info", "warn", "error"))
            self.assertNotIn(secret, line, "a payload reached the log")


class IoUringTest(HubTestCase):
    def test_io_uring_on_or_said_why_not_and_off_when_asked(self):
        """--io-uring on (the default): every plane sends through io_uring, or the log says
        the kernel refused it; off: none does. Both deliver the same."""
        for setting in ("on", "off"):
            ch = unique_channel("uring")
            with Hub(io_uring=setting, delivery_threads=2) as hub:
                ws = WS.open(hub, channels=[ch])
                self.assertEqual(publish(hub, {"channel": ch, "data": setting})[0], 202)
                self.assertEqual(ws.recv_event()["data"], setting)
                ws.close()
                planes = metrics(hub).get("herald_delivery_io_uring_planes")
                text = hub.log_text()
                if setting == "off":
                    self.assertEqual(planes, 0)
                    self.assertIn("sending with send()", text)
                elif "io_uring refused" in text:
                    self.assertEqual(planes, 0)
                else:
                    self.assertEqual(planes, 2)
                    self.assertIn("sending through io_uring", text)


class MetricsCompleteTest(HubTestCase):
    hub_options = {}

    def test_the_observability_list_is_exported(self):
        ch = unique_channel()
        ws = WS.connect(self.hub.port, f"/ws?channels={ch}")
        ws.recv_json()
        ws.recv_json()
        self.assertEqual(publish(self.hub, {"channel": ch, "data": 1})[0], 202)
        ws.recv_json()
        ws.close()
        m = metrics(self.hub)
        gauges = ["herald_connections", "herald_subscriptions", "herald_channels",
                  "herald_mailbox_depth", "herald_process_resident_memory_bytes",
                  "herald_ready", "herald_draining", "herald_backlog_bytes",
                  "herald_max_backlog_bytes", "herald_delivery_io_uring_planes"]
        counters = ["herald_connections_accepted_total", "herald_events_published_total",
                    "herald_events_delivered_total", "herald_publish_requests_total",
                    "herald_publish_overloaded_total", "herald_send_queue_overruns_total"]
        for name in gauges:
            self.assertEqual(m.types.get(name), "gauge", name)
        for name in counters:
            self.assertEqual(m.types.get(name), "counter", name)
        for reason in ("slow_consumer", "overload", "closing"):
            self.assertIsNotNone(m.get("herald_events_dropped_total", reason=reason), reason)
        for reason in ("slow_consumer", "rate_limit", "auth", "bad_frame", "drain", "normal"):
            self.assertIsNotNone(m.get("herald_disconnects_total", reason=reason), reason)
        for reason in ("capacity", "per_ip", "draining", "path"):
            self.assertIsNotNone(m.get("herald_connections_refused_total", reason=reason))
        for name in ("herald_publish_latency_seconds", "herald_delivery_latency_seconds"):
            self.assertEqual(m.types.get(name), "histogram", name)
            self.assertGreaterEqual(m.get(name + "_count"), 1, name)
            self.assertEqual(m.get(name + "_bucket", le="+Inf"), m.get(name + "_count"), name)
        self.assertGreater(m.get("herald_process_resident_memory_bytes"), 1_000_000)
        self.assertGreaterEqual(m.get("herald_events_delivered_total"), 1)


class OptionTableTest(HubTestCase):
    def test_environment_sets_an_option_and_a_flag_wins_over_it(self):
        with EnvFor(HERALD_HEARTBEAT="7"):
            by_env = Hub().start()
            by_flag = Hub(heartbeat=9).start()
        try:
            for hub, want in ((by_env, 7), (by_flag, 9)):
                ws = WS.connect(hub.port, "/ws")
                self.assertEqual(ws.recv_json()["heartbeat"], want)
                ws.close()
        finally:
            self.assertEqual(by_env.stop(), 0)
            self.assertEqual(by_flag.stop(), 0)

    def test_config_file_is_read(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"heartbeat": 11, "max-subscriptions": 1}, f)
        self.addCleanup(os.unlink, f.name)
        hub = Hub(config=f.name).start()
        try:
            ws = WS.connect(hub.port, "/ws")
            self.assertEqual(ws.recv_json()["heartbeat"], 11)
            ws.send_json({"type": "subscribe", "channel": "a"})
            self.assertEqual(ws.recv_json()["type"], "subscribed")
            ws.send_json({"type": "subscribe", "channel": "b"})
            self.assertEqual(ws.recv_json()["code"], "forbidden")
            ws.close()
        finally:
            self.assertEqual(hub.stop(), 0)


if __name__ == "__main__":
    unittest.main()
