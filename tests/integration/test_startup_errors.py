"""test_startup_errors.py -- a bad value of a protection option stops start-up: exit status
2 and one line on stderr naming the option (SPEC.md, `herald` options). The good value next
to each bad one starts a hub, so each refusal is about the value, not the option."""

import os
import unittest

from harness import Hub, HubTestCase, WRAPPER
from authlib import run_herald, write_file

SHORT_SECRET = write_file("startup.short.secret", "s" * 31 + "\n")   # 31 bytes + newline
SECRET_32 = write_file("startup.secret32", "S" * 32)
EMPTY_SECRET = write_file("startup.empty.secret", "")
SHORT_KEYS = write_file("startup.short.keys", "# keys\nk-long-enough-0123456789\nshort-key\n")
NO_KEYS = write_file("startup.no.keys", "# only a comment\n\n")
KEYS_16 = write_file("startup.keys16", "0123456789abcdef\n")
# a 1,200-byte line: read in 1,023-byte pieces, its tail (177 bytes) would be a second "key"
LONG_LINE_KEYS = write_file("startup.long.keys",
                            "0123456789abcdef\n" + "L" * 1200 + "\n" + "fedcba9876543210\n")
EXACT_LINE_KEYS = write_file("startup.exact.keys", "E" * 1023 + "\n" + "0123456789abcdef")
MISSING = os.path.join(os.path.dirname(SHORT_SECRET), "no-such-file")


class StartupErrorTest(HubTestCase):
    def assertStartupError(self, args, option, env=None):
        rc, out, err = run_herald(args, env=env)
        where = f"herald {' '.join(map(str, args))} {env or ''}"
        self.assertIsNotNone(rc, f"{where}: started instead of refusing the value\n{err}")
        lines = err.strip("\n").split("\n")
        if WRAPPER:  # valgrind and the like add their own lines
            lines = [l for l in lines if l.startswith("herald:")]
        self.assertEqual(rc, 2, f"{where}: exit status {rc}, stderr {err!r}")
        self.assertEqual(len(lines), 1, f"{where}: not one line on stderr: {err!r}")
        self.assertIn(option, lines[0], f"{where}: the message does not name {option}")
        self.assertEqual(out, "", f"{where}: printed on stdout: {out!r}")
        return lines[0]

    def test_jwt_secret_file_missing(self):
        line = self.assertStartupError(["--jwt-secret-file", MISSING], "--jwt-secret-file")
        self.assertIn(MISSING, line)

    def test_jwt_secret_shorter_than_32_bytes(self):
        for path in (SHORT_SECRET, EMPTY_SECRET):
            with self.subTest(path=os.path.basename(path)):
                line = self.assertStartupError(["--jwt-secret-file", path], "--jwt-secret-file")
                self.assertIn("32", line)
        with Hub(jwt_secret_file=SECRET_32):
            pass

    def test_jwt_secret_from_the_environment(self):
        self.assertStartupError([], "--jwt-secret-file",
                                env={"HERALD_JWT_SECRET_FILE": SHORT_SECRET})

    def test_trusted_proxies_nonsense(self):
        for value in ("nonsense", "127.0.0.1/33", "127.0.0.1,nonsense", "::1/129", "1.2.3"):
            with self.subTest(value=value):
                self.assertStartupError(["--trusted-proxies", value], "--trusted-proxies")
        with Hub(trusted_proxies="127.0.0.1,::ffff:127.0.0.1,192.0.2.0/24,::1"):
            pass

    def test_allowed_origins_foo(self):
        for value in ("foo", "http://ok.example,foo", "http://ok.example/"):
            with self.subTest(value=value):
                self.assertStartupError(["--allowed-origins", value], "--allowed-origins")
        with Hub(allowed_origins="http://ok.example,https://ok.example:8443"):
            pass

    def test_redis_url_not_redis(self):
        for value in ("http://x", "x", "redis:/x"):
            with self.subTest(value=value):
                self.assertStartupError(["--redis-url", value], "--redis-url")

    def test_api_key_too_short(self):
        self.assertStartupError(["--api-key", "short-key"], "--api-key")
        self.assertStartupError(["--api-key", "0123456789abcde"], "--api-key")  # 15 bytes
        with Hub(api_key="0123456789abcdef"):  # 16 bytes
            pass

    def test_api_keys_file_bad(self):
        self.assertStartupError(["--api-keys-file", SHORT_KEYS], "--api-keys-file")
        self.assertStartupError(["--api-keys-file", NO_KEYS], "--api-keys-file")
        self.assertStartupError(["--api-keys-file", MISSING], "--api-keys-file")
        with Hub(api_keys_file=KEYS_16):
            pass

    def test_api_keys_file_line_too_long_is_refused_naming_the_line(self):
        line = self.assertStartupError(["--api-keys-file", LONG_LINE_KEYS], "--api-keys-file")
        self.assertIn("line 2", line)
        self.assertIn("longer than", line)
        # 1,023 bytes still fit, and a last line without its newline is read whole
        with Hub(api_keys_file=EXACT_LINE_KEYS) as hub:
            from harness import publish
            for key, want in (("E" * 1023, 202), ("0123456789abcdef", 202), ("E" * 1022, 401)):
                status, _, _ = publish(hub, {"channel": "k", "data": 1},
                                       headers={"Authorization": "Bearer " + key})
                self.assertEqual(status, want, f"key of {len(key)} bytes")

    def test_send_queue_smaller_than_the_largest_frame(self):
        """One event of --max-message-bytes would cut every subscriber of its channel."""
        line = self.assertStartupError(["--max-message-bytes", "65536", "--send-queue-bytes",
                                        "65536"], "--send-queue-bytes")
        self.assertIn("--max-message-bytes", line)
        self.assertStartupError(["--max-message-bytes", "1048576"], "--send-queue-bytes",
                                env={"HERALD_SEND_QUEUE_BYTES": "1000000"})
        with Hub(max_message_bytes=65536, send_queue_bytes=65536 + 256):
            pass

    def test_limits_not_numbers(self):
        for option in ("--max-connections", "--max-connections-per-ip", "--publish-rate",
                       "--send-queue-bytes"):
            with self.subTest(option=option):
                self.assertStartupError([option, "-1"], option)
                self.assertStartupError([option, "lots"], option)
        self.assertStartupError(["--send-queue-bytes", "1023"], "--send-queue-bytes")
        for option in ("--max-channels", "--ipv6-prefix"):
            with self.subTest(option=option):
                self.assertStartupError([option, "lots"], option)
        self.assertStartupError(["--ipv6-prefix", "16"], "--ipv6-prefix")
        self.assertStartupError(["--ipv6-prefix", "129"], "--ipv6-prefix")


if __name__ == "__main__":
    unittest.main()
