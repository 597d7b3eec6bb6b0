"""``tagsmith export``: a run's best/ checkpoint -> a model package (ONNX fp32, int8 when it keeps the accuracy).

Steps: check the checkpoint; export fp32 ONNX; keep ONNX Runtime's transformer graph optimisation when it
keeps parity and is faster; quantise to int8 (and fp16 on request); run the validation split through PyTorch
and every ONNX model with ``serving.runtime``; publish int8 only when its task metric is within ``max_drop``
of PyTorch's; write the manifest with the sha256 of every file; move the package into place.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from export import onnx_models, package
from export.checkpoint import ExportError, inspect_checkpoint
from export.parity import evaluate, find_eval_data, int8_verdict, make_eval, progress_bar, read_records
from export.reference import load_reference
from serving.runtime import RUNTIMES, TokenIds


@dataclass
class ExportOptions:
    out: Path | None = None  # default models/<task>
    data: Path | None = None  # default: data.validation of RUN_DIR/config.yaml
    int8: bool = True
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights for CPUs without VNNI
    fp16: bool = False
    quantize_conv: bool = False  # ConvInteger for the CNN head: a third smaller, slower on CPUs without VNNI
    int8_only: bool = False  # ship the int8 model alone: fp32 is deleted after the gate (a small, shippable package)
    optimize: str = "auto"  # auto (when parity holds and it is faster) | always (when parity holds) | never
    max_drop: float = 0.005  # largest allowed fall of the int8 task metric below PyTorch's (0-1 scale)
    min_agreement: float = 0.99  # int8 predictions agreeing with PyTorch below this: try keeping layers in fp32
    fallback: bool = True  # allow those fp32 fallbacks at all
    atol: float = 1e-3  # largest allowed |logit difference| between ONNX fp32 and PyTorch
    max_records: int = 2000  # evaluation records (seeded sample of the file); with 500 tweets, 7 flips = 1.4%
    opset: int = onnx_models.OPSET
    threads: int | None = None
    seed: int = 0
    progress: bool = True  # progress bars (stderr) for the parity passes and the quantisation


def export_package(checkpoint_path: str | Path, options: ExportOptions | None = None,
                   say: Callable[[str], None] = print) -> dict:
    """Export ``checkpoint_path`` to ``options.out``; returns the package manifest. Raises ExportError."""
    options = options or ExportOptions()
    if options.optimize not in ("auto", "always", "never"):
        raise ExportError(f"optimize must be auto, always or never, got {options.optimize!r}")
    checkpoint = inspect_checkpoint(checkpoint_path)
    data = find_eval_data(checkpoint, options.data)
    records = read_records(data, options.max_records, options.seed)
    out = Path(options.out) if options.out else Path("models") / checkpoint.task
    staging = package.staging_dir(out)
    try:
        manifest = _build(checkpoint, data, records, staging, options, say, out)
        package.install(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _build(checkpoint, data: Path, records: list[dict], staging: Path, options: ExportOptions, say,
           out: Path | None = None) -> dict:
    started = time.time()
    reference = load_reference(checkpoint)
    tokenizer = reference.predictor.tokenizer if checkpoint.kind == "tagging" else reference.tokenizer
    special = package.write_tokenizer(tokenizer, staging)
    parameters = sum(p.numel() for p in reference.model.parameters())
    manifest = package.base_manifest(checkpoint, tokenizer, special, parameters)
    package.write_hf_files(checkpoint, tokenizer, staging, manifest["max_length"])  # optimum opens linear heads
    evaluation = make_eval(checkpoint.kind, records, manifest, staging, options.seed, progress=options.progress)
    metric = evaluation.metric

    def runtime(file: str, variant: str):
        return RUNTIMES[checkpoint.kind](staging, {**manifest, "models": {variant: file}}, variant, threads=options.threads)

    with onnx_models.quiet():  # transformers' tokenizer advice is not for this caller
        torch_result = evaluate(evaluation, reference, desc="parity: PyTorch")
    size = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in evaluation.size.items())
    say(f"PyTorch on {data} ({size}): {metric} {torch_result.metric:.4f}")

    fp32_file = staging / package.MODEL_FILES["fp32"]
    onnx_models.export_fp32(checkpoint, reference.model, fp32_file, options.opset)
    fp32 = evaluate(evaluation, runtime(fp32_file.name, "fp32"), torch_result, desc="parity: ONNX fp32")
    if fp32.max_abs_logit_diff > options.atol:
        raise ExportError(f"ONNX fp32 differs from PyTorch by up to {fp32.max_abs_logit_diff:.3g} in the logits "
                          f"(allowed {options.atol:g}); nothing was published")
    optimization, fp32, int8_made = _optimize(checkpoint, staging, fp32_file, fp32, evaluation, torch_result, runtime,
                                              options)
    say(f"ONNX fp32: {metric} {fp32.metric:.4f}, max |logit diff| {fp32.max_abs_logit_diff:.2g}, "
        f"agreement {fp32.agreement:.2%}; graph optimisation: {optimization['decision']}")

    models = {"fp32": fp32_file.name}
    parity = {"pytorch": torch_result.as_dict(metric), "onnx_fp32": fp32.as_dict(metric)}
    published, reason, quantization = "fp32", "int8 not requested (--no-int8)", None
    if options.int8:
        int8_file = staging / package.MODEL_FILES["int8"]
        # the timing step of graph optimisation already quantised the chosen graph into int8_file: reused
        quantization, int8 = _quantize(fp32_file, int8_file, evaluation, torch_result, runtime, options, say,
                                       made=int8_made)
        refused = int8_verdict(torch_result, int8, options.max_drop)
        parity["onnx_int8"] = {**int8.as_dict(metric), "published": refused is None}
        say(f"ONNX int8: {metric} {int8.metric:.4f}, agreement with PyTorch {int8.agreement:.2%}")
        if refused:
            int8_file.unlink()
            parity["onnx_int8"]["refused"] = refused
            reason = f"int8 refused: {refused}; serving fp32"
        else:
            models["int8"], published = int8_file.name, "int8"
            reason = f"int8 {metric} within {options.max_drop:g} of PyTorch"
    if options.fp16:
        parity["onnx_fp16"] = _fp16(fp32_file, staging, evaluation, torch_result, runtime, options, models)
    if options.int8_only:
        if published != "int8":
            raise ExportError(f"--int8-only: {reason}; nothing was published")
        fp32_file.unlink()
        del models["fp32"]
        reason += "; int8 only (fp32 checked, then left out of the package)"
    say(f"published: {published} ({reason})")

    manifest.update(
        models=models,
        published=published,
        publish_reason=reason,
        parity={"data": str(data.resolve()), **evaluation.size, "metric": metric, "max_drop": options.max_drop,
                "atol": options.atol, **parity},
        graph_optimization=optimization,
        quantization=quantization,
        versions=package.versions(),
        export={"created": package.created(), "git_commit": package.git_commit(), "seconds": round(time.time() - started, 1),
                "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}},
    )
    manifest = package.finish_manifest(staging, manifest)
    manifest = package.write_card(staging, Path(out) if out is not None else staging, manifest)
    if manifest["card"]["user_card_kept"]:
        say(f"model card: kept the README.md written for this package; the generated card is {manifest['card']['file']}")
    return manifest


def _quantize(fp32_file, int8_file, evaluation, torch_result, runtime, options, say, made: dict | None = None):
    """int8 of the whole graph; when it agrees with PyTorch on fewer than ``min_agreement`` of the predictions,
    the same with the most outlier-sensitive layers kept in fp32 (onnx_models.fp32_fallbacks), mildest first,
    until one agrees well enough; the best-agreeing try is kept. ``made``: the settings of a whole-graph int8 of
    ``fp32_file`` already in ``int8_file`` (written while timing the graphs), used as the first try. Returns
    (settings, result)."""
    fallbacks = onnx_models.fp32_fallbacks(fp32_file) if options.fallback else []
    # one step per int8 graph made and checked: the whole graph, then each fp32 fallback tried
    bar = progress_bar(1 + len(fallbacks), "int8 quantisation", options.progress, unit="graph")

    def attempt(keep, what="whole graph"):
        settings = onnx_models.quantize_int8(fp32_file, int8_file, options.per_channel, options.reduce_range, keep,
                                             conv=options.quantize_conv)
        checked = evaluate(evaluation, runtime(int8_file.name, "int8"), torch_result, desc=f"parity: ONNX int8 ({what})")
        bar.update(1)
        return settings, checked

    try:
        if made is not None and int8_file.is_file():
            result = evaluate(evaluation, runtime(int8_file.name, "int8"), torch_result,
                              desc="parity: ONNX int8 (whole graph)")
            settings = made
            bar.update(1)
        else:
            settings, result = attempt(())
        tried = [{"kept_fp32": "nothing", "agreement": round(result.agreement, 6), "metric": round(result.metric, 6)}]
        best_keep = last_keep = ()
        for what, keep in fallbacks:
            if result.agreement >= options.min_agreement:
                break
            say(f"ONNX int8 agrees with PyTorch on {result.agreement:.2%} (< {options.min_agreement:.0%}): "
                f"trying the {what} in fp32")
            candidate_settings, candidate = attempt(keep, f"{what} in fp32")
            last_keep = keep
            tried.append({"kept_fp32": what, "agreement": round(candidate.agreement, 6), "metric": round(candidate.metric, 6)})
            if candidate.agreement > result.agreement:
                settings, result, best_keep = candidate_settings, candidate, keep
        if last_keep != best_keep:
            bar.total += 1
            settings, result = attempt(best_keep, "the best try, again")  # the file on disk is the last try
        bar.total = bar.n  # the fallbacks not needed are not steps left
        bar.refresh()
    finally:
        bar.close()
    return {**settings, "tried": tried}, result


def _optimize(checkpoint, staging, fp32_file, fp32, evaluation, torch_result, runtime, options):
    """Keep ONNX Runtime's fused graph only when it keeps parity (and, for ``auto``, runs faster). Returns the
    decision record, the fp32 result of the kept graph, and the quantisation settings of that graph's int8 when
    timing left one in the package's int8 file (else None)."""
    if options.optimize == "never":
        return {"applied": False, "decision": "not requested"}, fp32, None
    optimized_file = staging / "model.optimized.onnx"
    try:
        fused = onnx_models.optimize_graph(fp32_file, optimized_file, checkpoint.config)
        optimized = evaluate(evaluation, runtime(optimized_file.name, "fp32"), torch_result,
                             desc="parity: ONNX fp32 (fused graph)")
    except Exception as error:  # the optimizer raises assorted errors on graphs it does not understand
        optimized_file.unlink(missing_ok=True)
        return {"applied": False, "decision": f"optimizer failed: {error}"}, fp32, None
    record = {"fused_operators": fused, "max_abs_logit_diff": float(f"{optimized.max_abs_logit_diff:.3g}")}
    int8_files: list = []
    int8_made = None
    if optimized.max_abs_logit_diff > options.atol or optimized.agreement < fp32.agreement:
        decision = f"rejected: parity (max |logit diff| {optimized.max_abs_logit_diff:.2g})"
    elif options.optimize == "auto":
        plain_ms, fused_ms, timed, int8_files = _compare_served_speed(staging, fp32_file, optimized_file, runtime, options)
        record.update(plain_ms=round(plain_ms, 3), optimized_ms=round(fused_ms, 3), timed=timed)
        decision = (f"applied ({timed} {fused_ms:.2f} ms vs {plain_ms:.2f} ms per batch)" if fused_ms < plain_ms
                    else f"rejected: not faster ({timed} {fused_ms:.2f} ms vs {plain_ms:.2f} ms per batch)")
    else:
        decision = "applied"
    applied = decision.startswith("applied")
    if int8_files:  # keep the chosen graph's int8 for _quantize's first try
        (keep, settings), (drop, _) = (int8_files[1], int8_files[0]) if applied else int8_files
        keep.replace(staging / package.MODEL_FILES["int8"])
        drop.unlink(missing_ok=True)
        int8_made = settings
    if applied:
        optimized_file.replace(fp32_file)
        fp32 = optimized
    else:
        optimized_file.unlink()
    return {"applied": applied, "decision": decision, **record}, fp32, int8_made


