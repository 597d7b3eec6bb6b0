"""Run the BentoML server as a child process group and stop all of it when this process is told to stop.

``tagsmith serve`` used to replace itself by ``bentoml serve`` (``os.execve``). BentoML's arbiter then owned the
signals: a SIGTERM that reached it at the wrong moment, or an arbiter that died, could leave a worker serving on
the port with no parent. Here the CLI stays the parent: the server runs in its own process group, SIGTERM,
SIGINT and SIGHUP to the CLI are passed on to BentoML (which stops accepting, lets in-flight requests finish and
stops its workers), and after ``grace`` seconds whatever is left of the group is killed. When the server exits by
itself, stragglers of its group are killed too. The port is free when this function returns.

Torch-free: stdlib only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable, Sequence

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: seconds a stopping server gets to finish in-flight requests before its process group is killed
DEFAULT_GRACE_S = 30.0


def _kill_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def _group_alive(pgid: int) -> bool:
    return _kill_group(pgid, 0)


def _wait_group(pgid: int, deadline: float) -> bool:
    """Wait until no process of the group is left (True) or the deadline passes (False)."""
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.1)
    return not _group_alive(pgid)


def run_server(command: Sequence[str], env: dict, grace: float = DEFAULT_GRACE_S,
               say: Callable[[str], None] = lambda line: None) -> int:
    """Start ``command`` in a new process group, supervise it, and return the exit code for the CLI:
    0 after a requested, graceful stop; the server's own code when it stopped by itself; 1 when the group had to
    be killed."""
    process = subprocess.Popen(list(command), env=env, start_new_session=True)
    pgid = process.pid
    requested: list[int] = []

    def on_signal(signum, _frame) -> None:
        if not requested:
            say(f"received {signal.Signals(signum).name}: stopping the server (in-flight requests finish; "
                f"killed after {grace:g} s)")
            # BentoML's arbiter handles SIGTERM as a graceful stop; a second signal repeats it
        requested.append(signum)
        _kill_group(pgid, signal.SIGTERM) if len(requested) > 1 else process.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        while process.poll() is None and not requested:
            try:
                process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + (grace if requested else 5.0)
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        # the arbiter has stopped (or is overdue): none of its workers may outlive it; they get what is left of
        # the grace period (at least a second) to finish
        stopped = process.poll() is not None and _wait_group(pgid, max(deadline, time.monotonic() + 1.0))
        if not stopped:
            say(f"the server did not stop within {grace:g} s: killing its processes" if requested
                else "the server left processes behind: killing them")
            _kill_group(pgid, signal.SIGKILL)
            process.wait()  # reap the leader: a zombie still counts as a member of its group
            _wait_group(pgid, time.monotonic() + 10.0)
            return 1
        return 0 if requested else process.returncode
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
