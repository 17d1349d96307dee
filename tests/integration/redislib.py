"""redislib.py -- fixtures for the multi-instance tests: a real redis-server, hubs that
share it, and the readiness helpers those tests poll.

RedisServer starts `redis-server` on a free 127.0.0.1 port with no persistence
(`--save '' --appendonly no`), optionally with `--requirepass`, and can kill, pause
(SIGSTOP), resume (SIGCONT) and restart it on the same port. It speaks RESP through a
tiny socket client (no redis-cli needed). Cluster starts N `herald` processes on one
RedisServer and one fresh shared channel and waits until every one answers /ready 200.

Environment (besides util.py's):
  HERALD_REDIS_SERVER   the redis-server binary (default: redis-server on PATH)

Every wait is bounded; every process started here is killed at exit if still running
(hubproc.live_procs).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from httpapi import ready_status
from hubproc import Hub, HubTestCase, free_port, live_procs, log_dir
from util import T, unique_channel, wait_until

REDIS_SERVER = (os.environ.get("HERALD_REDIS_SERVER") or shutil.which("redis-server")
                or "/usr/bin/redis-server")

# The broker's timing (hub/broker_redis.c): a heartbeat a second, the link is dead after
# three seconds without one, reconnect backoff 100 ms doubling to a 3 s cap, 2 s for
# connect + AUTH + SELECT + SUBSCRIBE.
HEARTBEAT_S = 1.0
HEARTBEAT_LOST_S = 3.0
BACKOFF_CAP_S = 3.0
SETUP_DEADLINE_S = 2.0

class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


def resp_command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError(f"not RESP: {line[:80]!r}")


def redis_call(port, *args, password=None, user=None, timeout=1.0):
    """One command on a fresh connection (AUTH [user] password first when password is
    given). Returns the reply; an error reply is raised as RedisError; OSError when Redis
    does not answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        r = _Reader(s)
        if password is not None:
            s.sendall(resp_command("AUTH", user, password) if user else
                      resp_command("AUTH", password))
            rep = r.reply()
            if isinstance(rep, RedisError):
                raise rep
        s.sendall(resp_command(*args))
        rep = r.reply()
        if isinstance(rep, RedisError):
            raise rep
        return rep


