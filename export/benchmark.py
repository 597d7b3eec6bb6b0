"""``tagsmith bench``: PyTorch eager fp32 (the source checkpoint) vs ONNX fp32 vs ONNX int8 on one package.

Each backend runs in its own subprocess so that its peak memory (``ru_maxrss``) is its own and one backend's
imports cannot speed up or slow down another. Per backend: latency at batch 1 (median, p99) over single texts,
throughput at batch 32 (texts/s, tokens/s), the task metric on the same texts, model size on disk, peak RSS,
and the fraction of this CPU's measured fp32 matmul peak (numpy, same thread count, same run) the backend
reaches, with model FLOPs estimated as 2 x (weights of the dense layers: MatMul / Gemm / Conv) x tokens. The
embedding tables are lookups, not matmuls, and are left out: counted in, they more than double a MiniLM's
figure and put backends "above" the peak. Texts are the package's evaluation data (the validation split it was
exported with) or ``--data``: realistic lengths, e.g. lines of text or tweets; by default all of it (at least
256 texts, cycled; at most 2,000), so that the metric columns compare the backends on enough texts to show a
real difference rather than noise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tagsmith.tasks import TASKS

BACKENDS = ("pytorch", "onnx-fp32", "onnx-int8")
#: kind -> the method of a runtime or reference whose outputs are timed and scored (the task registry's ``call``)
CALL = {task.kind: task.call for task in TASKS.values()}


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- parent: plan, run workers, report ----------------------------------------------------------------------


MIN_TEXTS, MAX_TEXTS = 256, 2000


def run_benchmark(package_dir: str | Path, data: Path | None = None, backends: Sequence[str] = BACKENDS,
                  texts: int | None = None, latency_texts: int = 100, batch_size: int = 32, threads: int | None = None,
                  out: Path | None = None, record: bool = True, say: Callable[[str], None] = print,
                  progress: bool = True) -> dict:
    """Every backend on the package's texts, one subprocess each; ``progress``: a bar (stderr) per backend and
    phase (latency: a step per text; throughput: a step per batch)."""
    from export.checkpoint import ExportError
    from export.parity import read_records
    from serving.runtime import package_kind, verify_package

    package_dir = Path(package_dir)
    manifest = verify_package(package_dir)
    kind = package_kind(manifest)
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ExportError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    data = Path(data or manifest.get("parity", {}).get("data") or "")
    if not data.is_file():
        raise ExportError(f"benchmark data {data} not found; pass --data FILE")
    records = read_records(data, 0)
    if not records:
        raise ExportError(f"benchmark data {data} has no records")
    texts = texts or min(max(len(records), MIN_TEXTS), MAX_TEXTS)
    records = [records[i % len(records)] for i in range(max(texts, 1))]  # cycle a small file up to `texts`
    threads = threads or default_threads()
    tokens = token_count(kind, manifest, package_dir, records)
    peak = matmul_peak(threads)
    dense = dense_weights(package_dir / manifest["models"][_fp32_variant(manifest)])
    say(f"{len(records)} texts from {data} ({tokens} tokens), {threads} thread(s); "
        f"numpy fp32 matmul peak {peak['gflops']:.1f} GFLOP/s")

    rows = []
    with tempfile.TemporaryDirectory(prefix="tagsmith-bench-") as folder:
        records_file = Path(folder) / "records.json"
        records_file.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        for backend in backends:
            skip = _skip_reason(backend, manifest)
            if skip:
                say(f"{backend}: skipped ({skip})")
                rows.append({"backend": backend, "skipped": skip})
                continue
            spec = {"backend": backend, "package": str(package_dir), "records": str(records_file),
                    "batch_size": batch_size, "threads": threads, "latency_texts": latency_texts}
            say(f"{backend}: running ...")
            rows.append(_run_worker(spec, threads, progress))
    for row in rows:
        if "skipped" in row or "error" in row:
            continue
        row["tokens_per_second"] = round(tokens / row["throughput_seconds"], 1)
        achieved = 2.0 * dense * row["tokens_per_second"] / 1e9
        row["achieved_gflops"] = float(f"{achieved:.4g}")
        row["fraction_of_matmul_peak"] = float(f"{achieved / peak['gflops']:.4g}")  # tiny models: far below 1%
    result = {
        "package": str(package_dir), "task": manifest["task"], "kind": kind, "data": str(data),
        "texts": len(records), "tokens": tokens, "batch_size": batch_size, "threads": threads,
        "parameters": manifest["parameters"], "dense_weights": dense, "metric_name": manifest.get("parity", {}).get("metric", "metric"),
        "matmul_peak": peak, "cpu": _cpu_name(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "backends": rows,
    }
    out = Path(out) if out else package_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    plot(result, out / "benchmark.png")
    result["files"] = [str(out / "benchmark.json"), str(out / "benchmark.png")]
    if record:
        _record(package_dir, manifest, result, say)
    return result


def _skip_reason(backend: str, manifest: dict) -> str | None:
    if backend == "pytorch":
        checkpoint = manifest.get("source", {}).get("checkpoint")
        if not checkpoint or not Path(checkpoint).is_dir():
            return f"source checkpoint {checkpoint} is not on this machine"
        return None
    variant = backend.split("-", 1)[1]
    if variant not in manifest.get("models", {}):
        refused = manifest.get("parity", {}).get(f"onnx_{variant}", {}).get("refused")
        return f"the package has no {variant} model" + (f" ({refused})" if refused else "")
    return None


def _run_worker(spec: dict, threads: int, progress: bool = False) -> dict:
    """One backend's worker; its progress events (JSON lines on stdout, see :func:`_progress`) drive the bars."""
    from export.parity import progress_bar

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "export.benchmark", json.dumps({**spec, "progress": progress})]
    lines, bar = [], None
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as errors:
        worker_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env,
                                          cwd=_project_root())
        try:
            for line in worker_process.stdout:
                if line.startswith(PROGRESS):
                    event = json.loads(line)["progress"]
                    if "total" in event:
                        if bar is not None:
                            bar.close()
                        bar = progress_bar(event["total"], f"{spec['backend']}: {event['phase']}", unit=event["unit"])
                    elif bar is not None:
                        bar.update(event["done"])
                elif line.startswith("{"):
                    lines.append(line)
            returncode = worker_process.wait()
        finally:
            if bar is not None:
                bar.close()
            if worker_process.poll() is None:
                worker_process.kill()
                worker_process.wait()
        errors.seek(0)
        stderr = errors.read()
    if returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"backend": spec["backend"], "error": f"worker failed (exit {returncode}): {tail}"}
    return json.loads(lines[-1])


