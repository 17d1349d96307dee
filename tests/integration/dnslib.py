"""dnslib.py -- a DNS server on a free 127.0.0.1 UDP port for tests of name resolution: it
answers every A query with one address, or (silent) never answers, like a dead resolver.
resolv_conf() writes a resolv.conf that points at it (the hub's --resolv-conf)."""

import os
import socket
import struct
import threading

from hubproc import log_dir


class FakeDNS:
    def __init__(self, answer="127.0.0.1", silent=False):
        self.answer, self.silent = answer, silent
        self.queries = []  # names asked, in order
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self.sock.close()
        self._thread.join(2)

    def resolv_conf(self):
        path = os.path.join(log_dir(), f"resolv.{self.port}.conf")
        with open(path, "w") as f:
            f.write(f"nameserver 127.0.0.1:{self.port}\noptions timeout:1 attempts:1\n")
        return path

    @staticmethod
    def _name(packet):
        labels, i = [], 12
        while i < len(packet) and packet[i]:
            n = packet[i]
            labels.append(packet[i + 1:i + 1 + n].decode(errors="replace"))
            i += 1 + n
        return ".".join(labels), i + 1

    def _run(self):
        while not self._stop:
            try:
                packet, peer = self.sock.recvfrom(512)
            except OSError:
                return
            if len(packet) < 12:
                continue
            name, end = self._name(packet)
            qtype, = struct.unpack("!H", packet[end:end + 2])
            self.queries.append(name)
            if self.silent:
                continue
            question = packet[12:end + 4]
            if qtype == 1:  # A: one answer
                answers = 1
                rr = (b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) +
                      socket.inet_aton(self.answer))
            else:  # AAAA and the rest: no data
                answers, rr = 0, b""
            header = packet[:2] + struct.pack("!HHHHH", 0x8180, 1, answers, 0, 0)
            try:
                self.sock.sendto(header + question + rr, peer)
            except OSError:
                return