class RedisSubscriber:
    """A plain Redis subscriber on a channel (to watch what the hubs put on the wire)."""

    def __init__(self, port, channel, password=None, timeout=2.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.r = _Reader(self.sock)
        if password is not None:
            self.sock.sendall(resp_command("AUTH", password))
            self.r.reply()
        self.sock.sendall(resp_command("SUBSCRIBE", channel))
        rep = self.r.reply()
        if not isinstance(rep, list) or rep[0] != b"subscribe":
            raise AssertionError(f"SUBSCRIBE answered {rep!r}")

    def messages(self, duration):
        """Payloads received within duration seconds."""
        out = []
        deadline = time.monotonic() + duration
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            self.sock.settimeout(remaining)
            try:
                rep = self.r.reply()
            except socket.timeout:
                return out
            if isinstance(rep, list) and rep and rep[0] == b"message":
                out.append(rep[2])

    def close(self):
        self.sock.close()


class RedisServer:
    """One redis-server process on 127.0.0.1. start() returns once it answers PING.
    password: --requirepass. user (with password): an ACL user this fixture logs in as,
    created by the caller through extra_args (e.g. "--user", "alice", "on", ">pw", ...)."""

    def __init__(self, password=None, user=None, extra_args=()):
        self.password = password
        self.user = user
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None
        self.dir = None
        self.log_path = None
        self.starts = 0

    # -- lifecycle -------------------------------------------------------------------
    def command(self):
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--daemonize", "no",
               "--dir", self.dir, "--logfile", self.log_path, "--loglevel", "notice"]
        if self.password is not None and self.user is None:
            cmd += ["--requirepass", self.password]
        return cmd + self.extra_args

    def start(self, timeout=None):
        """Start on a free port (the first time) or on the same port (a restart)."""
        timeout = T(5) if timeout is None else timeout
        if not os.access(REDIS_SERVER, os.X_OK):
            raise AssertionError(f"redis-server not found: {REDIS_SERVER} "
                                 "(install redis-server or set HERALD_REDIS_SERVER)")
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="redis-", dir=log_dir())
        fixed = self.port is not None
        for attempt in range(3):
            if not fixed:
                self.port = free_port()
            self.starts += 1
            self.log_path = os.path.join(self.dir, f"redis.{self.starts}.log")
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            live_procs.add(self.proc)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self.ping():
                    return self
                time.sleep(0.01)
            if self.proc.poll() is None:
                self.kill()
                raise AssertionError(f"redis-server not answering PING within {timeout:.0f}s"
                                     f"\n{self.log_tail()}")
            live_procs.discard(self.proc)
            text = self.log_tail()
            if "in use" in text.lower() and attempt < 2:
                if fixed:  # a restart right after a kill: the port frees within moments
                    time.sleep(0.1)
                continue
            raise AssertionError(f"redis-server exited at start ({self.proc.returncode})\n"
                                 f"command: {self.command()}\n{text}")
        raise AssertionError(f"redis-server could not bind port {self.port}")

    def restart(self, timeout=None):
        """Start again on the same port (kills it first if it still runs)."""
        if self.running():
            self.kill()
        return self.start(timeout)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL (a crash: clients see their connection reset) and reap."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def terminate(self, timeout=None):
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        self._reap(timeout)

    def _reap(self, timeout=None):
        if self.proc is None:
            return
        try:
            self.proc.wait(T(5) if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        live_procs.discard(self.proc)

    def pause(self):
        """SIGSTOP: the process keeps its sockets (connects still complete in the kernel's
        backlog) but answers nothing. Returns once the kernel reports it stopped."""
        self.proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: self._state() == "T", T(2), "redis-server to be stopped")

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: self._state() not in ("T", "t"), T(2), "redis-server to run")

    def _state(self):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None

    # -- talking to it ----------------------------------------------------------------
    def ping(self, timeout=0.5):
        try:
            return redis_call(self.port, "PING", password=self.password, user=self.user,
                              timeout=timeout) == "PONG"
        except (OSError, ConnectionError, RedisError):
            return False

    def call(self, *args, timeout=1.0):
        return redis_call(self.port, *args, password=self.password, user=self.user,
                          timeout=timeout)

    def url(self, password=None, user=None, db=None):
        """redis://[[user]:password@]127.0.0.1:port[/db]; password defaults to the
        server's own (pass "" for none)."""
        pw = self.password if password is None else password
        user = self.user if user is None else user
        auth = ""
        if pw:
            auth = f"{user or ''}:{pw}@"
        tail = f"/{db}" if db is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}{tail}"

    def log_text(self):
        parts = []
        for i in range(1, self.starts + 1):
            try:
                with open(os.path.join(self.dir, f"redis.{i}.log"), "rb") as f:
                    parts.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def log_tail(self, lines=30):
        text = self.log_text().splitlines()[-lines:]
        return f"--- last {len(text)} lines of redis-server's log ---\n" + "\n".join(text)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.terminate()
        return False


# --------------------------------------------------------------------------------------
# Readiness

def wait_status(hubs, status, timeout, what=None, interval=0.01):
    """Poll /ready on every hub until each answered status once; returns {hub: seconds
    after the call when it first did}. Fails naming the hubs that never did."""
    started = time.monotonic()
    seen = {}
    last = {}
    deadline = started + timeout
    while True:
        for hub in hubs:
            if hub in seen:
                continue
            got = ready_status(hub, timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            last[hub] = got
            if got == status:
                seen[hub] = time.monotonic() - started
        if len(seen) == len(hubs):
            return seen
        if time.monotonic() >= deadline:
            missing = [f"{h.instance_id} (last {last.get(h)})" for h in hubs if h not in seen]
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for /ready "
                                 f"{status} {('(' + what + ') ') if what else ''}on "
                                 f"{', '.join(missing)}")
        time.sleep(interval)


def wait_ready(hubs, timeout=None):
    return wait_status(hubs, 200, T(5) if timeout is None else timeout, "ready")


def log_lines(hub, *needles, level=None):
    """The hub's log lines that contain every needle (and are of level, if given)."""
    out = []
    for line in hub.log_text().splitlines():
        parts = line.split(None, 3)
        if level is not None and (len(parts) < 2 or parts[1] != level):
            continue
        if all(n in line for n in needles):
            out.append(line)
    return out


