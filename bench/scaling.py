"""How Classical Chinese quality grows with training compute: CCLUE dev prose F1 against training minutes.

Every complete checkpoint of the named runs (``runs/<run>/checkpoints/checkpoint-N``, kept with
``--set trainer.save_total_limit=null``) is scored out of sample on the CCLUE dev prose, as ``best/`` is:

* punctuation micro-F1 and the boundary F1 of its marks read as sentence ends (segmentation), or, for a
  segmentation run, its boundary F1;
* the decision bias tuned for that checkpoint on the run's own validation prose (never on CCLUE), as training does;
* minutes of training up to that checkpoint (from train.log; a run started from another run's best/ adds that
  run's minutes), characters seen, training characters/s and PyTorch inference characters/s.

A checkpoint is a point on one learning-rate schedule, not a run of its own with a schedule sized to that budget,
so early points understate what a run planned for that budget reaches. Prints one table, writes
``bench/results/scaling.json`` and ``bench/results/scaling.png``.

    python bench/scaling.py --runs punctuation-cpu punctuation-cpu-long
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tagging import CCLUE, cclue_records  # noqa: E402
from tagsmith.tasks import get_task, labels_from_ends  # noqa: E402

console = Console(width=170)
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) INFO tagsmith: (.*)$")


def log_times(run_dir: Path) -> tuple[datetime | None, dict[int, datetime], float]:
    """(training start, step -> time of its evaluation, labelled characters per batch) from train.log."""
    start, at, per_batch = None, {}, 0.0
    for line in (run_dir / "train.log").read_text(encoding="utf-8").splitlines():
        match = STAMP.match(line)
        if not match:
            continue
        when, message = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S"), match[2]
        if "divided by" in message and "labelled tokens a batch" in message:
            start, at = when, {}  # the last (re)start of training
            per_batch = float(re.search(r"divided by (\d+)", message)[1])
        elif message.startswith("model:") and start is None:
            start = when
        step = re.match(r"step (\d+) epoch [\d.]+ \{\"eval_loss\"", message)
        if step:
            at[int(step[1])] = when
    return start, at, per_batch


def parent_minutes(run_dir: Path) -> tuple[float, int]:
    """Minutes and characters a run started from another run's best/ inherits."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    source = (config.get("model") or {}).get("name_or_path") or ""
    parent = Path(source).parent if source.endswith("best") else None
    if parent is None or not (parent / "results.json").is_file():
        return 0.0, 0
    results = json.loads((parent / "results.json").read_text(encoding="utf-8"))
    minutes, chars = parent_minutes(parent)
    seen = results.get("characters_seen") or results["global_step"] * log_times(parent)[2]  # older runs: from the log
    return minutes + results["train_seconds"] / 60, chars + int(seen)


def checkpoint_predictor(run_dir: Path, checkpoint: Path, validation: list[dict], scratch: Path):
    """A TaggingPredictor on a checkpoint, with the decision bias tuned on the run's validation prose."""
    from training.predict import TaggingPredictor
    from training.tagging import tune_bias, tuning_records

    folder = scratch / checkpoint.name
    folder.mkdir()
    for file in checkpoint.iterdir():
        if file.is_file() and not file.name.endswith((".pt", ".pth", ".bin")):
            (folder / file.name).symlink_to(file.resolve())
    manifest = json.loads((run_dir / "best" / "tagsmith.json").read_text(encoding="utf-8"))
    (folder / "tagsmith.json").write_text(json.dumps({**manifest, "decision_bias": 0.0}), encoding="utf-8")
    predictor = TaggingPredictor(folder, batch_size=64)
    config = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["config"]
    chosen, _ = tuning_records(validation, config.get("options") or {})
    logits = predictor.char_logits([validation[i]["text"] for i in chosen])
    predictor.bias, _ = tune_bias(predictor.task, [validation[i]["labels"] for i in chosen], logits)
    return predictor


def score(predictor, task_name: str, records: list[dict]) -> tuple[dict, float]:
    started = time.time()
    predicted = predictor.predict([r["text"] for r in records])
    seconds = time.time() - started
    gold = [r["labels"] for r in records]
    task = get_task(task_name)
    out = {"main": task.score(gold, predicted)[task.main_metric]}
    if task_name == "punctuation":  # its marks read as sentence ends
        segmentation = get_task("segmentation")
        as_ends = lambda labels: labels_from_ends([label != "O" for label in labels])  # noqa: E731
        out["segmentation_f1"] = segmentation.score([as_ends(g) for g in gold], [as_ends(p) for p in predicted])["f1"]
    else:
        out["segmentation_f1"] = out["main"]
    return out, sum(len(r["text"]) for r in records) / max(seconds, 1e-9)


