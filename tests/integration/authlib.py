"""authlib.py -- helpers for the auth, limits and hostile-reader tests, on top of the modules
harness.py indexes (wsclient, httpapi, hubproc, util):

  - tokens: herald-token (the real minting program) and a stdlib HS256 encoder for the
    forged ones a real minter never makes (alg none, wrong signature, tampered claims);
  - the names these tests connect with (connect, open_ws, token_path: wsclient's, with a
    token in the query or as Authorization: Bearer, from a chosen loopback source address
    such as 127.0.0.2, with chosen headers);
  - the refusals SPEC.md names: a handshake refused with an HTTP status, and a handshake that
    completes and closes with 1008 before any welcome;
  - the hub's resident memory from /proc/PID/status;
  - running herald for a start-up error.

Environment: HERALD_TOKEN_BIN, the herald-token binary (default:
<repo>/build/clients/herald-token), besides util.py's.
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import time

from httpapi import decode_body, http_request, publish, publish_ok
from hubproc import free_port, log_dir
from util import HERALD_BIN, HERALD_WEB_ROOT, REPO_ROOT, WRAPPER, T, unique_channel
import wsclient
from wsclient import WS, ConnectionClosed, HandshakeError, WSTimeout, upgrade_request

HERALD_TOKEN_BIN = os.environ.get("HERALD_TOKEN_BIN") or os.path.join(
    REPO_ROOT, "build", "clients", "herald-token")


# --------------------------------------------------------------------------------------
# Secrets and tokens

def write_file(name, content, mode=0o600):
    """Writes content (str or bytes) to a new file in the tests' log directory."""
    path = os.path.join(log_dir(), name)
    data = content.encode() if isinstance(content, str) else content
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def new_secret(name, length=48):
    """A random printable secret of length bytes in a new file: (path, secret bytes)."""
    secret = base64.urlsafe_b64encode(os.urandom(length))[:length]
    return write_file(name, secret + b"\n"), secret


def mint(secret_file, channels, ttl=None, sub=None):
    """A token from herald-token (the program operators use)."""
    if not os.access(HERALD_TOKEN_BIN, os.X_OK):
        raise AssertionError(f"herald-token not found or not executable: {HERALD_TOKEN_BIN} "
                             "(set HERALD_TOKEN_BIN)")
    argv = [HERALD_TOKEN_BIN, "--secret-file", secret_file]
    if sub is not None:
        argv += ["--sub", sub]
    if ttl is not None:
        argv += ["--ttl", str(ttl)]
    argv += list(channels)
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=T(10))
    if r.returncode != 0:
        raise AssertionError(f"herald-token {argv[3:]} exited {r.returncode}: "
                             f"{r.stderr.decode(errors='replace')}")
    token = r.stdout.decode().strip()
    if token.count(".") != 2:
        raise AssertionError(f"herald-token printed {token!r}, not a JWT")
    return token


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(header, claims, secret=None, signature=None):
    """header.claims.signature from dicts: signed with HMAC-SHA256 over secret, or with the
    given raw signature (bytes; b"" for an unsigned token)."""
    signing = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64url(json.dumps(claims, separators=(",", ":")).encode())
    if signature is None:
        signature = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64url(signature)


def claims_of(token):
    """The claims of a token, decoded without checking anything."""
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


# --------------------------------------------------------------------------------------
# Connecting with a chosen source address and headers

# The tests' names for wsclient's: WS.connect and WS.open take source (a local address such
# as "127.0.0.2"), headers, and (open) a token in the query or as bearer; a handshake
# answered with another status than 101 raises HandshakeError (.status, .headers, .body).
connect = WS.connect
open_ws = WS.open
token_path = wsclient.token_path


def expect_policy_close(test, ws, reason, timeout=None):
    """The hub completed the handshake (ws exists) and must now close with 1008 and reason
    before sending anything else: no welcome, no event."""
    timeout = T(5) if timeout is None else timeout
    try:
        try:
            msg = ws.recv_message(timeout)
        except ConnectionClosed as c:
            test.assertEqual((c.kind, c.code, c.reason), ("close", 1008, reason),
                             "the connection did not end with the close SPEC.md names")
            return
        except WSTimeout:
            test.fail(f"no close {1008} {reason!r} within {timeout:.1f}s")
        test.fail(f"the hub sent {msg!r} before closing (expected close 1008 {reason!r} "
                  "before any welcome)")
    finally:
        ws.abort()


