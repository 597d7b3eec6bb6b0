"""The Classical Chinese model packages as they are served (ONNX Runtime, the published int8), scored out of sample
on the CCLUE dev prose: punctuation micro-F1 (P / R), the boundary F1 of its marks read as sentence ends (what
``/segment`` answers when it is served from the punctuation model), and a segmentation package's own boundary F1.

    python bench/shipped.py                                  # serving/shipped/punctuation
    python bench/shipped.py --packages models/punctuation serving/shipped/punctuation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tagging import CCLUE, cclue_records  # noqa: E402
from tagsmith.tasks import get_task  # noqa: E402


def score_package(path: Path, threads: int | None) -> dict:
    from serving.runtime import BoundaryRuntime, load_package

    runtime = load_package(path, verify=True, threads=threads)
    task = runtime.manifest["task"]
    row = {"package": str(path), "task": task, "variant": runtime.variant,
           "size_mb": round(sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 2**20, 1)}
    views = [("punctuation", runtime), ("segmentation", BoundaryRuntime(runtime))] if task == "punctuation" \
        else [(task, runtime)]
    for name, view in views:
        records = cclue_records(name)
        started = time.time()
        predicted = [r.labels for r in view.predict([r["text"] for r in records])]
        seconds = time.time() - started
        scores = get_task(name).score([r["labels"] for r in records], predicted)
        row[name] = {k: v for k, v in scores.items() if isinstance(v, float)}
        row[name]["chars_per_second"] = round(sum(len(r["text"]) for r in records) / seconds, 1)
        row[name]["characters"] = sum(len(r["text"]) for r in records)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", nargs="+", type=Path, default=[ROOT / "serving/shipped/punctuation"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/shipped.json")
    args = parser.parse_args()
    if not CCLUE.is_file():
        sys.exit(f"{CCLUE} is absent: this benchmark needs the CCLUE dev file beside the repo (../shared/data)")
    rows = [score_package(path, args.threads) for path in args.packages]
    table = Table(title="model packages on CCLUE dev prose (out of sample), as served; scores in %")
    for column in ("package", "model", "MB", "punctuation P / R / F1", "segmentation P / R / F1", "chars/s"):
        table.add_column(column, justify="left" if column == "package" else "right")
    for row in rows:
        p, s = row.get("punctuation"), row.get("segmentation")
        table.add_row(row["package"], row["variant"], str(row["size_mb"]),
                      f"{100 * p['micro_precision']:.1f} / {100 * p['micro_recall']:.1f} / {100 * p['micro_f1']:.1f}" if p else "-",
                      f"{100 * s['precision']:.1f} / {100 * s['recall']:.1f} / {100 * s['f1']:.1f}" if s else "-",
                      f"{(p or s)['chars_per_second']:.0f}")
    Console(width=160).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
