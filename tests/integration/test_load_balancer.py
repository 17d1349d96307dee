"""test_load_balancer.py -- Debian's nginx (and HAProxy) in front of hubs that share one
Redis, configured from the files we ship (systemd/nginx-herald.conf, haproxy-herald.cfg):
clients spread over the instances, an event published on any instance reaches all of them,
and draining one instance moves its clients to another, where they get the next events.

nginx runs as a non-daemon process from a generated main config in a temp dir (`-p`
prefix, error log, pid and temp paths there) that includes the shipped site config with
its addresses replaced by the test's 127.0.0.1 ports."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from collections import Counter

from harness import (ConnectionClosed, Hub, HubTestCase, Publisher, T, WS, WSTimeout,
                     free_port, http_request, log_dir, publish, publish_ok, recv_many,
                     unique_channel, wait_until)
from redislib import Cluster, RedisServer, wait_ready

NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"
SYSTEMD_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "systemd")
NGINX_SITE = os.path.join(SYSTEMD_DIR, "nginx-herald.conf")
HAPROXY_CFG = os.path.join(SYSTEMD_DIR, "haproxy-herald.cfg")

if not os.access(NGINX, os.X_OK):
    raise unittest.SkipTest(f"{NGINX} is absent: install Debian's nginx (apt-get install "
                            "nginx-light, or nginx) to run the load balancer tests")


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _sub_once(pattern, repl, text, what, flags=0):
    out, n = re.subn(pattern, repl, text, count=1, flags=flags)
    if n != 1:
        raise AssertionError(f"the shipped config changed shape: no {what} to replace")
    return out


def _replace_servers(text, upstream, addresses, what):
    """In `upstream NAME { ... }`, replace the server lines by one per address, keeping the
    parameters of the first one."""
    m = re.search(r"(upstream\s+" + upstream + r"\s*\{)(.*?)(\n\})", text, re.S)
    if not m:
        raise AssertionError(f"the shipped config has no upstream {upstream}")
    body = m.group(2)
    servers = re.findall(r"^(\s*)server\s+\S+([^;\n]*);", body, re.M)
    if not servers:
        raise AssertionError(f"upstream {upstream} has no server lines")
    indent, params = servers[0]
    lines = "".join(f"{indent}server {a}{params};" for a in addresses)
    first = True

    def repl(_):
        nonlocal first
        if first:
            first = False
            return lines
        return ""

    body = re.sub(r"^(\s*)server\s+\S+[^;\n]*;", repl, body, flags=re.M)
    return text[:m.start(2)] + body + text[m.end(2):]


def render_nginx_site(ws_addrs, api_addrs, port, api_port, directives=None):
    """The shipped site config with the test's addresses (and directives replaced)."""
    with open(NGINX_SITE) as f:
        text = f.read()
    text = _replace_servers(text, "herald_ws", ws_addrs, "ws servers")
    text = _replace_servers(text, "herald_api", api_addrs, "api servers")
    text = _sub_once(r"^\s*listen\s+\[::\]:80;\n", "", text, "IPv6 listen", re.M)
    text = _sub_once(r"listen\s+80;", f"listen 127.0.0.1:{port};", text, "public listen")
    text = _sub_once(r"listen\s+127\.0\.0\.1:8001;", f"listen 127.0.0.1:{api_port};", text,
                     "API listen")
    for name, value in (directives or {}).items():
        text = _sub_once(rf"{name}\s+[^;]+;", f"{name} {value};", text, name)
    return text


