"""test_heartbeat.py -- keepalive follows --heartbeat: the hub pings an idle connection every
heartbeat seconds and drops a peer that stays silent for twice that, while a peer that
answers its pings stays connected and keeps receiving."""

import time
import unittest

from harness import (OP_PONG, T, ConnectionClosed, HubTestCase, WS, WSTimeout, publish,
                     unique_channel)


class SilentWS(WS):
    """A client whose socket reads but never answers pings (a dead browser tab behind a
    proxy that still holds the TCP connection)."""

    def send_frame(self, opcode, payload=b"", fin=True, **kw):
        if opcode == OP_PONG:
            return None
        return super().send_frame(opcode, payload, fin, **kw)


class HeartbeatTest(HubTestCase):
    hub_options = {"heartbeat": 1}

    def test_welcome_announces_the_heartbeat(self):
        ws = WS.connect(self.hub, "/ws")
        self.assertEqual(ws.recv_json()["heartbeat"], 1)
        ws.close()

    def test_live_peer_is_pinged_and_kept_silent_peer_is_dropped(self):
        ch = unique_channel()
        live = WS.connect(self.hub, f"/ws?channels={ch}")
        silent = SilentWS.connect(self.hub, f"/ws?channels={ch}")
        for ws in (live, silent):
            ws.recv_json()  # welcome
            ws.recv_json()  # subscribed
        started = time.monotonic()
        closed_after = None
        deadline = started + T(8)
        while time.monotonic() < deadline and closed_after is None:
            try:
                live.recv_json(timeout=0.2)
            except WSTimeout:
                pass
            try:
                silent.recv_json(timeout=0.2)
            except WSTimeout:
                pass
            except ConnectionClosed:
                closed_after = time.monotonic() - started
        self.assertIsNotNone(closed_after, "the silent peer was never dropped")
        # pinged after 1 s idle, dropped after 2 s without a valid frame: allow slack
        self.assertGreaterEqual(closed_after, 1.5, "dropped before two heartbeats")
        self.assertLess(closed_after, T(6), "dropped too late")
        # the live peer, answering, outlives several heartbeats and is pinged each time
        until = time.monotonic() + T(2.5)
        while time.monotonic() < until:
            try:
                live.recv_json(timeout=0.2)
            except WSTimeout:
                pass
        self.assertGreaterEqual(live.pings_received, 3, "the live peer was not pinged")
        # the live peer is still served
        status, _, _ = publish(self.hub, {"channel": ch, "data": "still-here"})
        self.assertEqual(status, 202)
        self.assertEqual(live.recv_json(timeout=T(2))["data"], "still-here")
        live.close()


if __name__ == "__main__":
    unittest.main()