def _project_root() -> Path:
    return Path(__file__).resolve().parents[1]


def token_count(kind: str, manifest: dict, package_dir: Path, records: list[dict]) -> int:
    """Tokens the model processes for these texts (windows of long texts included), for every backend."""
    from tokenizers import Tokenizer

    from tagsmith.convert import to_script
    from tagsmith.windows import window_spans

    tokenizer = Tokenizer.from_file(str(package_dir / manifest["tokenizer"]))
    tokenizer.no_padding()
    tokenizer.enable_truncation(int(manifest["max_length"]))
    texts = [to_script(r["text"], manifest.get("script", "keep")) for r in records]
    if kind == "tagging":
        size, overlap = int(manifest["max_length"]) - 2, int(manifest.get("window_overlap", 0))
        texts = [list(t[a:b]) for t in texts for a, b in window_spans(len(t), size, overlap)]
        return sum(len(e.ids) for e in tokenizer.encode_batch(texts, is_pretokenized=True))
    return sum(len(e.ids) for e in tokenizer.encode_batch(texts))


def _fp32_variant(manifest: dict) -> str:
    return "fp32" if "fp32" in manifest["models"] else next(iter(manifest["models"]))


def dense_weights(model_file: Path) -> int:
    """Weights that take part in a multiply-add for every token: the constant inputs of the model's MatMul,
    Gemm and Conv nodes (embedding Gathers, biases and norms are left out)."""
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    return sum(sizes.get(name, 0) for node in model.graph.node if node.op_type in ("MatMul", "Gemm", "Conv")
               for name in node.input[1:2])


