"""The ``tagsmith`` command. Each stage is imported lazily inside its sub-command, so ``tagsmith data ...``
works with the torch-free core alone and ``tagsmith serve`` never imports torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(help="Train, export and serve encoder taggers and classifiers.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Validate, convert, split and fetch data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@data_app.command("validate")
def data_validate(
    files: List[Path] = typer.Argument(..., help="Record files (JSON array, JSONL, .txt for mlm)."),
    task: str = typer.Option(..., "--task", "-t", help="Task the records are for."),
):
    """Check record files; prints one line per bad record and exits 1 if any."""
    from tagsmith.records import validate_file
    from tagsmith.tasks import get_task

    try:
        task_spec = get_task(task)
    except KeyError as error:
        fail(str(error))
    bad = 0
    for path in files:
        try:
            parsed = validate_file(path, task_spec)
        except FileNotFoundError as error:
            fail(str(error))
        for problem in parsed.problems:
            print(problem)
        bad += len(parsed.problems)
        console.print(f"{path}: {len(parsed.records)} records, {len(parsed.problems)} problem(s)", highlight=False)
    if bad:
        raise typer.Exit(1)


@data_app.command("convert")
def data_convert(
    source: Path = typer.Argument(..., help="Punctuated text: .txt (one document per line) or JSONL with a 'text' field."),
    task: str = typer.Option(..., "--task", "-t", help="segmentation or punctuation"),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL of records."),
    script: str = typer.Option("keep", help="keep, simplified or traditional (OpenCC)."),
):
    """Punctuated raw text -> tagging records (marks normalised, quotes dropped, whitespace removed)."""
    from tagsmith.convert import ConversionReport, convert_lines
    from tagsmith.records import read_record_file, write_jsonl
    from tagsmith.tasks import get_task

    try:
        get_task(task)
        parsed = read_record_file(source)
    except (KeyError, FileNotFoundError) as error:
        fail(str(error))
    if parsed.problems:
        for problem in parsed.problems:
            print(problem)
        raise typer.Exit(1)
    report = ConversionReport()
    texts = [r.get("text", "") if isinstance(r, dict) else "" for r in parsed.records]
    try:
        count = write_jsonl(out, convert_lines(texts, task, script, report))
    except ValueError as error:
        fail(str(error))
    console.print(f"wrote {count} records to {out}")
    print(json.dumps({**report.as_dict(), "script": script}, ensure_ascii=False, indent=2))


@data_app.command("split")
def data_split(
    source: Path = typer.Argument(..., help="JSONL records with a document field."),
    out_dir: Path = typer.Option(..., "--out-dir", "-o"),
    fractions: str = typer.Option("0.8,0.1,0.1", help="train,validation,test fractions by characters."),
    document_key: str = typer.Option("doc", help="Field naming the document a record belongs to."),
    seed: int = 42,
):
    """Split by document into train/validation/test with no text shared across splits."""
    from tagsmith.records import read_record_file, write_jsonl
    from tagsmith.split import split_by_document

    parsed = read_record_file(source)
    if parsed.problems:
        for problem in parsed.problems:
            print(problem)
        raise typer.Exit(1)
    try:
        parts = tuple(float(x) for x in fractions.split(","))
        splits, report = split_by_document(parsed.records, parts, document_key, seed)
    except ValueError as error:
        fail(str(error))
    for name, records in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", records)
    print(json.dumps(report, indent=2))


@data_app.command("fetch")
def data_fetch(
    recipe: str = typer.Argument(..., help="chinese-poetry (npm package) or olid."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default data/<recipe>)."),
    cache: Path = typer.Option(Path(".cache"), help="Download cache."),
    script: str = typer.Option("simplified", help="chinese-poetry: keep, simplified or traditional."),
    local: Optional[Path] = typer.Option(None, help="olid: a local copy (folder or TSV) instead of the hub."),
    force: bool = typer.Option(False, help="Rebuild even when cached."),
):
    """Build record files from a public corpus (cached: a second run does nothing)."""
    out = out or Path("data") / recipe
    try:
        if recipe == "chinese-poetry":
            from tagsmith.datasets import build_chinese_poetry

            meta = build_chinese_poetry(out, cache, script=script, force=force)
        elif recipe == "olid":
            from tagsmith.recipes.olid import fetch_olid

            meta = fetch_olid(out, local_copy=local)
        else:
            fail(f"unknown recipe {recipe!r}; known: chinese-poetry, olid")
    except RuntimeError as error:
        fail(str(error))
    console.print(f"[green]data ready in {out}[/]")
    print(json.dumps(meta, ensure_ascii=False, indent=2)[:4000])


@app.command()
def train(
    config: Path = typer.Option(..., "--config", "-c", help="Experiment YAML (training/configs/*.yaml)."),
    resume: bool = typer.Option(False, help="Continue from the newest complete checkpoint in the run dir."),
    overwrite: bool = typer.Option(False, help="Delete an existing run dir of the same name first."),
    run_dir: Optional[Path] = typer.Option(None, help="Run directory (default <output_dir>/<name>)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set trainer.learning_rate=3e-5"),
):
    """Train a model from a config; exit code 75 means 'stopped by a signal after a checkpoint: resume me'."""
    from tagsmith.config import ConfigError, load_config
    from tagsmith.records import DataValidationError

    try:
        overrides = list(set_)
        if run_dir is not None:
            overrides += [f"output_dir={run_dir.parent}", f"name={run_dir.name}"]
        cfg = load_config(config, overrides)
    except ConfigError as error:
        fail(str(error))
    from training.model import CheckpointError
    from training.runner import RunDirError
    from training.train import train as run_training

    try:
        code = run_training(cfg, resume=resume, overwrite=overwrite)
    except DataValidationError as error:
        for problem in error.problems:
            print(problem)
        fail(f"{len(error.problems)} bad record(s); nothing was trained", 1)
    except (RunDirError, CheckpointError, ConfigError, FileNotFoundError) as error:
        fail(str(error))
    raise typer.Exit(code)


@app.command()
def predict(
    model: Path = typer.Argument(..., help="A run's best/ directory."),
    texts: List[str] = typer.Argument(None, help="Texts; read from stdin (one per line) when none are given."),
):
    """Print segmented / punctuated text (or labels) for each input."""
    from training.model import CheckpointError
    from training.predict import TaggingPredictor

    texts = texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        fail("no input text")
    try:
        predictor = TaggingPredictor(model)
    except CheckpointError as error:
        fail(str(error))
    for line in predictor.render(texts):
        print(line)


def main() -> None:  # python -m tagsmith.cli (torchrun entry point)
    app()


if __name__ == "__main__":
    main()
