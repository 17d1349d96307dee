"""harness.py -- the index of the integration tests' fixtures: it re-exports the public names
of the modules below, so `from harness import ...` works for every name the harness has had
(new code may import from the modules themselves).

Real parts only: every test starts real `herald` processes on free loopback ports, speaks
RFC 6455 WebSocket through a small raw-socket client and HTTP through http.client. Standard
library only (Python 3.11).

  util.py      where the binaries are (the HERALD_* environment), T(), wait_until,
               unique_channel
  httpapi.py   http_request, publish, publish_ok, publish_in_turn, Publisher, get,
               get_static, ready_status, stats, metrics and Metrics
  wsclient.py  WS (the WebSocket client) and its errors, open_many, recv_many,
               recv_many_while, assert_nothing_more, BackgroundReader, token_path, positionless,
               upgrade_request
  hubproc.py   Hub, HubTestCase, Proc, herald_sub, log_dir, free_port, and the killing of
               leftover processes at exit
  redislib.py  redis-server, hubs sharing it, readiness (import it directly)
  authlib.py   tokens, refusals, source addresses, memory, start-up errors (import it
               directly)
"""

from httpapi import (Metrics, Publisher, decode_body, get, get_static, http_request, metrics,
                     publish, publish_in_turn, publish_ok, ready_status, stats)
from hubproc import Hub, HubTestCase, Proc, free_port, herald_sub, log_dir
from util import (HERALD_BIN, HERALD_SUB_BIN, HERALD_WEB_ROOT, REPO_ROOT, SCALE, WRAPPER, T,
                  unique_channel, wait_until)
from wsclient import (positionless, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WS,
                      BackgroundReader, ConnectionClosed, HandshakeError, ProtocolError,
                      WSTimeout, assert_nothing_more, open_many, recv_many, recv_many_while,
                      token_path, upgrade_request)

__all__ = [
    # util
    "HERALD_BIN", "HERALD_SUB_BIN", "HERALD_WEB_ROOT", "REPO_ROOT", "SCALE", "WRAPPER", "T",
    "unique_channel", "wait_until",
    # httpapi
    "Metrics", "Publisher", "decode_body", "get", "get_static", "http_request", "metrics",
    "publish", "publish_in_turn", "publish_ok", "ready_status", "stats",
    # wsclient
    "OP_BINARY", "OP_CLOSE", "OP_CONT", "OP_PING", "OP_PONG", "OP_TEXT", "WS",
    "BackgroundReader", "ConnectionClosed", "HandshakeError", "ProtocolError", "WSTimeout",
    "assert_nothing_more", "open_many", "recv_many", "recv_many_while", "token_path",
    "upgrade_request",
    # hubproc
    "Hub", "HubTestCase", "Proc", "free_port", "herald_sub", "log_dir",
]
