"""util.py -- what every other test module leans on: where the programs under test are,
the timeout scale, bounded polling and fresh channel names. Standard library only.

Environment:
  HERALD_BIN        the hub binary             (default: <repo>/build/hub/herald)
  HERALD_SUB_BIN    the herald-sub binary      (default: <repo>/build/clients/herald-sub)
  HERALD_WEB_ROOT   the dashboard directory    (default: <repo>/web)
  HERALD_WRAPPER    a command prefix for the hub, e.g.
                    "valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite";
                    when set every timeout is multiplied by 5
  HERALD_KEEP_LOGS  when set, the hubs' log directory is kept (its path is printed; see
                    hubproc.log_dir)

Every wait is bounded: helpers take a timeout, poll with a deadline and fail with an
AssertionError that says what was awaited.
"""

import itertools
import os
import shlex
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HERALD_BIN = os.environ.get("HERALD_BIN") or os.path.join(REPO_ROOT, "build", "hub", "herald")
HERALD_SUB_BIN = os.environ.get("HERALD_SUB_BIN") or os.path.join(
    REPO_ROOT, "build", "clients", "herald-sub")
HERALD_WEB_ROOT = os.environ.get("HERALD_WEB_ROOT") or os.path.join(REPO_ROOT, "web")
WRAPPER = shlex.split(os.environ.get("HERALD_WRAPPER", ""))
SCALE = 5.0 if WRAPPER else 1.0


def T(seconds):
    """A timeout, stretched when the hub runs under a wrapper such as valgrind."""
    return seconds * SCALE


def wait_until(predicate, timeout, what="condition", interval=0.02):
    """Poll predicate() until it returns a truthy value (returned) or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


_channel_counter = itertools.count(1)


def unique_channel(prefix="ch"):
    """A fresh valid channel name, so tests sharing a hub never see each other's events."""
    return f"{prefix}-{os.getpid()}-{next(_channel_counter)}"
