"""Stopping `tagsmith serve` stops the server: a signal to the CLI's PID alone (what SLURM, systemd, Kubernetes
and `kill PID` send) ends the whole process tree, lets the request in flight finish, and frees the port."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

import httpx
import psutil
import pytest

from helpers import Server

pytestmark = pytest.mark.slow


def port_is_free(port: int) -> bool:
    """Nothing listens, and a new server can bind it (SO_REUSEADDR, as servers do: the closed connections of the
    last request may sit in TIME_WAIT)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return True
        except OSError:
            return False


def tree(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


@pytest.fixture
def shipped_server(tmp_path):
    """A real `tagsmith serve` on the packages tagsmith ships (an empty models folder): starts in seconds."""
    (tmp_path / "models").mkdir()
    server = Server(tmp_path / "models", tmp_path / "server.log", TAGSMITH_SHIPPED="1", TAGSMITH_THREADS="1")
    server.wait_ready()
    yield server
    server.stop()


def test_sigterm_to_the_cli_alone_stops_the_whole_server(shipped_server):
    server, signum = shipped_server, signal.SIGTERM
    processes = tree(server.process.pid)
    assert len(processes) >= 2, "expected the CLI and BentoML's server processes"
    texts = ["天下大势分久必合合久必分周末七国分争并入于秦及秦灭之后楚汉分争又并入于汉" * 6] * 64
    answer: dict = {}

    def post() -> None:
        try:
            answer["response"] = httpx.post(server.url + "/punctuate", json={"texts": texts}, timeout=60)
        except httpx.HTTPError as error:  # pragma: no cover - the failure is reported below
            answer["error"] = repr(error)

    request = threading.Thread(target=post)
    request.start()
    time.sleep(0.5)  # the request is in the server when the signal comes
    os.kill(server.process.pid, signum)
    request.join(timeout=60)
    assert "error" not in answer, f"the in-flight request failed: {answer['error']}\n{server.log_text()[-3000:]}"
    response = answer["response"]
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["results"]) == 64
    assert server.process.wait(timeout=45) == 0, server.log_text()[-3000:]
    gone, alive = psutil.wait_procs(processes, timeout=5)
    assert not alive, f"left running after {signal.Signals(signum).name}: {[p.cmdline() for p in alive]}"
    assert port_is_free(server.port)
    assert "stopping the server" in server.log_text()


# The supervisor itself (serving/supervise.py), on stand-in servers: a parent that starts a worker, as BentoML's
# arbiter does. These are the failure modes behind a server left serving on its port.

STAND_IN = """import os, signal, subprocess, sys, time
{parent_on_term}
worker = subprocess.Popen([sys.executable, "-c", "import signal, time; {worker_on_term}; time.sleep(600)"])
open({marker!r}, "w").write(str(worker.pid))
time.sleep(600)
"""


def supervise(script: str, marker, signum: int, grace: float) -> tuple[int, float]:
    """Run ``run_server`` in this (the main) thread, as the CLI does; ``signum`` comes once the worker runs."""
    from serving.supervise import run_server

    def signal_when_started() -> None:
        deadline = time.time() + 30
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(os.getpid(), signum)

    threading.Thread(target=signal_when_started, daemon=True).start()
    started = time.monotonic()
    code = run_server([sys.executable, "-c", script], dict(os.environ), grace=grace)
    return code, time.monotonic() - started


def assert_gone(pid: int) -> None:
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_a_worker_that_outlives_its_arbiter_is_killed(tmp_path, signum):
    """The arbiter exits on the forwarded SIGTERM but its worker ignores it: the worker must not keep serving."""
    marker = tmp_path / "worker.pid"
    script = STAND_IN.format(parent_on_term="signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))",
                             worker_on_term="signal.signal(signal.SIGTERM, signal.SIG_IGN)", marker=str(marker))
    code, seconds = supervise(script, marker, signum, grace=1.0)
    assert code == 1  # had to be killed
    assert seconds < 20
    assert_gone(int(marker.read_text()))


def test_a_server_that_stops_cleanly_exits_0(tmp_path):
    marker = tmp_path / "worker.pid"
    script = STAND_IN.format(parent_on_term="signal.signal(signal.SIGTERM, lambda *a: (worker.terminate(), worker.wait(), sys.exit(0)))",
                             worker_on_term="pass", marker=str(marker))
    code, _ = supervise(script, marker, signal.SIGTERM, grace=10.0)
    assert code == 0
    assert_gone(int(marker.read_text()))


def test_a_server_that_will_not_stop_is_killed_after_the_timeout(tmp_path):
    """Arbiter and worker both ignore SIGTERM: after the grace period the whole group is killed."""
    marker = tmp_path / "worker.pid"
    script = STAND_IN.format(parent_on_term="signal.signal(signal.SIGTERM, signal.SIG_IGN)",
                             worker_on_term="signal.signal(signal.SIGTERM, signal.SIG_IGN)", marker=str(marker))
    code, seconds = supervise(script, marker, signal.SIGTERM, grace=1.0)
    assert code == 1
    assert seconds < 20
    assert_gone(int(marker.read_text()))
