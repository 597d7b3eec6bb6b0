"""Serving benchmark: the HTTP API with adaptive batching against the bars of issue #5.

On the same texts it measures
  * in-process ONNX Runtime (the package's published model, batches of 32): the ceiling;
  * the HTTP API (``tagsmith serve``, BentoML adaptive batching) under 32 closed-loop clients: bar >= 70% of the
    ceiling, and p99 <= 3 x p50;
  * a naive service that calls a transformers ``pipeline()`` in PyTorch once per request (this script's own
    ``--baseline-server`` mode, FastAPI + uvicorn): bar, ours >= 3 x it;
  * the RSS of the server's process tree after 1,000 and after 10,000 requests: bar, within 10%.
It prints one table and writes JSON (default bench/results/serving.json). Clients, servers and models share this
machine: the numbers say what one box does, client included.

    python bench/serving_bench.py                         # models/punctuation, data/chinese-poetry test texts
    python bench/serving_bench.py --models models --task segmentation --duration 30 --no-baseline
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROUTES = {"segmentation": "/segment", "punctuation": "/punctuate", "toxicity": "/toxicity", "mlm": "/fill_mask"}
PIPELINES = {"segmentation": "token-classification", "punctuation": "token-classification",
             "toxicity": "text-classification", "mlm": "fill-mask"}
FALLBACK_TEXTS = ["天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏閏餘成歲律呂調陽",
                  "學而時習之不亦說乎有朋自遠方來不亦樂乎人不知而不慍不亦君子乎",
                  "雲騰致雨露結為霜金生麗水玉出崑岡劍號巨闕珠稱夜光果珍李柰菜重芥薑"]
MARKS = set("，。：、；？！,.:;?!")
DEFAULT_DATA = {"toxicity": ["data/olid/test.jsonl", "data/toxicity-seed/test.jsonl"],
                "mlm": ["data/chinese-poetry/punctuation/test.jsonl"]}


# --- texts ---------------------------------------------------------------------------------------------------


def bench_texts(task: str, data: Path | None, count: int, mask_token: str, seed: int = 0) -> list[str]:
    """``count`` texts from record files (marks removed for the tagging tasks), or the built-in lines."""
    defaults = DEFAULT_DATA.get(task, [f"data/chinese-poetry/{task}/test.jsonl"])
    candidates = [data] if data else [ROOT / path for path in defaults]
    texts: list[str] = []
    for path in candidates:
        if path and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                text = json.loads(line).get("text", "") if line.strip().startswith("{") else line
                text = "".join(c for c in text if c not in MARKS) if task in ("segmentation", "punctuation") else text
                if text.strip():
                    texts.append(text[:2000])
            break
    texts = texts or FALLBACK_TEXTS
    rng = random.Random(seed)
    picked = [rng.choice(texts) for _ in range(count)]
    if task == "mlm":  # one mask in each text, at a seeded position
        picked = [t[:i] + mask_token + t[i + 1:] for t in picked for i in [rng.randrange(max(1, min(len(t), 100)))]]
    return picked


# --- measurements --------------------------------------------------------------------------------------------


def in_process(package: Path, texts: list[str], threads: int | None, batch_size: int = 32) -> dict:
    from serving.runtime import load_package

    runtime = load_package(package, threads=threads)
    runtime.predict(texts[:batch_size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        runtime.predict(texts[start:start + batch_size])
    seconds = time.perf_counter() - started
    return {"model": runtime.variant, "texts": len(texts), "seconds": round(seconds, 2),
            "texts_per_s": round(len(texts) / seconds, 1)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A server subprocess in its own session (stopped as a group), ready when ``ready_path`` answers 200."""

    def __init__(self, command: list[str], env: dict, log: Path, ready_path: str, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log, "wb")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.wait(ready_path)

    def wait(self, path: str, timeout: float = 300) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s; see {self.log.name}")

    def rss_bytes(self) -> int:
        import psutil

        total = 0
        try:
            parent = psutil.Process(self.process.pid)
            for proc in [parent, *parent.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        return total

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def server_env(threads: int | None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "True", "GRADIO_ANALYTICS_ENABLED": "False",
           "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env.update(TAGSMITH_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    return env


def http_load(url: str, texts: list[str], task: str, clients: int, duration: float) -> dict:
    from loadgen import run_load  # bench/loadgen.py, beside this script

    bodies = [{"texts": text} for text in texts]
    run_load(url, bodies[:200], clients=clients, duration=None, total=min(400, 4 * len(bodies)))  # warm-up
    result = run_load(url, bodies, clients=clients, duration=duration)
    return result.summary()


def memory_growth(server: Process, url: str, texts: list[str], task: str, clients: int,
                  first: int = 1_000, total: int = 10_000) -> dict:
    from loadgen import run_load  # bench/loadgen.py, beside this script

    bodies = [{"texts": text} for text in texts]
    early = run_load(url, bodies, clients=clients, duration=None, total=first)
    rss_first = server.rss_bytes()
    late = run_load(url, bodies, clients=clients, duration=None, total=total - first)
    rss_total = server.rss_bytes()
    return {"requests": first + late.requests, "errors": early.errors + late.errors,
            f"rss_mb_after_{first}": round(rss_first / 2**20, 1), f"rss_mb_after_{total}": round(rss_total / 2**20, 1),
            "growth": round(rss_total / rss_first - 1, 4)}


# --- the naive baseline ----------------------------------------------------------------------------------------


def baseline_app(checkpoint: Path, task: str, threads: int | None):
    """A FastAPI app that calls a transformers pipeline() in PyTorch once per request (no batching, no ONNX)."""
    import torch
    from fastapi import FastAPI
    from transformers import AutoTokenizer, pipeline

    if threads:
        torch.set_num_threads(threads)
    info = json.loads((checkpoint / "tagsmith.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, model_max_length=int(info.get("max_length") or 512))
    kwargs = {"stride": int(info.get("window_overlap", 0))} if PIPELINES[task] == "token-classification" else {}
    predict = pipeline(PIPELINES[task], model=str(checkpoint), tokenizer=tokenizer, device=-1, **kwargs)
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict:
        return {"ready": True}

    @app.post(ROUTES[task])
    def run(request: dict) -> dict:
        texts = request["texts"] if isinstance(request["texts"], list) else [request["texts"]]
        outputs = [predict(text, truncation=True) if PIPELINES[task] == "text-classification" else predict(text)
                   for text in texts]
        return {"results": json.loads(json.dumps(outputs, default=float))}

    return app


def baseline_load(checkpoint: Path, task: str, texts: list[str], clients: int, duration: float,
                  threads: int | None, log: Path) -> dict:
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--baseline-server", "--checkpoint", str(checkpoint),
               "--task", task, "--port", str(port)] + (["--threads", str(threads)] if threads else [])
    server = Process(command, server_env(threads), log, "/ready", port)
    try:
        return http_load(server.url + ROUTES[task], texts, task, clients, duration)
    finally:
        server.stop()


# --- the report ------------------------------------------------------------------------------------------------


def verdicts(result: dict) -> dict:
    http, ceiling = result["http"], result["in_process"]
    out = {"http_vs_in_process": {"value": round(http["texts_per_s"] / ceiling["texts_per_s"], 3), "bar": ">= 0.70"},
           "p99_over_p50": {"value": round(http["p99_ms"] / http["p50_ms"], 2), "bar": "<= 3"},
           "http_errors": {"value": http["errors"], "bar": "== 0"}}
    out["http_vs_in_process"]["pass"] = out["http_vs_in_process"]["value"] >= 0.70
    out["p99_over_p50"]["pass"] = out["p99_over_p50"]["value"] <= 3
    out["http_errors"]["pass"] = http["errors"] == 0
    if result.get("baseline") and "texts_per_s" in result["baseline"]:
        value = round(http["texts_per_s"] / max(result["baseline"]["texts_per_s"], 1e-9), 2)
        out["vs_naive_pytorch_pipeline"] = {"value": value, "bar": ">= 3", "pass": value >= 3}
    if result.get("memory"):
        growth = result["memory"]["growth"]
        out["rss_growth_1k_to_10k"] = {"value": growth, "bar": "<= 0.10", "pass": growth <= 0.10}
    return out


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tagsmith serving benchmark: {result['task']} ({result['package']}), "
                        f"{result['clients']} clients, {result['cpu_count']} CPUs")
    for column in ("measure", "texts/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    ceiling = result["in_process"]
    table.add_row(f"in-process ONNX Runtime {ceiling['model']} (batches of 32)", f"{ceiling['texts_per_s']:.1f}",
                  "", "", "")
    for key, name in (("http", "HTTP API, adaptive batching"), ("baseline", "naive PyTorch pipeline() per request")):
        row = result.get(key)
        if row and "texts_per_s" in row:
            table.add_row(name, f"{row['texts_per_s']:.1f}", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}",
                          str(row["errors"]))
        elif row:
            table.add_row(name, row.get("skipped", "n/a"), "", "", "")
    Console().print(table)
    bars = Table(title="bars")
    for column in ("bar", "value", "required", "pass"):
        bars.add_column(column)
    for name, verdict in result["verdicts"].items():
        bars.add_row(name, str(verdict["value"]), verdict["bar"], "yes" if verdict["pass"] else "NO")
    if result.get("memory"):
        memory = result["memory"]
        Console().print(f"RSS of the server tree: {json.dumps({k: v for k, v in memory.items()})}")
    Console().print(bars)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="Folder of model packages.")
    parser.add_argument("--task", default="punctuation", choices=sorted(ROUTES))
    parser.add_argument("--data", type=Path, help="Record file with the texts (default: the task's test split).")
    parser.add_argument("--texts", type=int, default=2000, help="Distinct texts the clients cycle through.")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load per service (<= 60).")
    parser.add_argument("--threads", type=int, help="ONNX Runtime / torch threads (default: all cores).")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="Also load the naive PyTorch pipeline() service (needs torch + transformers).")
    parser.add_argument("--checkpoint", type=Path, help="Checkpoint for the baseline (default: the package's source).")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help="Compare the server's RSS after 1,000 and after 10,000 requests.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/serving.json")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.baseline_server:
        import uvicorn

        uvicorn.run(baseline_app(args.checkpoint, args.task, args.threads), host="127.0.0.1", port=args.port,
                    log_level="warning")
        return 0

    package = args.models / args.task
    if not (package / "tagsmith.json").is_file():
        print(f"no {args.task} package in {package}: run `make demo` (or tagsmith export) first", file=sys.stderr)
        return 2
    manifest = json.loads((package / "tagsmith.json").read_text(encoding="utf-8"))
    mask = manifest.get("special_tokens", {}).get("mask", "[MASK]")
    texts = bench_texts(args.task, args.data, args.texts, mask)
    duration = min(args.duration, 60.0)
    logs = args.out.parent
    logs.mkdir(parents=True, exist_ok=True)
    result = {"task": args.task, "package": str(package), "clients": args.clients, "duration_s": duration,
              "cpu_count": os.cpu_count(), "threads": args.threads, "texts": len(texts),
              "mean_chars": round(sum(map(len, texts)) / len(texts), 1)}

    print(f"in-process ONNX Runtime on {len(texts)} texts ...", flush=True)
    result["in_process"] = in_process(package, texts, args.threads)

    port = free_port()
    command = [sys.executable, "-m", "tagsmith.cli", "serve", "--models", str(args.models), "--port", str(port)]
    print(f"HTTP API: {args.clients} clients for {duration:.0f} s ...", flush=True)
    server = Process(command, server_env(args.threads), logs / "serving-server.log", "/readyz", port)
    try:
        url = server.url + ROUTES[args.task]
        result["http"] = http_load(url, texts, args.task, args.clients, duration)
        if args.memory:
            print("memory: RSS after 1,000 and after 10,000 requests ...", flush=True)
            result["memory"] = memory_growth(server, url, texts, args.task, args.clients)
    finally:
        server.stop()

    if args.baseline:
        checkpoint = args.checkpoint or Path(manifest.get("source", {}).get("checkpoint", ""))
        if not (checkpoint / "config.json").is_file():
            result["baseline"] = {"skipped": f"no checkpoint at {checkpoint} (give --checkpoint)"}
        else:
            print(f"naive PyTorch pipeline() service: {args.clients} clients for {duration:.0f} s ...", flush=True)
            try:
                result["baseline"] = baseline_load(checkpoint, args.task, texts, args.clients, duration, args.threads,
                                                   logs / "serving-baseline.log")
            except RuntimeError as error:
                result["baseline"] = {"skipped": str(error)}
    result["verdicts"] = verdicts(result)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print_table(result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