class Nginx:
    """nginx in the foreground (`daemon off`) with a main config that includes site_text."""

    def __init__(self, site_text, port, api_port):
        self.site_text = site_text
        self.port, self.api_port = port, api_port
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=log_dir())
        self.proc = None

    def write(self):
        d = self.dir
        with open(os.path.join(d, "herald.conf"), "w") as f:
            f.write(self.site_text)
        main = f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/herald.conf;
}}
"""
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(main)
        return path

    def command(self, *extra):
        return [NGINX, "-p", self.dir + "/", "-c", os.path.join(self.dir, "nginx.conf"),
                "-e", os.path.join(self.dir, "error.log"), *extra]

    def check(self):
        self.write()
        r = subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=T(10))
        return r.returncode, r.stdout + r.stderr

    def start(self, timeout=None):
        self.write()
        with open(os.path.join(self.dir, "stderr.log"), "wb") as out:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + (T(5) if timeout is None else timeout)
        pending = [self.port, self.api_port]
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited at start ({self.proc.returncode})\n"
                                     f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx not listening within the timeout\n"
                                     f"{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5).close()
                pending.pop(0)
            except OSError:
                time.sleep(0.02)
        return self

    def stop(self):
        """SIGTERM (fast shutdown: the master stops its workers); SIGKILL to the master
        and its workers if that takes over 5 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        workers = _children(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(T(5))
        except subprocess.TimeoutExpired:
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, lines=30):
        out = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    text = f.read().decode("utf-8", "replace").splitlines()[-lines:]
                out.append(f"--- nginx {name} ---\n" + "\n".join(text))
            except OSError:
                pass
        return "\n".join(out)

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, exc_type, *exc):
        self.stop()
        if exc_type is not None:
            print(self.log_tail(), flush=True)
        return False


def nginx_for(hubs, directives=None):
    port, api_port = free_port(), free_port()
    site = render_nginx_site([f"127.0.0.1:{h.port}" for h in hubs],
                             [f"127.0.0.1:{h.api_port}" for h in hubs], port, api_port,
                             directives)
    return Nginx(site, port, api_port)


def open_via(lb, ch, attempts=3):
    """A client through the load balancer; retries a failed connect like a real client
    would. Returns (ws, attempts used)."""
    last = None
    for n in range(1, attempts + 1):
        try:
            return WS.open(lb.ws_url, channels=[ch]), n
        except (AssertionError, ConnectionClosed, OSError) as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"could not connect through the load balancer: {last!r}")


def publish_via(lb, channel, data):
    """POST /publish through the load balancer's API port; data is JSON text."""
    return publish(lb, f'{{"channel":"{channel}","data":{data}}}')


class ConfigTest(unittest.TestCase):
    def test_shipped_nginx_config_passes_nginx_t(self):
        with open(NGINX_SITE) as f:
            ng = Nginx(f.read(), 80, 8001)  # as shipped; -t binds nothing
        rc, out = ng.check()
        self.assertEqual(rc, 0, out)
        self.assertIn("test is successful", out)

    def test_shipped_haproxy_config_passes_haproxy_c(self):
        if not os.access(HAPROXY, os.X_OK):
            self.skipTest(f"{HAPROXY} is absent: apt-get install haproxy")
        r = subprocess.run([HAPROXY, "-c", "-f", HAPROXY_CFG], capture_output=True, text=True,
                           timeout=T(10))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("[WARNING]", r.stdout + r.stderr)
        with open(HAPROXY_CFG) as f:
            cfg = f.read()
        self.assertRegex(cfg, r"option httpchk GET /ready")
        # the WebSocket backend is checked on each instance's API port
        for line in re.findall(r"^\s*server\s+\S+\s+\S+:8080\b.*$", cfg, re.M):
            self.assertRegex(line, r"\bcheck\b.*\bport\s+8081\b")