def score_run(name: str, max_cclue: int, most: int = 0) -> list[dict]:
    from tagsmith.compact import load_tagging_splits
    from training.datasets import eval_indices
    from tagsmith.config import load_config

    run_dir = ROOT / "runs" / name
    config = load_config(run_dir / "config.yaml")
    task = get_task(config.task)
    validation = load_tagging_splits({"validation": config.data.validation}, task, config.data.exclude_kinds)[0]
    validation = validation["validation"].records(eval_indices(config, len(validation["validation"])))
    records = cclue_records(task.name)[:max_cclue] if max_cclue else cclue_records(task.name)
    start, at, per_batch = log_times(run_dir)
    offset_minutes, offset_chars = parent_minutes(run_dir)
    rows = []
    checkpoints = sorted((p for p in (run_dir / "checkpoints").glob("checkpoint-*") if (p / ".complete").is_file()
                          or (p / "model.safetensors").is_file()), key=lambda p: int(p.name.split("-")[1]))
    checkpoints = [c for c in checkpoints if int(c.name.split("-")[1]) in at]
    if most and len(checkpoints) > most:  # evenly spaced, the last one always
        keep = {round(i * (len(checkpoints) - 1) / (most - 1)) for i in range(most)} if most > 1 else {len(checkpoints) - 1}
        checkpoints = [c for i, c in enumerate(checkpoints) if i in keep]
    with tempfile.TemporaryDirectory() as scratch:
        for checkpoint in checkpoints:
            step = int(checkpoint.name.split("-")[1])
            if step not in at or start is None:
                continue
            minutes = (at[step] - start).total_seconds() / 60
            predictor = checkpoint_predictor(run_dir, checkpoint, validation, Path(scratch))
            scores, infer = score(predictor, task.name, records)
            chars = offset_chars + int(step * per_batch)
            rows.append({"run": name, "size": size_of(config), "step": step, "minutes": round(offset_minutes + minutes, 1),
                         "characters_seen": chars, "train_chars_per_second": round(step * per_batch / (minutes * 60), 1),
                         "cclue": scores, "bias": predictor.bias, "inference_chars_per_second": round(infer, 1)})
            console.print(f"{name} step {step}: {rows[-1]['minutes']} min, CCLUE {100 * scores['main']:.1f} "
                          f"(segmentation {100 * scores['segmentation_f1']:.1f})", highlight=False)
    return rows


def size_of(config) -> str:
    s = config.model.scratch
    head = config.model.head
    source = config.model.name_or_path or ""
    label = (f"{s.num_hidden_layers}x{s.hidden_size}" if not source else
             f"continues {Path(source).parent.name}" if source.endswith("best") else "pretrained")
    return label + (f" +CNN{head.cnn_filters}" if head.type == "cnn" else "")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for size in sorted({r["size"] for r in rows}):
        points = sorted((r["minutes"], 100 * r["cclue"]["main"], 100 * r["cclue"]["segmentation_f1"])
                        for r in rows if r["size"] == size)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{size}: punctuation micro-F1")
        ax.plot([p[0] for p in points], [p[2] for p in points], marker="s", linestyle="--",
                label=f"{size}: segmentation (any mark) F1")
    ax.set_xlabel("training minutes (2 CPU cores)")
    ax.set_ylabel("CCLUE dev prose F1 (%)")
    ax.set_title("Classical Chinese: out-of-sample F1 against training compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["punctuation-cpu"])
    parser.add_argument("--max-cclue", type=int, default=0, help="score only the first N CCLUE texts (0 = all)")
    parser.add_argument("--checkpoints", type=int, default=0, help="at most N evenly spaced checkpoints a run (0 = all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/scaling.json")
    args = parser.parse_args()
    if not CCLUE.is_file():
        sys.exit(f"{CCLUE} is absent: this benchmark needs the CCLUE dev file beside the repo (../shared/data)")
    rows = [row for name in args.runs for row in score_run(name, args.max_cclue, args.checkpoints)]
    table = Table(title="CCLUE dev prose (out of sample) against training compute; scores in %")
    for column in ("run", "model", "step", "minutes", "chars seen", "train chars/s", "punctuation F1",
                   "segmentation F1", "infer chars/s"):
        table.add_column(column, justify="left" if column in ("run", "model") else "right")
    for r in rows:
        table.add_row(r["run"], r["size"], str(r["step"]), f"{r['minutes']:.1f}", f"{r['characters_seen'] / 1e6:.1f}M",
                      f"{r['train_chars_per_second']:.0f}", f"{100 * r['cclue']['main']:.1f}",
                      f"{100 * r['cclue']['segmentation_f1']:.1f}", f"{r['inference_chars_per_second']:.0f}")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    plot(rows, args.out.with_suffix(".png"))
    console.print(f"written to {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
