"""Distributed training throughput on CPU (issue #6): one process with 2 threads vs torchrun with 2 processes of
1 thread each (DDP over gloo), the same config, steps and global batch.

Trains the tiny segmentation config (chinese-poetry data) for a fixed number of steps each way and prints one
table: processes, threads per process, train characters/second in all and per process, seconds. Throughput is the
run's own ``train_chars_per_second`` from results.json: characters of the training records x epochs trained /
seconds in Trainer.train (which holds one evaluation on a capped validation set and one checkpoint, at the end).

    python bench/distributed.py                                  # 200 steps of segmentation-tiny
    python bench/distributed.py --steps 100 --set model.scratch.hidden_size=128 --set max_length=256
    python bench/distributed.py --layouts 1x1 1x2 2x1            # with a one-thread reference run

On a machine shared with other work, several threads of one process suffer most: each parallel region waits for
its slowest thread, so one busy core slows every step of 1x2, while 2x1 loses only its share of that core.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

CONFIG = ROOT / "training" / "configs" / "segmentation-tiny.yaml"
GLOBAL_BATCH = 32  # the tiny config's per_device_train_batch_size: 1 x 32, or 2 x 16 under torchrun
TIMEOUT = 1800  # s a run may take before it counts as hung
console = Console(width=170)


def ensure_data() -> None:
    if not (ROOT / "data/chinese-poetry/meta.json").is_file():
        subprocess.run([sys.executable, "-m", "tagsmith.cli", "data", "fetch", "chinese-poetry"], cwd=ROOT, check=True)


def train(label: str, processes: int, threads: int, steps: int, overrides: list[str], runs: Path) -> dict:
    run_dir = runs / label
    settings = [f"trainer.max_steps={steps}", f"trainer.eval_steps={steps}", "trainer.logging_steps=50",
                f"trainer.per_device_train_batch_size={GLOBAL_BATCH // processes}", "data.max_eval_records=50",
                "early_stopping_patience=1000", *overrides]
    target = ["-m", "tagsmith.cli", "train", "--config", str(CONFIG), "--run-dir", str(run_dir), "--overwrite",
              *[arg for setting in settings for arg in ("--set", setting)]]
    if processes == 1:
        command = [sys.executable, *target]
    else:  # --standalone: a c10d rendezvous on a free localhost port torchrun picks itself
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                   "--nproc_per_node", str(processes), "--max_restarts", "0", *target]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    console.print(f"[bold]{label}[/]: {processes} process(es) x {threads} thread(s), {steps} steps")
    started = time.time()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun and its workers
        output, _ = process.communicate()
        sys.exit(f"{label} did not finish in {TIMEOUT} s:\n{output[-3000:]}")
    wall = time.time() - started
    if process.returncode != 0:
        sys.exit(f"{label} failed (exit {process.returncode}):\n{output[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    total = results["train_chars_per_second"]
    return {
        "run": label, "processes": processes, "threads_per_process": threads, "steps": results["global_step"],
        "global_batch": GLOBAL_BATCH, "train_seconds": results["train_seconds"], "wall_seconds": round(wall, 1),
        "train_chars_per_second": total, "train_chars_per_second_per_process": round(total / processes, 1),
        "test_f1": results.get("test", {}).get("f1"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], metavar="PxT",
                        help="processes x threads per process; P > 1 runs under torchrun")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for both runs, e.g. model.scratch.hidden_size=128")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-distributed")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/distributed.json")
    args = parser.parse_args()
    ensure_data()
    rows = []
    for layout in args.layouts:
        processes, threads = (int(n) for n in layout.split("x"))
        label = f"torchrun-{layout}" if processes > 1 else layout
        rows.append(train(label, processes, threads, args.steps, args.overrides, args.runs))

    overrides = f", {' '.join(args.overrides)}" if args.overrides else ""
    table = Table(title=f"segmentation-tiny{overrides}: {args.steps} steps, global batch {GLOBAL_BATCH}, CPU "
                        f"({os.cpu_count()} cores)")
    for column in ("run", "processes", "threads/process", "train chars/s", "chars/s per process", "train s",
                   "wall s", "test F1"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        table.add_row(row["run"], str(row["processes"]), str(row["threads_per_process"]),
                      f"{row['train_chars_per_second']:.0f}", f"{row['train_chars_per_second_per_process']:.0f}",
                      f"{row['train_seconds']:.1f}", f"{row['wall_seconds']:.1f}",
                      "-" if row["test_f1"] is None else f"{100 * row['test_f1']:.1f}")
    console.print(table)
    single = {r["run"]: r for r in rows}.get("1x2")
    for row in rows:
        if single and row["processes"] > 1:
            speedup = row["train_chars_per_second"] / max(single["train_chars_per_second"], 1e-9)
            console.print(f"{row['run']} vs 1 process x 2 threads: {speedup:.2f}x the training throughput")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