def _compare_served_speed(staging, plain_file, fused_file, runtime, options) -> tuple[float, float, str, list]:
    """Time the model that will be served: with int8 on, the quantised plain and fused graphs (fusion that speeds
    up fp32 can slow int8 down: measured 39 vs 48 ms a batch for MiniLM here, the fused attention is not
    quantised as well as the plain MatMuls). Returns the two timings, what was timed, and with int8 the
    (file, settings) of the plain and the fused int8 graphs, left on disk for the caller."""
    if not options.int8:
        return (*_compare_speed(runtime(plain_file.name, "fp32"), runtime(fused_file.name, "fp32")), "fp32", [])
    quantized = [staging / f"{f.stem}.timing-int8.onnx" for f in (plain_file, fused_file)]
    try:
        made = []
        with progress_bar(2, "int8 quantisation (plain and fused graph, to time them)", options.progress,
                          unit="graph") as bar:
            for src, dst in zip((plain_file, fused_file), quantized):
                made.append(onnx_models.quantize_int8(src, dst, options.per_channel, options.reduce_range,
                                                      conv=options.quantize_conv))
                bar.update(1)
        timings = _compare_speed(runtime(quantized[0].name, "int8"), runtime(quantized[1].name, "int8"))
    except BaseException:
        for path in quantized:
            path.unlink(missing_ok=True)
        raise
    return (*timings, "int8", list(zip(quantized, made)))


