"""Toxicity and masked-LM domain-adaptation benchmark (issue #3), one command, tables printed.

1. toxicity-cpu on the OLID training file split into train/validation/test (validation = the bar's split):
   macro-F1, toxic F1, ROC-AUC, training minutes, texts/s.
2. mlm-biomed / mlm-finance / mlm-mixed: perplexity and top-1 / top-5 before -> after on each run's held-out
   split (the same masked positions before and after).
3. finance sentiment (3 labels) fine-tuned from the original encoder vs from mlm-finance's adapted encoder.

Needs a local copy of the data (../shared/data beside the repo, or --olid / --domain-text); runs that exist
are reused (delete runs/<name> to retrain).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(width=170)


def tagsmith(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "tagsmith.cli", *args], cwd=ROOT, check=True)


def train(config: str, name: str | None = None, *overrides: str) -> dict:
    run = ROOT / "runs" / (name or config)
    if not (run / "results.json").is_file():
        sets = [x for o in overrides for x in ("--set", o)] + (["--set", f"name={name}"] if name else [])
        tagsmith("train", "--config", f"training/configs/{config}.yaml", "--overwrite", *sets)
    return json.loads((run / "results.json").read_text(encoding="utf-8"))


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def toxicity_table(results: dict) -> Table:
    table = Table(title="toxicity-cpu on OLID (held-out splits of the official training file)")
    for c in ("split", "macro-F1", "toxic F1", "P", "R", "ROC-AUC", "PR-AUC", "threshold", "train min", "train texts/s",
              "infer texts/s"):
        table.add_column(c, justify="right")
    for split in ("validation", "test"):
        m = results[split]
        table.add_row(split, pct(m["macro_f1"]), pct(m["f1"]), pct(m["precision"]), pct(m["recall"]), pct(m["roc_auc"]),
                      pct(m["pr_auc"]), f"{results['threshold']:.3f}", f"{results['train_seconds'] / 60:.1f}",
                      f"{results['train_texts_per_second']:.0f}", f"{results.get('inference_texts_per_second', 0):.0f}")
    return table


def mlm_table(runs: dict[str, dict]) -> Table:
    table = Table(title="masked-LM adaptation: held-out split of each run's own domain")
    for c in ("run", "ppl before", "ppl after", "top-1 before", "top-1 after", "top-5 before", "top-5 after", "steps",
              "train min"):
        table.add_column(c, justify="right")
    for name, r in runs.items():
        b, a = r["before"], r["after"]
        table.add_row(name, f"{b['perplexity']:.1f}", f"{a['perplexity']:.1f}", pct(b["top1_accuracy"]),
                      pct(a["top1_accuracy"]), pct(b["top5_accuracy"]), pct(a["top5_accuracy"]), str(r["global_step"]),
                      f"{r['train_seconds'] / 60:.1f}")
    return table


def sentiment_table(original: dict, adapted: dict) -> Table:
    table = Table(title="finance sentiment (negative / neutral / positive), test split")
    for c in ("encoder", "accuracy", "macro-F1", "weighted-F1", "train min"):
        table.add_column(c, justify="right")
    for name, r in (("original all-MiniLM-L6-v2", original), ("adapted (mlm-finance)", adapted)):
        t = r["test"]
        table.add_row(name, pct(t["accuracy"]), pct(t["macro_f1"]), pct(t["weighted_f1"]), f"{r['train_seconds'] / 60:.1f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--olid", type=Path, default=SHARED / "olid")
    parser.add_argument("--domain-text", type=Path, default=SHARED / "domain_text")
    parser.add_argument("--skip", nargs="*", default=[], choices=["toxicity", "mlm", "sentiment"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/domain.json")
    args = parser.parse_args()
    report: dict = {}
    if "toxicity" not in args.skip:
        tagsmith("data", "fetch", "olid", "--local", str(args.olid))
        report["toxicity"] = train("toxicity-cpu")
        console.print(toxicity_table(report["toxicity"]))
    if "mlm" not in args.skip or "sentiment" not in args.skip:
        tagsmith("data", "fetch", "domain-text", "--local", str(args.domain_text), "--out", "data/domain-text")
    if "mlm" not in args.skip:
        report["mlm"] = {name: train(name) for name in ("mlm-biomed", "mlm-finance", "mlm-mixed")}
        console.print(mlm_table(report["mlm"]))
    if "sentiment" not in args.skip:
        train("mlm-finance")
        original = train("finance-sentiment", "finance-sentiment-original")
        adapted = train("finance-sentiment", "finance-sentiment-adapted", "model.name_or_path=runs/mlm-finance/best")
        report["sentiment"] = {"original": original, "adapted": adapted}
        console.print(sentiment_table(original, adapted))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