def refused_upgrade(target, path="/ws", headers=None, source=None, timeout=None):
    """Attempts an upgrade that must be refused with an HTTP status: returns the
    HandshakeError (status, headers, body parsed as JSON when it is JSON)."""
    try:
        ws = connect(target, path=path, headers=headers, source=source, timeout=timeout)
    except HandshakeError as e:
        e.body = decode_body({"Content-Type": e.headers.get("content-type", "")}, e.body)
        return e
    ws.abort()
    raise AssertionError(f"the upgrade from {source or '127.0.0.1'} with {headers or {}} was "
                         "accepted (101), expected a refusal with an HTTP status")


# --------------------------------------------------------------------------------------
# HTTP from a chosen source address

# The tests' name for httpapi.http_request, which takes source= (a local address).
http_from = http_request


def publish_as(hub, channel, data, key=None, source=None, headers=None):
    """POST /publish of one event with Authorization: Bearer key (when given), from source.
    Returns (status, headers, body)."""
    h = {} if key is None else {"Authorization": "Bearer " + key}
    h.update(headers or {})
    return publish(hub, {"channel": channel, "data": data}, headers=h, source=source)


# --------------------------------------------------------------------------------------
# The hub's memory

def proc_status(pid):
    """/proc/PID/status as {name: value string}."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            out[name] = value.strip()
    return out


def rss_kib(pid):
    """(VmRSS, VmHWM) of pid in KiB."""
    st = proc_status(pid)
    return int(st["VmRSS"].split()[0]), int(st["VmHWM"].split()[0])


def hub_is_instrumented():
    """True when the hub runs under a wrapper (valgrind) or is a sanitizer build, whose
    memory use (shadow memory, quarantine of freed blocks) says nothing about the hub's."""
    if WRAPPER:
        return True
    try:
        with open(HERALD_BIN, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"__tsan_init" in data or b"__msan_init" in data


# --------------------------------------------------------------------------------------
# Start-up errors

def run_herald(args, timeout=None, env=None):
    """Runs herald with args (on free loopback ports unless args set them) and returns
    (exit status, stdout, stderr). The environment is this one without HERALD_* variables,
    plus env. A hub that starts instead of exiting is killed, and its status is reported
    as None."""
    timeout = T(10) if timeout is None else timeout
    argv = list(WRAPPER) + [HERALD_BIN]
    if "--listen" not in args:
        argv += ["--listen", f"127.0.0.1:{free_port()}"]
    if "--api-listen" not in args:
        argv += ["--api-listen", f"127.0.0.1:{free_port()}"]
    if "--web-root" not in args:
        argv += ["--web-root", HERALD_WEB_ROOT]
    argv += [str(a) for a in args]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    child_env.update(env or {})
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=child_env)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=5)
        return None, out.decode(errors="replace"), err.decode(errors="replace")


# --------------------------------------------------------------------------------------
# A client that must keep receiving while others are refused

class Bystander:
    """A connected subscriber of its own channel (opened with open_ws's arguments), to show
    that refusing other clients leaves it served: check() publishes one event and fails
    unless it arrives, with nothing before it."""

    def __init__(self, hub, prefix="bystander", **open_kw):
        self.hub = hub
        self.channel = unique_channel(prefix)
        self.ws = open_ws(hub, [self.channel], **open_kw)
        self.seq = 0

    def check(self, publish_key=None):
        self.seq += 1
        marker = f"still-served-{self.seq}"
        if publish_key is None:
            publish_ok(self.hub, self.channel, marker)
        else:
            status, _, body = publish_as(self.hub, self.channel, marker, key=publish_key)
            if status != 202:
                raise AssertionError(f"bystander publish answered {status} {body!r}")
        msg = self.ws.recv_json(T(5))
        if msg.get("type") != "event" or msg.get("data") != marker:
            raise AssertionError(f"the bystander got {msg!r}, expected the event {marker!r}")
        return msg

    def close(self):
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def simultaneous_upgrades(hub, n, path="/ws", timeout=None):
    """Opens n TCP connections, then sends the n upgrade requests back to back, so the
    hub's delivery planes see them at once. Returns the n HTTP statuses (None when the
    connection ended without one); every socket is closed on return."""
    timeout = T(5) if timeout is None else timeout
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", hub.port), timeout=timeout))
        reqs = [upgrade_request("127.0.0.1", hub.port, path)[1] for _ in socks]
        for s, r in zip(socks, reqs):
            s.sendall(r)
        statuses = []
        deadline = time.monotonic() + timeout
        for s in socks:
            data = b""
            while b"\r\n" not in data:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = s.recv(4096)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            parts = data.split(b" ", 2)
            statuses.append(int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None)
        return statuses
    finally:
        for s in socks:
            s.close()
