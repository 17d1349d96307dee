"""hubproc.py -- the processes the tests start: Hub (one `herald` on free loopback ports),
HubTestCase (a TestCase that shows the hubs' logs when a test fails and may keep one hub for
its class), Proc and herald_sub (another program with its output collected), the directory
their logs go to, free ports, and the registry that kills every child left running at exit.
Standard library only."""

import atexit
import itertools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from httpapi import http_request
from util import HERALD_BIN, HERALD_SUB_BIN, HERALD_WEB_ROOT, WRAPPER, T

# --------------------------------------------------------------------------------------
# Log directory, ports, leftovers

_LOG_DIR = None


def log_dir():
    """The directory every hub's log (and other fixtures' files) goes to, made once per test
    process; removed at exit unless HERALD_KEEP_LOGS is set."""
    global _LOG_DIR
    if _LOG_DIR is None:
        _LOG_DIR = tempfile.mkdtemp(prefix="herald-it-")
        if os.environ.get("HERALD_KEEP_LOGS"):
            print(f"[harness] hub logs in {_LOG_DIR}", file=sys.stderr)
        else:
            atexit.register(shutil.rmtree, _LOG_DIR, True)
    return _LOG_DIR


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every child process (hub, herald-sub, redis-server) not reaped yet: killed at exit, so a
# failing test leaves nothing running. Add a Popen when it starts, discard it once reaped.
live_procs = set()


@atexit.register
def _kill_leftovers():
    for p in list(live_procs):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)  # a paused (SIGSTOP) redis-server, too
                p.kill()
                p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass


# --------------------------------------------------------------------------------------
# The hub process

class Hub:
    """One `herald` process on free loopback ports.

    Hub(send_queue_bytes=65536, drain_seconds=5) adds `--send-queue-bytes 65536
    --drain-seconds 5`; a value of True adds the bare flag, None leaves it out.
    start() returns once GET /health answers 200 and the WebSocket port accepts TCP.
    Use as a context manager: leaving the block stops the hub (SIGTERM) and, when the
    block raised nothing, fails unless the exit status is 0.
    """

    _ids = itertools.count(1)
    started = []  # every Hub ever started in this process, for failure reports

    _logs = itertools.count(1)

    def __init__(self, **options):
        self.instance_id = options.pop("instance_id", None) or f"test-{next(Hub._ids)}"
        self.options = options
        self.proc = None
        self.returncode = None
        self.port = None
        self.api_port = None
        self.log_path = None
        self.tail_printed = False

    # -- lifecycle -------------------------------------------------------------------
    def command(self):
        cmd = list(WRAPPER) + [
            HERALD_BIN,
            "--listen", f"127.0.0.1:{self.port}",
            "--api-listen", f"127.0.0.1:{self.api_port}",
            "--web-root", HERALD_WEB_ROOT,
            "--instance-id", self.instance_id,
            "--log-level", "debug",
        ]
        for name, value in self.options.items():
            if value is None or value is False:
                continue
            flag = "--" + name.replace("_", "-")
            if value is True:
                cmd.append(flag)
            else:
                cmd += [flag, str(value)]
        return cmd

    def start(self, timeout=None):
        if not os.access(HERALD_BIN, os.X_OK):
            raise AssertionError(f"hub binary not found or not executable: {HERALD_BIN} "
                                 "(set HERALD_BIN)")
        timeout = T(10) if timeout is None else timeout
        for attempt in range(3):
            self.port = free_port()
            self.api_port = free_port()
            while self.api_port == self.port:
                self.api_port = free_port()
            # one file per process, even for hubs given the same --instance-id
            self.log_path = os.path.join(log_dir(),
                                         f"{self.instance_id}.{next(Hub._logs)}.{attempt}.log")
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT)
            live_procs.add(self.proc)
            Hub.started.append(self)
            self.returncode = None
            if self._wait_up(timeout):
                return self
            # The process exited during start-up. A port taken between free_port() and
            # bind() is worth another try; anything else is a failure.
            if "in use" in self.log_tail(20).lower() and attempt < 2:
                continue
            raise AssertionError(
                f"hub exited during start-up with status {self.returncode}\n"
                f"command: {shlex.join(self.command())}\n{self.log_tail()}")
        raise AssertionError("unreachable")

    def _wait_up(self, timeout):
        deadline = time.monotonic() + timeout
        healthy = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                live_procs.discard(self.proc)
                return False
            if not healthy:
                try:
                    status, _, _ = http_request(self.api_port, "GET", "/health", timeout=1)
                    healthy = status == 200
                except OSError:
                    pass
            if healthy:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return True
                except OSError:
                    pass
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"hub not up (GET /health 200 and --listen accepting) within "
                             f"{timeout:.0f}s\n{self.log_tail()}")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout=None):
        """Wait for the process to exit; returns its status. Kills it and fails on timeout."""
        timeout = T(15) if timeout is None else timeout
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"hub did not exit within {timeout:.1f}s\n{self.log_tail()}")
        live_procs.discard(self.proc)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signal the hub (SIGTERM by default) and return its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            self.returncode = self.proc.returncode
            live_procs.discard(self.proc)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def log_tail(self, lines=60):
        text = self.log_text().splitlines()[-lines:]
        return f"--- last {len(text)} lines of {self.log_path} ---\n" + "\n".join(text)

    def print_tail(self):
        if not self.tail_printed:
            self.tail_printed = True
            print(f"\n[{self.instance_id}] exit status {self.returncode}\n{self.log_tail()}",
                  file=sys.stderr)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            if self.running():
                try:
                    self.stop()
                except AssertionError:
                    pass
            self.print_tail()
            return False
        if self.proc is not None:
            rc = self.stop()  # the status it already exited with, if it has
            if rc != 0:
                self.print_tail()
                raise AssertionError(f"hub {self.instance_id} exited with status {rc} "
                                     "(expected 0, after SIGTERM)")
        return False

    # -- convenience -----------------------------------------------------------------
    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}/ws"


