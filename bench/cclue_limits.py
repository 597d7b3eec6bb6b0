"""What limits the ``*-cpu`` taggers on CCLUE dev prose (issue #2): the model and its training, or the text?

Two probes, both diagnostics (never a shipped model: CCLUE is the evaluation set, and each probe only ever scores
on text it did not train or tune on):

* ``ensemble``: average the boundary probabilities of several trained runs (segmentation: P(E)+P(S);
  punctuation: 1-P(O)) and score CCLUE at a few thresholds. The best threshold is an oracle, so the row is an upper
  bound on what less variance (more models, more seeds, more steps of the same recipe) can give.
* ``in-domain``: split CCLUE dev prose in two (alternate records; a text in both halves stays in the first), fine-tune
  the run on the first half (a tenth of it held out to pick the checkpoint and tune the bias) and score both the run
  and the fine-tuned run on the second half. The gain is what ~0.13M characters of the right kind of prose are worth
  to the same model.

    python bench/cclue_limits.py ensemble --runs segmentation-cpu segmentation-cpu-cd10 punctuation-cpu
    python bench/cclue_limits.py in-domain --run segmentation-cpu --steps 1500
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rich.console import Console  # noqa: E402

from tagging import CCLUE, cclue_records  # noqa: E402
from tagsmith.tasks import get_task, labels_from_ends  # noqa: E402

console = Console(width=150)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def boundary_probabilities(run: str, texts: list[str]) -> list[np.ndarray]:
    from training.predict import TaggingPredictor

    predictor = TaggingPredictor(ROOT / "runs" / run / "best", batch_size=64)
    labels = list(predictor.task.labels)
    out = []
    for logits in predictor.char_logits(texts):
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        if predictor.task.name == "segmentation":
            out.append(p[:, labels.index("E")] + p[:, labels.index("S")])
        else:
            out.append(1 - p[:, labels.index("O")])
    return out


def ensemble(runs: list[str]) -> None:
    task = get_task("segmentation")
    records = cclue_records("segmentation")
    texts, gold = [r["text"] for r in records], [r["labels"] for r in records]
    probabilities = {run: boundary_probabilities(run, texts) for run in runs}
    combos = {run: [run] for run in runs}
    combos[" + ".join(runs)] = runs
    for name, members in combos.items():
        mean = [np.mean([probabilities[m][i] for m in members], axis=0) for i in range(len(texts))]
        scores = {t: task.score(gold, [labels_from_ends(p > t) for p in mean])["f1"] for t in THRESHOLDS}
        console.print(f"{name}: boundary F1 at threshold " + ", ".join(f"{t}: {100 * f:.1f}" for t, f in scores.items())
                      + f"  (best {100 * max(scores.values()):.1f}, an oracle threshold)")


def write_halves(task: str, out: Path) -> dict[str, Path]:
    records = cclue_records(task)
    first = [r for i, r in enumerate(records) if i % 2 == 0]
    seen = {r["text"] for r in first}
    second = [r for i, r in enumerate(records) if i % 2 == 1 and r["text"] not in seen]
    parts = {"train": [r for i, r in enumerate(first) if i % 10], "validation": first[::10], "test": second}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in parts.items():
        paths[name] = out / f"{task}-{name}.jsonl"
        with paths[name].open("w", encoding="utf-8") as f:
            for i, r in enumerate(rows):  # each record its own document, kind prose, its CCLUE category as collection
                f.write(json.dumps({"text": r["text"], "labels": r["labels"], "doc": f"cclue-{name}-{i}", "kind": "prose",
                                    "collection": r["category"]}, ensure_ascii=False) + "\n")
        console.print(f"{paths[name]}: {len(rows)} records, {sum(len(r['text']) for r in rows)} characters")
    return paths


def score_on(run_dir: Path, path: Path) -> dict:
    from training.predict import TaggingPredictor

    predictor = TaggingPredictor(run_dir / "best", batch_size=64)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return predictor.task.score([r["labels"] for r in rows], predictor.predict([r["text"] for r in rows]))


def in_domain(run: str, steps: int, learning_rate: float) -> None:
    base = ROOT / "runs" / run
    results = json.loads((base / "results.json").read_text(encoding="utf-8"))
    task = get_task(results["task"])
    paths = write_halves(task.name, ROOT / "runs" / "cclue-halves")
    name = f"{run}-cclue-half"
    subprocess.run([sys.executable, "-m", "tagsmith.cli", "train", "--config", str(base / "config.yaml"),
                    "--set", f"name={name}", "--set", f"model.name_or_path={base / 'best'}",
                    "--set", f"data.train={paths['train']}", "--set", f"data.validation={paths['validation']}",
                    "--set", f"data.test={paths['test']}", "--set", "data.oversample={}",
                    "--set", "options.tune_on_collections=null", "--set", f"trainer.max_steps={steps}",
                    "--set", f"trainer.learning_rate={learning_rate}", "--set", f"trainer.eval_steps={max(steps // 3, 1)}",
                    "--overwrite"], cwd=ROOT, check=True)
    metric = task.main_metric
    before, after = score_on(base, paths["test"]), score_on(ROOT / "runs" / name, paths["test"])
    console.print(f"{task.name} {metric} on the second half of CCLUE dev prose: {run} {100 * before[metric]:.1f} -> "
                  f"fine-tuned {steps} steps on the first half {100 * after[metric]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="probe", required=True)
    e = sub.add_parser("ensemble", help="average several runs' boundary probabilities")
    e.add_argument("--runs", nargs="+", default=["segmentation-cpu", "punctuation-cpu"])
    d = sub.add_parser("in-domain", help="fine-tune a run on half of CCLUE dev prose, score on the other half")
    d.add_argument("--run", default="segmentation-cpu")
    d.add_argument("--steps", type=int, default=1500)
    d.add_argument("--learning-rate", type=float, default=2e-4)
    args = parser.parse_args()
    if not CCLUE.is_file():
        sys.exit(f"{CCLUE} is absent: this benchmark needs the CCLUE dev file beside the repo (../shared/data)")
    if args.probe == "ensemble":
        ensemble(args.runs)
    else:
        in_domain(args.run, args.steps, args.learning_rate)


if __name__ == "__main__":
    main()
