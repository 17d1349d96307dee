"""httpapi.py -- the hub's HTTP API from a test: one request (http_request, from any loopback
source address), publishing (publish, publish_ok, Publisher over one keep-alive connection,
publish_in_turn over several hubs), GET helpers for the API and dashboard ports, /ready's
status, /stats, and /metrics parsed into Metrics. Standard library only (http.client)."""

import http.client
import json
import re

from util import T


def decode_body(headers, data):
    """data parsed as JSON when headers say it is JSON (and it parses), else as it is."""
    ctype = (headers.get("Content-Type") or "").lower()
    if "json" in ctype:
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data


def http_request(port, method, path, body=None, headers=None, timeout=None, conn=None,
                 source=None):
    """One HTTP request to 127.0.0.1:port. Returns (status, headers, body) where body is
    parsed JSON when the answer says it is JSON, else raw bytes. With conn (an
    http.client.HTTPConnection), the request goes over that keep-alive connection; else
    over a new one, from the local address source when given (e.g. "127.0.0.2")."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port,
                                          timeout=T(10) if timeout is None else timeout,
                                          source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, decode_body(resp.headers, data)
    finally:
        if own:
            conn.close()


def _body_bytes(body):
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def publish(hub, body, content_type="application/json", headers=None, conn=None,
            path="/publish", source=None, timeout=None):
    """POST body (an object/list is JSON-encoded; str/bytes are sent as-is) to the hub's
    /publish (hub: anything with an .api_port). content_type=None sends no Content-Type.
    Returns (status, headers, body)."""
    h = dict(headers or {})
    if content_type is not None:
        h["Content-Type"] = content_type
    return http_request(hub.api_port, "POST", path, body=_body_bytes(body), headers=h,
                        timeout=timeout,
                        conn=conn, source=source)


def publish_ok(hub, channel, data, event=None, conn=None):
    """Publish one event that must be accepted; returns its id."""
    body = {"channel": channel, "data": data}
    if event is not None:
        body["event"] = event
    status, _, answer = publish(hub, body, conn=conn)
    if status != 202 or not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
        raise AssertionError(f"publish to {channel!r} answered {status} {answer!r}, "
                             "expected 202 {\"id\": ...}")
    return answer["id"]


def get(hub, path, headers=None):
    """GET path on the hub's API port. Returns (status, headers, body)."""
    return http_request(hub.api_port, "GET", path, headers=headers)


def get_static(hub, path, headers=None):
    """GET path on the hub's --listen port (dashboard files)."""
    return http_request(hub.port, "GET", path, headers=headers)


def ready_status(hub, timeout=1.0):
    """GET /ready's status, or None when the API does not answer in time."""
    try:
        return http_request(hub.api_port, "GET", "/ready", timeout=timeout)[0]
    except (OSError, http.client.HTTPException):
        return None


class Publisher:
    """Publishes over one keep-alive HTTP connection."""

    def __init__(self, hub, timeout=None):
        self.hub = hub
        self.conn = http.client.HTTPConnection("127.0.0.1", hub.api_port,
                                               timeout=T(10) if timeout is None else timeout)

    def publish(self, body, content_type="application/json"):
        return publish(self.hub, body, content_type=content_type, conn=self.conn)

    def publish_ok(self, channel, data, event=None):
        return publish_ok(self.hub, channel, data, event=event, conn=self.conn)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def publish_in_turn(hubs, channel, datas):
    """Publishes an event of channel for each of datas, the i-th through hubs[i % len(hubs)]
    over one keep-alive connection a hub; each must be accepted. Returns the ids in order."""
    pubs = [Publisher(hub) for hub in hubs]
    try:
        return [pubs[i % len(pubs)].publish_ok(channel, data) for i, data in enumerate(datas)]
    finally:
        for pub in pubs:
            pub.close()


def stats(hub):
    status, _, body = get(hub, "/stats")
    if status != 200 or not isinstance(body, dict):
        raise AssertionError(f"GET /stats answered {status} {body!r}")
    return body


class Metrics:
    """Samples of a Prometheus text exposition: name -> [(labels dict, value)]."""

    _line = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$')
    _label = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3]
                continue
            m = self._line.match(line)
            if not m:
                raise AssertionError(f"not a Prometheus sample line: {raw!r}")
            labels = {}
            if m.group(3):
                rest = m.group(3)
                pos = 0
                while pos < len(rest):
                    lm = self._label.match(rest, pos)
                    if not lm:
                        raise AssertionError(f"bad labels in Prometheus line: {raw!r}")
                    labels[lm.group(1)] = lm.group(2)
                    pos = lm.end()
            value = float(m.group(4))
            self.samples.setdefault(m.group(1), []).append((labels, value))

    def get(self, name, default=None, **labels):
        """The value of the sample of name whose labels include labels, or default."""
        for sample_labels, value in self.samples.get(name, []):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
        return default

    def __contains__(self, name):
        return name in self.samples


def metrics(hub):
    status, headers, body = get(hub, "/metrics")
    if status != 200:
        raise AssertionError(f"GET /metrics answered {status} {body!r}")
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    else:
        raise AssertionError(f"GET /metrics is not text: {headers.get('Content-Type')}")
    return Metrics(body)
