"""The toxicity models side by side, in one run: the teacher (PyTorch and int8), MiniLM fine-tuned without
distillation, and each distilled student (int8): macro-F1 and ROC-AUC on the OLID test split, package MB,
b=1 p50 ms, b=32 texts/s, training minutes; a PNG of macro-F1 against latency.

    python bench/toxicity.py                       # the packages in models/toxicity-*/ (make toxicity-packages)
    python bench/toxicity.py --packages teacher=models/toxicity-teacher student=serving/shipped/toxicity

Every package is timed by export.benchmark (its own process per backend, the same texts, the same threads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT = {"teacher": "models/toxicity-teacher", "minilm (no distillation)": "models/toxicity-cpu",
           "student MiniLM-L6": "models/toxicity-student", "student MiniLM-L6, 3 layers": "models/toxicity-student-l3"}


def roc_auc(package: Path, data: Path) -> float:
    from sklearn.metrics import roc_auc_score

    from serving.runtime import load_package

    runtime = load_package(package)
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    probabilities = runtime.probabilities([r["text"] for r in records])
    positive = runtime.labels.index(runtime.positive)
    return float(roc_auc_score([r["label"] == runtime.positive for r in records], probabilities[:, positive]))


def training_minutes(package: Path) -> float | None:
    """The run's training time (results.json beside its checkpoint), the teacher's logits included for a student."""
    manifest = json.loads((package / "tagsmith.json").read_text(encoding="utf-8"))
    checkpoint = Path(manifest.get("source", {}).get("checkpoint", ""))
    results = checkpoint.parent / "results.json"
    if not results.is_file():
        return None
    return round(json.loads(results.read_text())["train_seconds"] / 60, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", nargs="*", help="NAME=PACKAGE_DIR ... (default: models/toxicity-*)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "olid" / "test.jsonl")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    from export.benchmark import run_benchmark

    named = dict(item.split("=", 1) for item in args.packages) if args.packages else DEFAULT
    rows = []
    for name, folder in named.items():
        package = Path(folder) if Path(folder).is_absolute() else ROOT / folder
        if not (package / "tagsmith.json").is_file():
            Console(stderr=True).print(f"{name}: no package at {package}, left out")
            continue
        backends = ["pytorch", "onnx-int8"] if name == "teacher" else ["onnx-int8"]
        result = run_benchmark(package, args.data, backends, threads=args.threads, record=False,
                               out=RESULTS / "toxicity" / package.name, say=lambda line: None)
        auc = roc_auc(package, args.data)
        for row in result["backends"]:
            if row.get("skipped") or row.get("error"):
                Console(stderr=True).print(f"{name} {row['backend']}: {row.get('skipped') or row.get('error')}")
                continue
            rows.append({"model": name, "backend": row["backend"], "package": str(package),
                         "parameters": result["parameters"], "size_mb": round(row["size_bytes"] / 2**20, 1),
                         "macro_f1": row["metric"], "roc_auc": round(auc, 4) if row["backend"] != "pytorch" else None,
                         "p50_ms": row["latency_ms_p50"], "texts_per_second": row["texts_per_second"],
                         "training_minutes": training_minutes(package)})
            Console(stderr=True).print(rows[-1])
    if not rows:
        raise SystemExit("no toxicity packages found; export them first (see docs/benchmarks.md)")
    teacher = next((r for r in rows if r["model"] == "teacher" and r["backend"] == "onnx-int8"), None)
    for row in rows:
        if teacher:
            row["speedup_vs_teacher_int8"] = round(row["texts_per_second"] / teacher["texts_per_second"], 2)
            row["macro_f1_vs_teacher"] = round(100 * (row["macro_f1"] - teacher["macro_f1"]), 2)
    out = {"data": str(args.data), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows}
    (RESULTS / "toxicity.json").write_text(json.dumps(out, indent=1))
    table = Table(title=f"toxicity on {args.data.name} (OLID, our test split)")
    for column in ("model", "backend", "params", "MB", "macro-F1", "ROC-AUC", "p50 ms b=1", "texts/s b=32",
                   "x teacher int8", "train min"):
        table.add_column(column, justify="left" if column in ("model", "backend") else "right")
    for r in rows:
        table.add_row(r["model"], r["backend"], f"{r['parameters'] / 1e6:.1f}M", f"{r['size_mb']:.1f}",
                      f"{r['macro_f1']:.4f}", f"{r['roc_auc']:.4f}" if r["roc_auc"] else "-", f"{r['p50_ms']:.1f}",
                      f"{r['texts_per_second']:.0f}", f"{r.get('speedup_vs_teacher_int8', '-')}",
                      str(r["training_minutes"] or "-"))
    Console(width=180).print(table)
    plot(rows, RESULTS / "toxicity.png")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        axis.scatter(r["p50_ms"], r["macro_f1"], s=30 + r["size_mb"] * 3)
        axis.annotate(f"{r['model']} ({r['backend']})", (r["p50_ms"], r["macro_f1"]), fontsize=8,
                      xytext=(4, 4), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("latency, one text (p50 ms, log scale)")
    axis.set_ylabel("macro-F1 on the OLID test split")
    axis.set_title("toxicity: accuracy against latency (marker area ~ package size)")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