def matmul_peak(threads: int, size: int = 1024, repeats: int = 7) -> dict:
    """Best fp32 GFLOP/s of a numpy matmul in a subprocess with the benchmark's thread count."""
    code = ("import numpy as np, time, json\n"
            f"n={size}; a=np.random.rand(n,n).astype(np.float32); b=np.random.rand(n,n).astype(np.float32)\n"
            "a@b; best=1e9\n"
            f"for _ in range({repeats}):\n"
            "    t=time.perf_counter(); a@b; best=min(best, time.perf_counter()-t)\n"
            "print(json.dumps({'gflops': 2*n**3/best/1e9, 'size': n}))\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"gflops": round(result["gflops"], 2), "matrix": result["size"], "threads": threads, "dtype": "float32"}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _record(package_dir: Path, manifest: dict, result: dict, say) -> None:
    """Keep the figures in the manifest (not a hashed file, so the package stays verifiable), and in the model card
    where it is still the generated one."""
    from export.package import refresh_card, write_manifest

    keep = ("backend", "size_bytes", "metric", "latency_ms_p50", "latency_ms_p99", "texts_per_second",
            "tokens_per_second", "peak_rss_mib", "fraction_of_matmul_peak", "skipped", "error")
    manifest["benchmark"] = {
        "created": result["created"], "cpu": result["cpu"], "threads": result["threads"], "texts": result["texts"],
        "matmul_peak_gflops": result["matmul_peak"]["gflops"],
        "backends": [{k: row[k] for k in keep if k in row} for row in result["backends"]],
    }
    try:
        refresh_card(package_dir, manifest)
        write_manifest(package_dir, manifest)
    except OSError as error:
        say(f"could not record the figures in {package_dir}: {error}")


# --- reporting ----------------------------------------------------------------------------------------------


def table(result: dict):
    from rich.table import Table

    metric = result["metric_name"]
    out = Table(title=f"{result['task']} on {result['cpu']} ({result['threads']} threads, "
                      f"matmul peak {result['matmul_peak']['gflops']:.1f} GFLOP/s)")
    for column in ("backend", "params", "size MB", metric, "p50 ms (b=1)", "p99 ms (b=1)", f"texts/s (b={result['batch_size']})",
                   "tokens/s", "peak RSS MiB", "% matmul peak"):
        out.add_column(column, justify="left" if column == "backend" else "right")
    for row in result["backends"]:
        if "skipped" in row or "error" in row:
            out.add_row(row["backend"], f"{'skipped' if 'skipped' in row else 'failed'}: {row.get('skipped') or row['error']}",
                        style="dim")
            continue
        out.add_row(row["backend"], f"{result['parameters'] / 1e6:.2f}M", f"{row['size_bytes'] / 1e6:.2f}",
                    f"{row['metric']:.4f}", f"{row['latency_ms_p50']:.2f}", f"{row['latency_ms_p99']:.2f}",
                    f"{row['texts_per_second']:.1f}", f"{row['tokens_per_second']:.0f}", f"{row['peak_rss_mib']:.0f}",
                    f"{100 * row['fraction_of_matmul_peak']:.2f}%")
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["backends"] if "latency_ms_p50" in r]
    names = [r["backend"] for r in rows]
    panels = [("latency_ms_p50", "median latency, batch 1 (ms)"), ("texts_per_second", f"throughput, batch {result['batch_size']} (texts/s)"),
              ("size_bytes", "size on disk (MB)"), ("peak_rss_mib", "peak RSS (MiB)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    colours = ["tab:gray", "tab:blue", "tab:green", "tab:orange"]
    for ax, (key, title) in zip(axes, panels):
        values = [r[key] / (1e6 if key == "size_bytes" else 1) for r in rows]
        ax.bar(names, values, color=colours[: len(names)])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        for x, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"{result['task']}: {result['texts']} texts, {result['threads']} thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- worker: one backend in its own process -----------------------------------------------------------------


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _load_backend(spec: dict, manifest: dict):
    """(predictor, size on disk in bytes) for the backend."""
    package_dir = Path(spec["package"])
    if spec["backend"] == "pytorch":
        import torch

        from export.checkpoint import inspect_checkpoint
        from export.reference import load_reference

        torch.set_num_threads(spec["threads"])
        checkpoint = inspect_checkpoint(manifest["source"]["checkpoint"])
        return load_reference(checkpoint, batch_size=spec["batch_size"]), checkpoint.weights.stat().st_size
    from serving.runtime import load_package

    variant = spec["backend"].split("-", 1)[1]
    runtime = load_package(package_dir, verify=False, prefer=variant, threads=spec["threads"], batch_size=spec["batch_size"])
    return runtime, runtime.model_file.stat().st_size


PROGRESS = '{"progress"'  # how a worker's progress lines start


def _progress(spec: dict, phase: str | None = None, total: int | None = None, unit: str = "", done: int = 0) -> None:
    """A progress event for the parent's bar, outside the timed code: a new phase (``total`` steps) or steps done."""
    if spec.get("progress"):
        event = {"phase": phase, "total": total, "unit": unit} if total is not None else {"done": done}
        print(json.dumps({"progress": event}), flush=True)


def worker(spec: dict) -> dict:
    from export.parity import make_eval
    from serving.runtime import package_kind, read_manifest

    package_dir = Path(spec["package"])
    manifest = read_manifest(package_dir)
    kind = package_kind(manifest)
    records = json.loads(Path(spec["records"]).read_text(encoding="utf-8"))
    evaluation = make_eval(kind, records, manifest, package_dir)
    items = evaluation.ids if kind == "mlm" else evaluation.texts
    rss_before = _maxrss_mib()
    predictor, size = _load_backend(spec, manifest)
    task = TASKS.get(manifest.get("task", ""))
    call = getattr(predictor, task.call if task is not None and task.kind == kind else CALL[kind])
    for item in items[:3]:  # warm-up: first-run allocations and lazy initialisation
        call([item])

    latencies = []
    timed = items[: spec["latency_texts"]]
    _progress(spec, "latency (1 text a call)", len(timed), "text")
    for item in timed:
        start = time.perf_counter()
        call([item])
        latencies.append(time.perf_counter() - start)
        _progress(spec, done=1)

    batch = spec["batch_size"]
    outputs, seconds = [], 0.0
    _progress(spec, f"throughput (batches of {batch})", -(-len(items) // batch), "batch")
    for first in range(0, len(items), batch):
        start = time.perf_counter()
        chunk = call(items[first:first + batch])
        seconds += time.perf_counter() - start  # the calls alone: the progress events are not timed
        outputs.extend(chunk)
        _progress(spec, done=1)
    peak_rss = _maxrss_mib()  # before scoring, whose imports (scikit-learn) are not the model's
    if kind == "classification":
        outputs = np.asarray(outputs)
    scores = evaluation.scores(outputs)
    return {
        "backend": spec["backend"],
        "size_bytes": size,
        "metric": round(float(scores[evaluation.metric]), 6),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)) * 1000, 3),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)) * 1000, 3),
        "latency_texts": len(latencies),
        "throughput_seconds": seconds,
        "texts_per_second": round(len(items) / seconds, 2),
        "rss_before_model_mib": round(rss_before, 1),
        "peak_rss_mib": round(peak_rss, 1),
    }


if __name__ == "__main__":  # python -m export.benchmark '<spec json>' (run by run_benchmark)
    print(json.dumps(worker(json.loads(sys.argv[1]))))
