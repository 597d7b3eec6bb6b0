"""The server under hostile and heavy use: schemathesis fuzzes every operation of its OpenAPI document (no 5xx
allowed), and 32 concurrent clients load it for 10 s (no errors, memory flat). The full-size versions (60 s of
load, RSS after 10,000 requests vs after 1,000) are in bench/serving_bench.py."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from conftest import HELD_OUT, VERSE
from helpers import quiet_env

pytestmark = pytest.mark.slow


def classical_texts(count: int, seed: int = 0) -> list[str]:
    chars = [c for c in "".join(VERSE + HELD_OUT) if c not in "，。"]
    rng = random.Random(seed)
    return ["".join(rng.choice(chars) for _ in range(rng.randint(8, 64))) for _ in range(count)]


def test_schemathesis_finds_no_server_error(server, tmp_path):
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/docs.json",
               "--checks", "not_a_server_error", "--max-examples", "50", "--seed", "20240601", "--workers", "2",
               "--request-timeout", "120", "--phases", "examples,coverage,fuzzing", "--no-color"]
    # cwd: schemathesis and hypothesis keep their caches in the working directory
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=quiet_env())
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "passed" in output and "Server error" not in output
    print(output[-1500:])


def test_32_clients_for_10_seconds_no_errors_and_flat_memory(server, record_property):
    from bench.loadgen import run_load

    url = server.url + "/punctuate"
    bodies = [{"texts": text} for text in classical_texts(500)]
    warm = run_load(url, bodies, clients=32, duration=None, total=500)
    rss_before = server.rss_bytes()
    load = run_load(url, bodies, clients=32, duration=10.0)
    rss_after = server.rss_bytes()
    summary = {**load.summary(), "warm_errors": warm.errors, "rss_mb_before": round(rss_before / 2**20, 1),
               "rss_mb_after": round(rss_after / 2**20, 1)}
    record_property("load", summary)
    print(json.dumps(summary, ensure_ascii=False))
    assert warm.errors == 0 and load.errors == 0, load.error_samples
    assert load.requests >= 100 and load.percentile(50) > 0
    assert rss_after <= rss_before * 1.10, summary
    assert server.process.poll() is None
