"""Whole books: ``tagsmith punctuate FILE`` on a >= 1M-character text, against PyTorch on the same checkpoint, and
the shard scaling of the SLURM array on this one box.

Rows (each a fresh process; peak RSS from the kernel's accounting of that process):

* ``cli int8``: ``tagsmith punctuate BOOK -o OUT`` with the package (default the shipped one), all cores;
* ``cli int8, 1 thread``: the same on one core (what one array task with one CPU gets);
* ``pytorch``: the package's source checkpoint (``source.checkpoint`` of its manifest, or ``--checkpoint``) through
  ``training.predict.TaggingPredictor`` on the same paragraphs in the same chunks, all cores;
* ``slurm N x T``: ``containers/slurm/jobs submit punctuate --wait`` with N array tasks of T CPUs on the local
  SLURM (``--slurm``; start it with containers/local-slurm/up.sh): wall time from submission to the merge's end.

The book: the held-out documents of the classical-modern recipe (test, then validation split) with their marks,
until 1M characters (``--input`` for another text). Marks are stripped and restored, so the run is also scored:
micro-F1 of the restored marks against the book's own (``existing=strip``).

    python bench/whole_book.py [--slurm] [--input BOOK.txt] [--package DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "whole-book"
CHUNK_CHARS = 32768


def build_book(target: Path, characters: int) -> Path:
    """The held-out classical-modern documents with their marks, one paragraph a line."""
    folder = ROOT / "data" / "classical-modern" / "punctuation"
    splits = [folder / "test.jsonl", folder / "validation.jsonl"]
    if not all(p.is_file() for p in splits):
        raise SystemExit(f"no {folder}/test.jsonl: build the corpus first (tagsmith data fetch classical-modern "
                         "--local ...), or pass --input")
    lines, total = [], 0
    for split in splits:
        for record in map(json.loads, split.open(encoding="utf-8")):
            lines.append("".join(c + (m if m != "O" else "") for c, m in zip(record["text"], record["labels"])))
            total += len(lines[-1])
            if total >= characters:
                break
        if total >= characters:
            break
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def timed(command: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, stderr tail) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    err = process.stderr.read().decode(errors="replace")
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{err[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, err[-500:]


def score(book: Path, output: Path) -> dict:
    """Micro-F1 of the output's marks against the book's own (tagsmith.tasks.parse_punctuated on both)."""
    from tagsmith.tasks import get_task

    task = get_task("punctuation")
    gold, predicted = [], []
    for a, b in zip(book.read_text(encoding="utf-8").splitlines(), output.read_text(encoding="utf-8").splitlines()):
        chars_a, labels_a = task.labels_from_punctuated(a)
        chars_b, labels_b = task.labels_from_punctuated(b)
        assert chars_a == chars_b, "the output lost or changed characters"
        gold.append(labels_a)
        predicted.append(labels_b)
    metrics = task.score(gold, predicted)
    return {k: round(float(metrics[k]), 4) for k in ("micro_precision", "micro_recall", "micro_f1")}


def pytorch_worker(checkpoint: str, book: str, out: str, threads: int) -> None:
    """Runs in its own process: the book through PyTorch in the CLI's chunks, written like the CLI's output."""
    import torch

    from serving.bulk import Paragraph
    from training.predict import TaggingPredictor

    torch.set_num_threads(threads)
    predictor = TaggingPredictor(checkpoint)
    lines = Path(book).read_text(encoding="utf-8").split("\n")[:-1]
    with open(out, "w", encoding="utf-8") as handle:
        chunk, size = [], 0
        for line in lines + [None]:
            if line is not None:
                chunk.append(Paragraph.of(line).content)
                size += len(line)
            if chunk and (line is None or size >= CHUNK_CHARS):
                texts = [t for t in chunk if t]
                rendered = iter(predictor.render(texts))
                handle.write("".join((next(rendered) if t else "") + "\n" for t in chunk))
                chunk, size = [], 0


def slurm_run(book: Path, package: Path, shards: int, cpus: int, out: Path) -> float:
    env = {"PUNCTUATE_INPUT": str(book), "PUNCTUATE_SHARDS": str(shards), "PUNCTUATE_OUT": str(out),
           "PUNCTUATE_PACKAGE": str(package), "PUNCTUATE_ARGS": "", "CPUS_PER_TASK": str(cpus), "GPUS_PER_NODE": "0",
           "CONTAINER": "none", "VENV": sys.prefix, "LOG_DIR": str(out / "logs"), "RUNS_DIR": str(out / "runs"),
           "TIME_LIMIT": "02:00:00", "SIGNAL_LEAD": "", "PARTITION": "", "HF_HUB_OFFLINE": "1"}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}, **env}
    started = time.perf_counter()
    done = subprocess.run([str(ROOT / "containers" / "slurm" / "jobs"), "submit", "punctuate", "--wait"], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"slurm {shards} x {cpus} failed: {done.stdout}\n{done.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="A text file, one paragraph a line (default: held-out classical-modern).")
    parser.add_argument("--characters", type=int, default=1_000_000)
    parser.add_argument("--package", type=Path, default=ROOT / "serving" / "shipped" / "punctuation")
    parser.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint (default: the package's source.checkpoint).")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--slurm", action="store_true", help="Also time the SLURM array on the local cluster.")
    parser.add_argument("--pytorch-worker", nargs=4, metavar=("CHECKPOINT", "BOOK", "OUT", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pytorch_worker:
        checkpoint, book, out, threads = args.pytorch_worker
        pytorch_worker(checkpoint, book, out, int(threads))
        return

    book = args.input or build_book(RESULTS / "book.txt", args.characters)
    text = book.read_text(encoding="utf-8")
    characters, paragraphs = len(text) - text.count("\n"), text.count("\n")
    manifest = json.loads((args.package / "tagsmith.json").read_text(encoding="utf-8"))
    checkpoint = args.checkpoint or Path(manifest.get("source", {}).get("checkpoint", ""))
    rows = []

    def add(name: str, seconds: float, rss: float, output: Path | None, **extra) -> None:
        row = {"run": name, "seconds": round(seconds, 1), "chars_per_second": round(characters / seconds),
               "peak_rss_mib": round(rss) if rss else None, **extra}
        if output is not None:
            row.update(score(book, output))
        rows.append(row)
        Console(stderr=True).print(row)

    cli = [sys.executable, "-m", "tagsmith.cli", "punctuate", str(book), "--package", str(args.package), "--overwrite",
           "--quiet", "--chunk-chars", str(CHUNK_CHARS)]
    out = RESULTS / "cli-int8.txt"
    seconds, rss, _ = timed(cli + ["-o", str(out), "--threads", str(args.threads)])
    add(f"cli int8, {args.threads} threads", seconds, rss, out)
    out1 = RESULTS / "cli-int8-1thread.txt"
    seconds, rss, _ = timed(cli + ["-o", str(out1), "--threads", "1"])
    add("cli int8, 1 thread", seconds, rss, out1)
    if (checkpoint / "config.json").is_file():
        out_pt = RESULTS / "pytorch.txt"
        seconds, rss, _ = timed([sys.executable, __file__, "--pytorch-worker", str(checkpoint), str(book), str(out_pt),
                                 str(args.threads)])
        add(f"pytorch fp32 ({checkpoint.name}), {args.threads} threads", seconds, rss, out_pt)
    else:
        Console(stderr=True).print(f"no PyTorch row: checkpoint {checkpoint} not found (--checkpoint)")
    if args.slurm:
        for shards, cpus in ((1, 1), (2, 1), (1, 2)):
            folder = RESULTS / f"slurm-{shards}x{cpus}"
            subprocess.run(["rm", "-rf", str(folder)])
            seconds = slurm_run(book, args.package, shards, cpus, folder)
            merged = folder / book.name
            add(f"slurm array {shards} task(s) x {cpus} CPU", seconds, 0, merged,
                identical_to_cli=merged.read_bytes() == out.read_bytes())

    result = {"book": str(book), "characters": characters, "paragraphs": paragraphs, "package": str(args.package),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_count": os.cpu_count(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS.parent / "whole_book.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    table = Table(title=f"whole book: {characters:,} characters, {paragraphs:,} paragraphs ({book.name})")
    for column in ("run", "seconds", "chars/s", "peak RSS MiB", "micro-F1 (P / R)"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        table.add_row(row["run"], f"{row['seconds']:.1f}", f"{row['chars_per_second']:,}",
                      str(row["peak_rss_mib"] or "-"),
                      f"{row['micro_f1']:.3f} ({row['micro_precision']:.3f} / {row['micro_recall']:.3f})")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