def _compare_speed(plain, fused, rounds: int = 9, batch: int = 4, budget_s: float = 20.0) -> tuple[float, float]:
    """Median milliseconds of one batch (``batch`` x up to 128 tokens) for each session, measured interleaved,
    within a time budget so that a large model does not spend minutes here."""
    rng = np.random.default_rng(0)
    vocab = plain.tokenizer.get_vocab_size()
    length = min(plain.max_length, 128)
    feed = plain.feed([TokenIds(rng.integers(5, max(vocab, 6), length).tolist()) for _ in range(batch)])
    times: tuple[list[float], list[float]] = ([], [])
    started = time.perf_counter()
    for round_ in range(rounds + 1):
        for runtime, spent in zip((plain, fused), times):
            start = time.perf_counter()
            runtime.session.run(None, feed)
            if round_:  # the first round warms both sessions up
                spent.append(time.perf_counter() - start)
        if round_ >= 3 and time.perf_counter() - started > budget_s:
            break
    return float(np.median(times[0]) * 1000), float(np.median(times[1]) * 1000)


def _fp16(fp32_file, staging, evaluation, torch_result, runtime, options, models) -> dict:
    fp16_file = staging / package.MODEL_FILES["fp16"]
    onnx_models.convert_fp16(fp32_file, fp16_file)
    result = evaluate(evaluation, runtime(fp16_file.name, "fp16"), torch_result, desc="parity: ONNX fp16")
    refused = int8_verdict(torch_result, result, options.max_drop)
    record = {**result.as_dict(evaluation.metric), "published": False}
    if refused:
        fp16_file.unlink()
        record["refused"] = refused.replace("int8", "fp16")
    else:
        models["fp16"] = fp16_file.name
    return record
