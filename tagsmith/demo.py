"""``make demo``: the main job on a fresh machine, each step skipped when its output already exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
DEMO_RUNS = ("segmentation-tiny", "punctuation-tiny")
SAMPLE = "天地玄黄宇宙洪荒日月盈昃辰宿列张子曰学而时习之不亦说乎有朋自远方来不亦乐乎"


def tagsmith(*args: str) -> None:
    command = [sys.executable, "-m", "tagsmith.cli", *args]
    console.print(f"[bold cyan]$ tagsmith {' '.join(args)}[/]")
    subprocess.run(command, check=True)


def train_once(name: str) -> Path:
    run_dir = Path("runs") / name
    if (run_dir / "results.json").is_file():
        console.print(f"[green]✓[/] {run_dir} already trained (delete it to retrain)")
    else:
        overwrite = ["--overwrite"] if run_dir.exists() else []
        tagsmith("train", "--config", f"training/configs/{name}.yaml", *overwrite)
    return run_dir


def main() -> None:
    table = Table(title="tagsmith demo models (test split of the chinese-poetry records)")
    for column in ("run", "metric", "test", "run dir"):
        table.add_column(column)
    for name in DEMO_RUNS:
        run_dir = train_once(name)
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        metric = "f1" if results["task"] == "segmentation" else "micro_f1"
        table.add_row(name, metric, f"{100 * results['test'][metric]:.1f}", str(run_dir))
    console.print(table)
    for name in DEMO_RUNS:
        tagsmith("predict", f"runs/{name}/best", SAMPLE)
    console.print("Results: runs/<name>/results.json, test_predictions.jsonl, curves.png, train.log; "
                  "models: runs/<name>/best/")


if __name__ == "__main__":
    main()
