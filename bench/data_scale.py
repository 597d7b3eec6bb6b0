"""Training data at corpus scale: peak RSS and preparation time of the tagging data path for 10M / 30M / 70M
characters (issue #13).

For each size a fresh process reads the first N characters' worth of records of a train file
(default ``data/classical-modern/punctuation/train.jsonl``, from ``tagsmith data fetch classical-modern``),
validates them, builds the character vocabulary and the training windows, exactly as ``tagsmith train`` does
before its first step, and reports its peak resident memory. ``--lists`` adds the list path the project used
before (every record parsed into Python lists, then ``encode_windows``) at the smallest size, for comparison.

    python bench/data_scale.py                       # 10M, 30M, all
    python bench/data_scale.py --sizes 10 30 --lists
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT = ROOT / "data" / "classical-modern" / "punctuation" / "train.jsonl"


def subset(source: Path, characters: int, target: Path) -> int:
    """The first records of ``source`` up to ``characters`` characters (0 = all); returns the characters."""
    total = 0
    with source.open(encoding="utf-8") as lines, target.open("w", encoding="utf-8") as out:
        for line in lines:
            if characters and total >= characters:
                break
            total += len(json.loads(line)["text"])
            out.write(line)
    return total


def prepare(path: str, lists: bool) -> dict:
    """Run in a child process: the data path of a tagging run (training/tagging.py: TaggingRun.load and .prepare) up to the first training step."""
    import numpy as np

    from tagsmith.compact import load_tagging_splits
    from tagsmith.tasks import get_task
    from training.features import CompactWindows, encode_windows
    from training.tokenizer import build_char_tokenizer

    task = get_task("punctuation")
    started = time.time()
    scratch = tempfile.mkdtemp()
    if lists:
        from tagsmith.records import validate_splits

        records = validate_splits({"train": path}, task)["train"]
        tokenizer = build_char_tokenizer((r["text"] for r in records), scratch, 3, 12000)
        index = {label: i for i, label in enumerate(task.labels)}
        windows = encode_windows([r["text"] for r in records], tokenizer, 128, 32,
                                 [[index[l] for l in r["labels"]] for r in records]).features
    else:
        corpus = load_tagging_splits({"train": path}, task)[0]["train"]
        tokenizer = build_char_tokenizer(corpus.texts(), scratch, 3, 12000)
        windows = CompactWindows(corpus, np.arange(len(corpus)), tokenizer, 128, 32)
    return {"windows": len(windows), "seconds": round(time.time() - started, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=DEFAULT)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 30, 0], help="millions of characters (0 = all)")
    parser.add_argument("--lists", action="store_true", help="also the former list path, at the smallest size")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/data_scale.json")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(prepare(args.child[0], args.child[1] == "lists")))
        return
    if not args.train.is_file():
        sys.exit(f"{args.train} is absent: build it with 'tagsmith data fetch classical-modern --local CLONE'")
    from rich.console import Console
    from rich.table import Table

    plan = [(size, "compact") for size in args.sizes]
    if args.lists:
        plan.insert(0, (min(s for s in args.sizes if s) if any(args.sizes) else 0, "lists"))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size, how in plan:
            path = Path(scratch) / f"train-{size}.jsonl"
            characters = subset(args.train, size * 1_000_000, path)
            done = subprocess.run([sys.executable, __file__, "--child", str(path), how], capture_output=True,
                                  text=True, cwd=ROOT)
            if done.returncode != 0:
                rows.append({"characters": characters, "path": how, "error": done.stderr.strip().splitlines()[-1]})
                continue
            rows.append({"characters": characters, "path": how, **json.loads(done.stdout.strip().splitlines()[-1])})
    table = Table(title="tagging training data: validation + vocabulary + windows, one process per row")
    for column in ("characters", "path", "windows", "seconds", "peak RSS GB"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(f"{row['characters'] / 1e6:.1f}M", row["path"], str(row.get("windows", "-")),
                      str(row.get("seconds", "-")), str(row.get("peak_rss_gb", row.get("error", "-"))))
    Console(width=140).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
