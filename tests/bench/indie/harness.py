"""tests/bench/indie/harness.py -- what tests/bench/indie/run and tests/bench/soak share: the
time budget, the processes they start (each recorded, stopped by its pid: SIGTERM, then SIGKILL
after 5 s; never by name), free 127.0.0.1 ports, building herald and the indie client, and
starting the servers (herald on its in-process broker; nginx + nchan from
tests/bench/peers/nchan.conf, as tests/bench/compare does). Nothing here measures anything.
"""

import atexit
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BENCH = os.path.join(ROOT, "tests", "bench")
OUT = os.path.join(BENCH, "out")
INDIE_SRC = os.path.join(BENCH, "indie", "indie.c")
NCHAN_SO = "/usr/lib/nginx/modules/ngx_nchan_module.so"


def say(prog, start, msg):
    print(f"{prog} [{time.monotonic() - start:4.0f}s]: {msg}", file=sys.stderr, flush=True)


class Budget:
    """The whole script stays within `seconds`: each phase's timeout is cut to what is left."""

    def __init__(self, seconds):
        self.start = time.monotonic()
        self.seconds = seconds

    def left(self):
        return self.seconds - (time.monotonic() - self.start)

    def cap(self, t):
        return max(1.0, min(t, self.left()))

    def fits(self, t):
        return self.left() >= t


