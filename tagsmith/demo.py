"""``make demo-pipeline``: the whole tiny pipeline on a fresh machine, each step skipped when its output already exists
(``make demo`` serves the shipped packages instead, with no training).

fetch data -> pretrain a tiny char BERT on the chinese-poetry corpus (masked LM) -> fine-tune segmentation and
punctuation from it -> train toxicity -> export each to an int8 ONNX package -> serve the API + demo page.
Toxicity data: a local OLID copy when ``TAGSMITH_OLID`` names one, else tweet_eval from the hub, else a small
seed set this project writes itself (flagged demo-grade in the model info and on the page).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
SAMPLE = "天地玄黄宇宙洪荒日月盈昃辰宿列张子曰学而时习之不亦说乎有朋自远方来不亦乐乎"


def tagsmith(*args: str, check: bool = True) -> int:
    console.print(f"[bold cyan]$ tagsmith {' '.join(args)}[/]")
    return subprocess.run([sys.executable, "-m", "tagsmith.cli", *args], check=check).returncode


def has_command(name: str) -> bool:
    from tagsmith.cli import app

    return any(command.name == name or (command.callback and command.callback.__name__ == name)
               for command in app.registered_commands)


def toxicity_data() -> tuple[Path, str]:
    """(folder with train/validation/test.jsonl, data grade)."""
    olid = Path("data/olid")
    if (olid / "meta.json").is_file():
        return olid, "real"
    local = os.environ.get("TAGSMITH_OLID")
    args = ["data", "fetch", "olid", "--out", str(olid)] + (["--local", local] if local else [])
    if tagsmith(*args, check=False) == 0:
        return olid, "real"
    seed_dir = Path("data/toxicity-seed")
    if not (seed_dir / "meta.json").is_file():
        from tagsmith.recipes.seed_toxicity import build_seed_set

        build_seed_set(seed_dir)
    console.print("[yellow]no OLID copy and no hub: training toxicity on the built-in DEMO-GRADE seed set "
                  "(set TAGSMITH_OLID=/path/to/olid for real data)[/]")
    return seed_dir, "demo"


def train_once(name: str, *overrides: str) -> Path:
    run_dir = Path("runs") / name
    if (run_dir / "results.json").is_file():
        console.print(f"[green]✓[/] {run_dir} already trained (delete it to retrain)")
        return run_dir
    sets = [item for override in overrides for item in ("--set", override)]
    tagsmith("train", "--config", f"training/configs/{name}.yaml", "--overwrite", *sets)
    return run_dir


def export_once(run_dir: Path, task: str) -> Path:
    out = Path("models") / task
    if (out / "tagsmith.json").is_file():
        console.print(f"[green]✓[/] {out} already exported")
    else:
        tagsmith("export", str(run_dir / "best"), "--out", str(out))
    return out


def summary(runs: dict[str, Path]) -> None:
    from tagsmith.tasks import get_task

    table = Table(title="tagsmith demo models (test split of their own data)")
    for column in ("task", "run", "metric", "test"):
        table.add_column(column)
    for task, run_dir in runs.items():
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        spec = get_task(task)
        if spec.kind == "mlm":
            table.add_row(task, run_dir.name, "perplexity before → after",
                          f"{results['before']['perplexity']:.0f} → {results['after']['perplexity']:.0f}")
            continue
        metric = spec.main_metric
        table.add_row(task, run_dir.name, metric, f"{100 * results['test'][metric]:.1f}")
    console.print(table)


def main() -> None:
    if not Path("data/chinese-poetry/meta.json").is_file():
        tagsmith("data", "fetch", "chinese-poetry")
    runs = {"mlm": train_once("mlm-tiny")}
    adapted = "model.name_or_path=runs/mlm-tiny/best"
    runs["segmentation"] = train_once("segmentation-tiny", adapted)
    runs["punctuation"] = train_once("punctuation-tiny", adapted)
    folder, grade = toxicity_data()
    runs["toxicity"] = train_once("toxicity-tiny", f"data.train={folder}/train.jsonl",
                                  f"data.validation={folder}/validation.jsonl", f"data.test={folder}/test.jsonl",
                                  f"options.data_grade={grade}")
    summary(runs)
    tagsmith("predict", "runs/punctuation-tiny/best", SAMPLE)
    if not has_command("export"):
        console.print("Results: runs/<name>/results.json, test_predictions.jsonl, curves.png; models: runs/<name>/best/")
        return
    for task, run_dir in runs.items():
        export_once(run_dir, task)
    if has_command("serve") and os.environ.get("TAGSMITH_DEMO_NO_SERVE") != "1":
        console.print("[bold green]serving: API http://127.0.0.1:3000 (OpenAPI UI at /, spec at /docs.json), demo page "
                      "http://127.0.0.1:3000/demo — Ctrl-C to stop[/]")
        tagsmith("serve", "--models", "models")


if __name__ == "__main__":
    main()