class NginxTest(HubTestCase):
    def test_spread_fan_out_and_drain_through_nginx(self):
        ch = unique_channel("lb")
        with RedisServer() as redis, Cluster(redis, 2, drain_seconds=3) as cluster, \
                nginx_for(cluster.hubs) as lb:
            a, b = cluster
            clients = []
            try:
                for _ in range(6):
                    clients.append(open_via(lb, ch)[0])
                spread = Counter(ws.welcome["instance"] for ws in clients)
                self.assertEqual(set(spread), {a.instance_id, b.instance_id},
                                 f"clients not spread over both hubs: {spread}")
                # the dashboard comes through too
                status, _, page = http_request(lb.port, "GET", "/")
                self.assertEqual(status, 200)

                # published on either hub, or through nginx: every client gets it
                ids = [publish_ok(a, ch, {"via": "a"}), publish_ok(b, ch, {"via": "b"})]
                status, _, body = publish_via(lb, ch, '{"via":"lb"}')
                self.assertEqual(status, 202, body)
                ids.append(body["id"])
                got = recv_many(clients, count=3, timeout=T(10))
                for msgs in got.values():
                    self.assertEqual([m["id"] for m in msgs], ids)

                # drain a: its clients get 1001, reconnect through nginx, land on b
                on_a = [ws for ws in clients if ws.welcome["instance"] == a.instance_id]
                a.send_signal(signal.SIGTERM)
                for ws in on_a:
                    code, _ = ws.expect_close(T(5))
                    self.assertEqual(code, 1001)
                moved, tries = [], []
                for _ in on_a:
                    ws, n = open_via(lb, ch)
                    moved.append(ws)
                    tries.append(n)
                self.assertTrue(all(ws.welcome["instance"] == b.instance_id for ws in moved),
                                [ws.welcome for ws in moved])
                clients = [ws for ws in clients if ws not in on_a] + moved

                # the next events reach every client, published through nginx (which
                # passes the POST over the draining instance) and on b directly
                later = []
                for i in range(3):
                    status, _, body = publish_via(lb, ch, f'{{"after":{i}}}')
                    self.assertEqual(status, 202, body)
                    later.append(body["id"])
                with Publisher(b) as pub:
                    later.append(pub.publish_ok(ch, {"after": "b"}))
                got = recv_many(clients, count=len(later), timeout=T(10))
                for msgs in got.values():
                    self.assertEqual([m["id"] for m in msgs], later)
                self.assertEqual(a.wait(T(10)), 0)
                print(f"\n[nginx] spread {dict(spread)}; {len(on_a)} clients moved to "
                      f"{b.instance_id} (connect attempts {tries})", flush=True)
            finally:
                for ws in clients:
                    ws.abort()

    def test_idle_websocket_needs_proxy_read_timeout_above_the_heartbeat(self):
        """nginx closes a proxied connection that is quiet for proxy_read_timeout; the hub's
        pings keep it open only when they come more often."""
        ch = unique_channel("idle")
        with Hub(heartbeat=1) as fast, Hub(heartbeat=5) as slow, \
                nginx_for([fast], {"proxy_read_timeout": "2500ms"}) as lb_ok, \
                nginx_for([slow], {"proxy_read_timeout": "2500ms"}) as lb_cut:
            kept = WS.open(lb_ok.ws_url, channels=[ch])
            cut = WS.open(lb_cut.ws_url, channels=[ch])
            try:
                ended = None
                deadline = time.monotonic() + 4.0
                while time.monotonic() < deadline:
                    for ws in (kept, cut):
                        if ws.closed is None:
                            try:
                                ws.recv_json(0.05)
                            except WSTimeout:
                                pass
                            except ConnectionClosed as c:
                                if ws is kept:
                                    raise AssertionError(f"nginx cut a connection whose hub "
                                                         f"pings every second: {c}")
                                ended = c
                self.assertIsNone(kept.closed)
                self.assertGreaterEqual(kept.pings_received, 3)
                self.assertIsNotNone(ended, "a connection quiet for longer than "
                                            "proxy_read_timeout was kept")
                with Publisher(fast) as pub:
                    sent = pub.publish_ok(ch, "still here")
                self.assertEqual(kept.recv_event(T(5))["id"], sent)
            finally:
                kept.abort()
                cut.abort()


# --------------------------------------------------------------------------------------
# HAProxy: active checks on GET /ready