class HubTestCase(unittest.TestCase):
    """A TestCase that prints the tail of the hubs' logs when a test fails.

    Set hub_options (a dict) on the class to get one hub for the whole class as
    cls.hub; tearDownClass stops it and fails unless it exits 0.
    """

    hub_options = None
    hub = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.hub = None
        if cls.hub_options is not None:
            cls.hub = Hub(**cls.hub_options).start()

    @classmethod
    def tearDownClass(cls):
        hub, cls.hub = cls.hub, None
        if hub is not None:
            rc = hub.stop()
            if rc != 0:
                hub.print_tail()
                raise AssertionError(f"class hub {hub.instance_id} exited with status {rc} "
                                     "on SIGTERM (expected 0)")
        super().tearDownClass()

    def run(self, result=None):
        first = len(Hub.started)
        bad_before = len(result.failures) + len(result.errors) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > bad_before:
            hubs = Hub.started[first:]
            if type(self).hub is not None and type(self).hub not in hubs:
                hubs.append(type(self).hub)
            for hub in hubs:
                hub.print_tail()
        return out


# --------------------------------------------------------------------------------------
# Other processes (herald-sub)

class Proc:
    """A child process with stdout and stderr collected line by line in threads."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        live_procs.add(self.p)
        self.out = []
        self.err = []
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.out),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.p.stderr, self.err),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, stream, lines):
        for raw in iter(stream.readline, b""):
            with self._cond:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait_lines(self, lines, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = predicate(lines)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}"
                                         f"\n{self.describe()}")
                if self.p.poll() is not None and all(not t.is_alive() for t in self._threads):
                    found = predicate(lines)
                    if found:
                        return found
                    raise AssertionError(f"process exited ({self.p.returncode}) before "
                                         f"{what}\n{self.describe()}")
                self._cond.wait(min(remaining, 0.1))

    def wait_stderr(self, substring, timeout=None):
        """Wait for a stderr line containing substring; returns it."""
        return self._wait_lines(self.err, lambda ls: next((l for l in ls if substring in l),
                                                          None),
                                T(5) if timeout is None else timeout, f"{substring!r} on stderr")

    def wait_stdout_lines(self, n, timeout=None):
        return self._wait_lines(self.out, lambda ls: list(ls) if len(ls) >= n else None,
                                T(5) if timeout is None else timeout, f"{n} stdout lines")

    def wait(self, timeout=None):
        """Wait for exit and for its output to be read; returns the exit status."""
        timeout = T(10) if timeout is None else timeout
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{os.path.basename(self.argv[0])} did not exit within "
                                 f"{timeout:.1f}s\n{self.describe()}")
        for t in self._threads:
            t.join(T(5))
        live_procs.discard(self.p)
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)
        live_procs.discard(self.p)

    def describe(self):
        with self._cond:
            return (f"command: {shlex.join(self.argv)}\nexit: {self.p.poll()}\n"
                    f"stdout:\n" + "\n".join(self.out[-20:]) +
                    "\nstderr:\n" + "\n".join(self.err[-20:]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        for t in self._threads:
            t.join(T(5))
        for stream in (self.p.stdout, self.p.stderr):
            stream.close()
        return False


def herald_sub(*args):
    """Start herald-sub with args."""
    if not os.access(HERALD_SUB_BIN, os.X_OK):
        raise AssertionError(f"herald-sub not found or not executable: {HERALD_SUB_BIN} "
                             "(set HERALD_SUB_BIN)")
    return Proc([HERALD_SUB_BIN] + [str(a) for a in args])