def kill_subscription(redis, hub):
    """CLIENT KILL of hub's subscribed link on redis (found by its CLIENT SETNAME)."""
    listing = redis.call("CLIENT", "LIST").decode()  # a bulk reply: always bytes
    for line in listing.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("name") == f"herald-{hub.instance_id}-sub":
            redis.call("CLIENT", "KILL", "ID", fields["id"])
            return
    raise AssertionError(f"no subscription of {hub.instance_id} in CLIENT LIST:\n{listing}")


@contextlib.contextmanager
def subscription_cut(redis, hub):
    """While the block runs, hub hears nothing: the server's user may not SUBSCRIBE (links
    already subscribed keep theirs), then hub's subscribed link is killed, and each of its
    reconnects is refused (NOPERM) until the block ends. (Killing the link over and over
    instead leaves windows in which it is back and hears the events.)"""
    user = redis.user or "default"
    redis.call("ACL", "SETUSER", user, "-subscribe")
    try:
        kill_subscription(redis, hub)
        yield
    finally:
        redis.call("ACL", "SETUSER", user, "+subscribe")


# --------------------------------------------------------------------------------------
# Many hubs on one Redis

class Cluster:
    """N hubs sharing one RedisServer and one fresh channel; use as a context manager.
    Entering starts them and waits until every /ready answers 200; leaving stops them
    (SIGTERM) and, when the block raised nothing, fails unless each exited 0."""

    def __init__(self, redis, n, url=None, channel=None, **options):
        self.redis = redis
        self.channel = channel or unique_channel("herald-test")
        self.url = url
        self.hubs = [Hub(redis_url=url or redis.url(), redis_channel=self.channel, **options)
                     for _ in range(n)]

    def __iter__(self):
        return iter(self.hubs)

    def __getitem__(self, i):
        return self.hubs[i]

    def __len__(self):
        return len(self.hubs)

    def start(self, ready_timeout=None):
        try:
            for hub in self.hubs:
                hub.start()
            wait_ready(self.hubs, ready_timeout)
        except BaseException:
            self.stop_all(check=False)
            raise
        return self

    def stop_all(self, check=True):
        failures = []
        for hub in self.hubs:
            if hub.proc is None:
                continue
            try:
                rc = hub.stop()
            except AssertionError as e:
                failures.append(str(e))
                continue
            if rc != 0:
                hub.print_tail()
                failures.append(f"hub {hub.instance_id} exited with status {rc} "
                                "(expected 0, after SIGTERM)")
        if check and failures:
            raise AssertionError("\n".join(failures))

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.stop_all(check=False)
            for hub in self.hubs:
                hub.print_tail()
            print(self.redis.log_tail(), file=sys.stderr)
            return False
        self.stop_all()
        return False


class AttemptRecorder:
    """Stands in for Redis on its port while it is down, to show from the outside how
    often each hub's links retry. Per connection it answers AUTH, SELECT and CLIENT SETNAME
    with +OK, reads
    the command that follows (SUBSCRIBE: a sub link; PING: a pub link), records (time,
    database, command, argument) and closes the connection, as a Redis going away would.
    Give each hub its own database number in its URL to tell the hubs apart."""

    def __init__(self, port):
        self.attempts = []  # (monotonic time, db, command, first argument)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            at = time.monotonic()
            db, word, arg = 0, "?", ""
            try:
                conn.settimeout(0.5)
                r = _Reader(conn)
                for _ in range(6):
                    cmd = r.reply()
                    if not isinstance(cmd, list) or not cmd:
                        break
                    word = cmd[0].decode("latin-1").upper()
                    arg = cmd[1].decode("latin-1") if len(cmd) > 1 else ""
                    if word in ("AUTH", "SELECT", "CLIENT"):
                        if word == "SELECT":
                            db = int(arg)
                        conn.sendall(b"+OK\r\n")
                        continue
                    break
            except (OSError, ConnectionError, ValueError):
                pass
            finally:
                conn.close()
            self.attempts.append((at, db, word, arg))

    def stop(self):
        self._stop = True
        self._thread.join(T(5))
        self._sock.close()

    def times(self, db, word):
        return [t for t, d, w, _ in self.attempts if d == db and w == word]

    def gaps(self, db, word):
        times = self.times(db, word)
        return [b - a for a, b in zip(times, times[1:])]


class RedisTestCase(HubTestCase):
    """A HubTestCase with one redis-server (on a free loopback port) for the whole class, as
    cls.redis."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = RedisServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.redis.terminate()
        super().tearDownClass()