class Procs:
    """Every process a script starts, stopped by pid, newest first, on any exit (a trap on
    SIGINT, SIGTERM and SIGHUP turns them into an exit that runs stop_all)."""

    def __init__(self):
        self.procs = []  # (Popen, log file, child pid to check after it, or None)
        atexit.register(self.stop_all)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    @staticmethod
    def _on_signal(sig, frame):
        raise SystemExit(128 + sig)

    def start(self, argv, log_path, **kw):
        log = open(log_path, "ab")
        p = subprocess.Popen(argv, stdout=kw.pop("stdout", log), stderr=log,
                             stdin=subprocess.DEVNULL, **kw)
        self.procs.append([p, log, None])
        return p

    def set_child(self, p, pid):
        """pid (an nginx worker) is p's child: if it outlives p, it is killed by this pid."""
        for rec in self.procs:
            if rec[0] is p:
                rec[2] = pid

    def stop(self, p, sig=signal.SIGTERM, wait=5.0):
        for i, rec in enumerate(self.procs):
            if rec[0] is p:
                self._stop(rec, sig, wait)
                del self.procs[i]
                return

    @staticmethod
    def _stop(rec, sig, wait):
        p, log, kid = rec
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            except ProcessLookupError:
                pass
        if kid:
            for _ in range(10):
                if not pid_alive(kid):
                    break
                time.sleep(0.1)
            if pid_alive(kid):
                try:
                    os.kill(kid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        log.close()

    def stop_all(self):
        while self.procs:
            rec = self.procs.pop()
            self._stop(rec, signal.SIGTERM, 5.0)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_ports(p, ports, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            return False
        if all(port_open(x) for x in ports):
            return True
        time.sleep(0.1)
    return False


def proc_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# --- building ---------------------------------------------------------------------------------

def build(build_dir, log_path, budget, need_herald=True):
    """herald (RelWithDebInfo when the build directory is new) and build_dir/indie/indie, -O2,
    libc only. Returns (herald path, indie path, warning or None); raises RuntimeError."""
    warning = None
    with open(log_path, "ab") as log:
        if need_herald:
            if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
                subprocess.run(["cmake", "-S", ROOT, "-B", build_dir,
                                "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], stdout=log, stderr=log,
                               check=True, timeout=budget.cap(120))
            subprocess.run(["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 1),
                            "--target", "herald"], stdout=log, stderr=log, check=True,
                           timeout=budget.cap(600))
            with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
                for line in f:
                    if line.startswith("CMAKE_BUILD_TYPE:"):
                        kind = line.split("=", 1)[1].strip()
                        if kind not in ("RelWithDebInfo", "Release"):
                            warning = f"{build_dir} is a '{kind}' build: Herald's numbers from it are not comparable"
        out_dir = os.path.join(build_dir, "indie")
        os.makedirs(out_dir, exist_ok=True)
        indie = os.path.join(out_dir, "indie")
        if not os.path.exists(indie) or os.path.getmtime(indie) < os.path.getmtime(INDIE_SRC):
            cc = os.environ.get("CC", "cc")
            subprocess.run([cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-o", indie, INDIE_SRC],
                           stdout=log, stderr=log, check=True, timeout=budget.cap(120))
        subprocess.run([indie, "selftest"], stdout=log, stderr=log, check=True, timeout=10)
    return os.path.join(build_dir, "hub", "herald"), indie, warning


def ensure_nchan(install, log_path, budget):
    """None when nginx with nchan is there (installing it through apt when allowed), else why not."""
    if shutil.which("nginx") and os.path.exists(NCHAN_SO):
        return None
    if not install:
        return f"nginx with libnginx-mod-nchan is not installed ({NCHAN_SO} missing)"
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "libnginx-mod-nchan"]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            return "libnginx-mod-nchan is missing and this is not root"
        cmd = ["sudo", "-n"] + cmd
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(log_path, "ab") as log:
        for attempt in (1, 2):
            try:
                r = subprocess.run(cmd, stdout=log, stderr=log, env=env, timeout=budget.cap(180))
            except subprocess.TimeoutExpired:
                break
            if r.returncode == 0:
                break
            if attempt == 1:  # the package lists may be stale or absent
                upd = cmd[:-5] + ["update", "-qq"] if cmd[0] == "sudo" else ["apt-get", "update", "-qq"]
                subprocess.run(upd, stdout=log, stderr=log, env=env, timeout=budget.cap(90))
    if shutil.which("nginx") and os.path.exists(NCHAN_SO):
        return None
    return f"apt-get install libnginx-mod-nchan failed (see {log_path})"


# --- servers ----------------------------------------------------------------------------------

class Server:
    def __init__(self, kind, pid, ws_port, ws_path, api_port, api_path, proto):
        self.kind, self.pid, self.proto = kind, pid, proto
        self.ws_port, self.ws_path = ws_port, ws_path
        self.api_port, self.api_path = api_port, api_path


def start_herald(procs, herald, log_path, threads=None, extra=()):
    """A herald on free ports; returns (Popen, Server), or raises RuntimeError."""
    for _ in range(3):
        ws, api = free_port(), free_port()
        if ws == api:
            continue
        argv = [herald, "--listen", f"127.0.0.1:{ws}", "--api-listen", f"127.0.0.1:{api}",
                "--drain-seconds", "1", "--log-level", "warn"]
        if threads:
            argv += ["--delivery-threads", str(threads)]
        p = procs.start(argv + list(extra), log_path)
        if wait_ports(p, [ws, api]):
            for _ in range(50):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{api}/ready", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            return p, Server("herald", p.pid, ws, "/ws", api, "/publish", "herald")
        procs.stop(p)
    raise RuntimeError(f"herald did not start: {tail(log_path)}")


def start_nchan(procs, tmp, log_path, copy_conf=None):
    """nginx + nchan, one worker, memory store, on a free port; Server.pid is the worker's (the
    process that does the work, as compare measures it)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if hard == resource.RLIM_INFINITY else hard
    with open(os.path.join(BENCH, "peers", "nchan.conf")) as f:
        template = f.read()
    for _ in range(3):
        port = free_port()
        ng = tempfile.mkdtemp(prefix="nginx-", dir=tmp)
        os.chmod(ng, 0o755)
        conf = (template.replace("@DIR@", ng).replace("@PORT@", str(port))
                .replace("@REDIS_PORT@", "0").replace("@CONNECTIONS@", str(nofile - 500))
                .replace("@NOFILE@", str(nofile)))
        with open(os.path.join(ng, "nginx.conf"), "w") as f:
            f.write(conf)
        if copy_conf:
            shutil.copy(os.path.join(ng, "nginx.conf"), copy_conf)
        p = procs.start(["nginx", "-p", ng, "-c", os.path.join(ng, "nginx.conf")], log_path)
        if wait_ports(p, [port]):
            worker = None
            for _ in range(50):
                try:
                    with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                        kids = f.read().split()
                    if kids:
                        worker = int(kids[0])
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            if worker:
                procs.set_child(p, worker)
                return p, Server("nchan", worker, port, "/sub", port, "/pub", "nchan")
        procs.stop(p)
    raise RuntimeError(f"nginx did not start: {tail(log_path)}")


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-n:])
    except OSError:
        return "(no log)"


# --- the indie client's output ----------------------------------------------------------------

def merge_hists(hists):
    """hists: lists of [top_us, count] (indie's "hist"); returns a sorted merged list."""
    acc = {}
    for h in hists:
        for top, count in h:
            acc[top] = acc.get(top, 0) + count
    return sorted(acc.items())


def percentile_ms(merged, pct):
    total = sum(c for _, c in merged)
    if not total:
        return None
    rank = max(1, int(pct / 100.0 * total + 0.999999))
    seen = 0
    for top, count in merged:
        seen += count
        if seen >= rank:
            return top / 1000.0
    return merged[-1][0] / 1000.0


def wait_files(paths, timeout, procs_alive):
    """Waits until every path exists; returns (contents list, None) or (None, why)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = []
        for path in paths:
            try:
                with open(path) as f:
                    got.append(f.read().strip())
            except OSError:
                got.append(None)
        for g in got:
            if g is not None and g.startswith("fail"):
                return None, g
        if all(g is not None for g in got):
            return got, None
        dead = [p for p in procs_alive if p.poll() is not None]
        if dead:
            return None, f"a client process ended early (status {dead[0].returncode})"
        time.sleep(0.1)
    return None, f"timed out after {timeout:.0f} s"
