"""Benchmark exported model packages: PyTorch eager fp32 vs ONNX fp32 vs ONNX int8 (``make bench``).

    python bench/export_bench.py                      # every package under models/
    python bench/export_bench.py models/punctuation --threads 1 --texts 512

For each package: a table on the console, and benchmark.json + benchmark.png (in the package, or --out/<task>).
The work is done by ``export.benchmark`` (the same code as ``tagsmith bench``); this script only finds the
packages and runs it on each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def find_packages(paths: list[str]) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    return sorted(p.parent for p in (ROOT / "models").glob("*/tagsmith.json"))


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from export.benchmark import BACKENDS, run_benchmark, table
    from export.checkpoint import ExportError
    from serving.runtime import PackageError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("packages", nargs="*", help="model packages (default: models/*/)")
    parser.add_argument("--data", type=Path, help="records to time (default: each package's evaluation data)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--texts", type=int, default=0, help="texts for throughput and the metric (0: the whole data file, 256-2000)")
    parser.add_argument("--latency-texts", type=int, default=100, help="texts timed one by one")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help="threads per backend (default: all cores)")
    parser.add_argument("--out", type=Path, help="write results to OUT/<task>/ instead of into each package")
    args = parser.parse_args(argv)

    console = errors = Console(stderr=True)
    packages = find_packages(args.packages)
    if not packages:
        errors.print("no model packages under models/: export one first with "
                     "`tagsmith export runs/<name>/best --out models/<task>`", soft_wrap=True)
        return 2
    failed = 0
    for package in packages:
        try:
            result = run_benchmark(package, args.data, args.backends.split(","), texts=args.texts,
                                   latency_texts=args.latency_texts, batch_size=args.batch_size, threads=args.threads,
                                   out=args.out / package.name if args.out else None,
                                   say=lambda line: console.print(line, highlight=False, soft_wrap=True))
        except (ExportError, PackageError) as error:
            errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            failed += 1
            continue
        Console(width=None if sys.stdout.isatty() else 160).print(table(result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