def render_haproxy(ws_servers, api_servers, port, api_port, sock):
    """The shipped config with the test's addresses, fast checks, logs on stdout, a small
    maxconn (it sizes the descriptor limit), and an admin socket to read the servers'
    states."""
    with open(HAPROXY_CFG) as f:
        text = f.read()
    text = _sub_once(r"log /dev/log local0", "log stdout format raw local0", text, "syslog line")
    text = _sub_once(r"maxconn \d+", "maxconn 1000", text, "maxconn")
    text = _sub_once(r"^(global\n)", rf"\1    stats socket {sock} level admin\n", text,
                     "global section", re.M)
    text = _sub_once(r"bind :80\b", f"bind 127.0.0.1:{port}", text, "public bind")
    text = _sub_once(r"bind 127\.0\.0\.1:8001\b", f"bind 127.0.0.1:{api_port}", text,
                     "API bind")
    text = text.replace("inter 1s", "inter 100ms")
    for backend, servers in (("herald_ws", ws_servers), ("herald_api", api_servers)):
        m = re.search(r"(^backend " + backend + r"\n)(.*?)(\n\n|\Z)", text, re.S | re.M)
        if not m:
            raise AssertionError(f"no backend {backend} in the shipped config")
        body = re.sub(r"^\s*server\s.*\n?", "", m.group(2), flags=re.M).rstrip("\n")
        body += "\n" + "\n".join(f"    server {name} {addr} {params}"
                                 for name, addr, params in servers)
        text = text[:m.start(2)] + body + text[m.end(2):]
    return text.rstrip("\n") + "\n"


def haproxy_states(sock):
    """{(backend, server): operational state} from `show servers state` (2 is up)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(sock)
        s.sendall(b"show servers state\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    states = {}
    for line in data.decode().splitlines():
        f = line.split()
        if len(f) > 5 and f[0].isdigit():
            states[(f[1], f[3])] = int(f[5])
    return states


class HAProxyTest(HubTestCase):
    def test_haproxy_sends_clients_and_publishes_only_to_ready_hubs(self):
        if not os.access(HAPROXY, os.X_OK):
            self.skipTest(f"{HAPROXY} is absent: apt-get install haproxy")
        ch = unique_channel("hap")
        with RedisServer(password="right-pass-for-hap") as redis:
            good = Hub(redis_url=redis.url(), redis_channel="herald-hap")
            bad = Hub(redis_url=redis.url(password="wrong-pass"), redis_channel="herald-hap")
            with good, bad:
                wait_ready([good])
                d = tempfile.mkdtemp(prefix="haproxy-", dir=log_dir())
                sock = os.path.join(d, "admin.sock")
                port, api_port = free_port(), free_port()
                cfg = os.path.join(d, "haproxy.cfg")
                with open(cfg, "w") as f:
                    f.write(render_haproxy(
                        [("good", f"127.0.0.1:{good.port}", f"check port {good.api_port}"),
                         ("bad", f"127.0.0.1:{bad.port}", f"check port {bad.api_port}")],
                        [("good", f"127.0.0.1:{good.api_port}", "check"),
                         ("bad", f"127.0.0.1:{bad.api_port}", "check")],
                        port, api_port, sock))
                with open(os.path.join(d, "haproxy.log"), "wb") as out:
                    proc = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT)
                try:
                    want = {("herald_ws", "good"): 2, ("herald_ws", "bad"): 0,
                            ("herald_api", "good"): 2, ("herald_api", "bad"): 0}

                    def converged():
                        if proc.poll() is not None:
                            with open(os.path.join(d, "haproxy.log")) as f:
                                raise AssertionError("haproxy exited:\n" + f.read())
                        try:
                            states = haproxy_states(sock)
                        except OSError:
                            return False
                        return all(states.get(k) == v for k, v in want.items())

                    wait_until(converged, T(5), "HAProxy marking the unready hub down")

                    class LB:
                        ws_url = f"ws://127.0.0.1:{port}"
                    clients = [open_via(LB, ch)[0] for _ in range(4)]
                    try:
                        self.assertEqual({ws.welcome["instance"] for ws in clients},
                                         {good.instance_id})
                        lb = LB()
                        lb.api_port = api_port
                        sent = []
                        for i in range(4):
                            status, _, body = publish_via(lb, ch, str(i))
                            self.assertEqual(status, 202, body)
                            sent.append(body["id"])
                        got = recv_many(clients, count=4, timeout=T(10))
                        for msgs in got.values():
                            self.assertEqual([m["id"] for m in msgs], sent)
                    finally:
                        for ws in clients:
                            ws.abort()
                finally:
                    proc.terminate()
                    try:
                        proc.wait(T(5))
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)


if __name__ == "__main__":
    unittest.main()
