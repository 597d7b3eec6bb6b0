"""Export: checkpoint -> ONNX package for every task kind, parity with PyTorch, the int8 gate, hashes, errors,
and the benchmark. The trained tagger is the session's tiny punctuation model (conftest's ``tagger``, also served
by the serving tests); the other models are small untrained ones (helpers.small_package), so no test depends on
another task's training.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import manifest_of, small_checkpoint, small_data, small_package, tagsmith


# --- every task kind exports, and ONNX fp32 matches PyTorch --------------------------------------------------


@pytest.mark.slow
def test_trained_tagger_package(tagger):
    package = tagger["package"]
    manifest = manifest_of(package)
    for key in ("task", "kind", "labels", "max_length", "window_overlap", "script", "decision_bias", "bias_labels",
                "tokenizer", "files", "source", "parity", "versions", "published", "models", "quantization"):
        assert key in manifest, key
    assert manifest["task"] == "punctuation" and manifest["kind"] == "tagging" and manifest["max_length"] == 64
    # the linear head's HF config and tokenizer files (optimum opens the package, test_optimum_load.py) are hashed
    # too; the model card is documentation, not hashed (test_model_card.py)
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json", "config.json", "tokenizer_config.json",
            "special_tokens_map.json"} <= set(manifest["files"]) <= {"model.onnx", "model.int8.onnx", "tokenizer.json",
                                                                     "config.json", "tokenizer_config.json",
                                                                     "special_tokens_map.json", "vocab.txt"}
    assert (package / "README.md").is_file() and "README.md" not in manifest["files"]
    assert manifest["source"]["checkpoint"] == str(tagger["checkpoint"].resolve())
    assert len(manifest["source"]["git_commit"] or "x" * 40) == 40
    assert all(manifest["versions"][name] for name in ("torch", "transformers", "optimum", "onnx", "onnxruntime"))
    parity = manifest["parity"]
    assert parity["onnx_fp32"]["max_abs_logit_diff"] <= 1e-4
    assert parity["onnx_fp32"]["agreement"] == 1.0
    assert parity["onnx_int8"]["agreement"] >= 0.99, parity["onnx_int8"]
    assert parity["pytorch"]["metric"] > 0.6  # it learned the rhythm
    assert manifest["published"] == "int8" and manifest["models"]["int8"] == "model.int8.onnx"
    assert "published: int8" in tagger["export_log"]
    # progress bars on stderr for each parity pass and the quantisation
    for bar in ("parity: PyTorch", "parity: ONNX fp32", "parity: ONNX int8 (whole graph)", "int8 quantisation"):
        assert re.search(re.escape(bar) + r".*100%", tagger["export_log"]), bar


@pytest.mark.parametrize("kind,head", [("tagging", "cnn"), ("tagging", "linear"), ("classification", "linear"),
                                       ("mlm", "linear")])
def test_every_kind_exports_with_fp32_parity(small_root, kind, head):
    import onnx

    package = small_package(small_root, kind, head)
    manifest = manifest_of(package)
    assert manifest["kind"] == kind
    assert manifest["parity"]["onnx_fp32"]["max_abs_logit_diff"] <= 1e-4, manifest["parity"]["onnx_fp32"]
    assert manifest["parity"]["onnx_fp32"]["agreement"] == 1.0
    model = onnx.load(str(package / "model.onnx"))  # one self-contained file, dynamic batch and sequence axes
    assert not [p for p in package.iterdir() if p.name.endswith((".data", "_data"))]
    ids = next(i for i in model.graph.input if i.name == "input_ids")
    assert all(d.dim_param for d in ids.type.tensor_type.shape.dim)
    if kind == "classification":
        assert manifest["threshold"] == 0.4 and manifest["positive_label"] == "toxic"
    if kind == "mlm":
        assert manifest["special_tokens"]["mask"] == "[MASK]" and manifest["parity"]["metric"] == "masked_accuracy"
    if head == "cnn":
        assert manifest["head"] == "cnn"


# --- the int8 gate -------------------------------------------------------------------------------------------


def test_int8_verdict():
    from export.parity import Result, int8_verdict

    torch_result = Result(None, {}, 0.900)
    assert int8_verdict(torch_result, Result(None, {}, 0.896), 0.005) is None
    assert int8_verdict(torch_result, Result(None, {}, 0.895), 0.005) is None
    assert "below PyTorch" in int8_verdict(torch_result, Result(None, {}, 0.890), 0.005)


def damage_classifier_bias(model_file: Path) -> None:
    """Push the tagger's first label ("no mark") up by 20 logits in an ONNX file: every character says "no mark"."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_file))
    bias = next(t for t in model.graph.initializer if t.name == "classifier.bias")
    values = numpy_helper.to_array(bias).copy()
    values[0] += 20.0
    bias.CopyFrom(numpy_helper.from_array(values.astype(np.float32), bias.name))
    onnx.save(model, str(model_file))


@pytest.mark.slow
def test_gate_refuses_damaged_int8(tagger, tmp_path, monkeypatch):
    from export import onnx_models
    from export.exporter import ExportOptions, export_package
    from serving.runtime import PackageError, load_package

    real_quantize = onnx_models.quantize_int8

    def damaged_quantize(src, dst, *args, **kwargs):
        settings = real_quantize(src, dst, *args, **kwargs)
        damage_classifier_bias(dst)
        return settings

    monkeypatch.setattr(onnx_models, "quantize_int8", damaged_quantize)
    lines = []
    manifest = export_package(tagger["checkpoint"], ExportOptions(out=tmp_path / "pkg", data=tagger["data"]["parity"],
                                                                  optimize="never"), say=lines.append)
    assert manifest["published"] == "fp32"
    assert "int8 refused" in manifest["publish_reason"] and "below PyTorch" in manifest["parity"]["onnx_int8"]["refused"]
    assert not (tmp_path / "pkg/model.int8.onnx").exists() and "model.int8.onnx" not in manifest["files"]
    assert any("published: fp32" in line and "int8 refused" in line for line in lines)
    assert load_package(tmp_path / "pkg").variant == "fp32"
    with pytest.raises(PackageError, match="int8 was refused"):
        load_package(tmp_path / "pkg", prefer="int8")


def test_timed_int8_graph_is_published_without_quantising_again(tagger, tmp_path, monkeypatch):
    """optimize=auto quantises the plain and the fused graph to time them; the chosen one is the published int8
    (the exporter used to quantise it a third time)."""
    import onnx

    from export import onnx_models
    from export.exporter import ExportOptions, export_package
    from serving.runtime import load_package

    real_quantize = onnx_models.quantize_int8
    calls = []

    def counted(src, dst, *args, **kwargs):
        calls.append(Path(dst).name)
        return real_quantize(src, dst, *args, **kwargs)

    monkeypatch.setattr(onnx_models, "quantize_int8", counted)
    manifest = export_package(tagger["checkpoint"], ExportOptions(out=tmp_path / "pkg", data=tagger["data"]["parity"],
                                                                  optimize="auto"), say=lambda line: None)
    optimization = manifest["graph_optimization"]
    assert "int8_made" not in optimization  # not a manifest field
    if optimization.get("timed") == "int8":  # the fused graph kept parity, so both int8 graphs were timed
        assert sorted(calls) == ["model.optimized.timing-int8.onnx", "model.timing-int8.onnx"]
    else:
        assert calls == ["model.int8.onnx"]
    assert manifest["published"] == "int8" and manifest["quantization"]["tried"][0]["kept_fp32"] == "nothing"
    assert sorted(p.name for p in (tmp_path / "pkg").glob("*.onnx")) == ["model.int8.onnx", "model.onnx"]
    graph = onnx.load(str(tmp_path / "pkg/model.int8.onnx")).graph
    assert any(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in graph.node)
    fused = any(node.domain == "com.microsoft" for node in onnx.load(str(tmp_path / "pkg/model.onnx")).graph.node)
    assert fused == optimization["applied"]  # the published int8 comes from the published fp32 graph
    assert fused == any(node.domain == "com.microsoft" and node.op_type != "DynamicQuantizeMatMul" for node in graph.node)
    assert load_package(tmp_path / "pkg").variant == "int8"


def test_int8_only_package_drops_fp32_after_the_gate(tagger, tmp_path):
    from export.exporter import ExportOptions, export_package
    from serving.runtime import load_package, verify_package

    manifest = export_package(tagger["checkpoint"], ExportOptions(out=tmp_path / "pkg", data=tagger["data"]["parity"],
                                                                  optimize="never", int8_only=True), say=lambda line: None)
    assert sorted(p.name for p in (tmp_path / "pkg").glob("*.onnx")) == ["model.int8.onnx"]
    assert manifest["models"] == {"int8": "model.int8.onnx"} and "model.onnx" not in manifest["files"]
    assert manifest["parity"]["onnx_fp32"]["agreement"] == 1.0  # fp32 was checked before it was left out
    verify_package(tmp_path / "pkg")
    assert load_package(tmp_path / "pkg").variant == "int8"


def test_cnn_head_convolutions_are_quantised_on_request(small_root, tmp_path):
    """Dynamic int8 left the CNN head's Conv weights in fp32 by accident (their inputs follow fused operators that
    ONNX type inference does not know). Now it is a choice: fp32 by default (ConvInteger was slower here),
    ConvInteger with ``conv=True`` (``tagsmith export --quantize-conv``)."""
    from collections import Counter

    import onnx

    from export import onnx_models

    package = small_package(small_root, "tagging", "cnn")
    onnx_models.quantize_int8(package / "model.onnx", tmp_path / "q.onnx", conv=True)
    ops = Counter(node.op_type for node in onnx.load(str(tmp_path / "q.onnx")).graph.node)
    assert ops["Conv"] == 0 and ops["ConvInteger"] >= 1, ops
    assert not list(tmp_path.glob("*.typed.onnx"))
    settings = onnx_models.quantize_int8(package / "model.onnx", tmp_path / "plain.onnx")
    ops = Counter(node.op_type for node in onnx.load(str(tmp_path / "plain.onnx")).graph.node)
    assert ops["ConvInteger"] == 0 and ops["Conv"] >= 1 and not settings["conv"]
    assert ops["MatMulInteger"] + ops["DynamicQuantizeMatMul"] >= 1


@pytest.mark.slow
def test_int8_that_disagrees_falls_back_to_fp32_first_layer_ffn(tagger, tmp_path, monkeypatch):
    """Whole-graph int8 that agrees poorly with PyTorch (damaged here) makes the exporter try the first encoder
    layer's feed-forward in fp32, and publish that try when it agrees better."""
    import onnx

    from export import onnx_models
    from export.exporter import ExportOptions, export_package

    real_quantize = onnx_models.quantize_int8

    def damaged_when_whole(src, dst, per_channel=True, reduce_range=False, keep_fp32=(), **options):
        settings = real_quantize(src, dst, per_channel, reduce_range, keep_fp32, **options)
        if not keep_fp32:
            damage_classifier_bias(dst)
        return settings

    monkeypatch.setattr(onnx_models, "quantize_int8", damaged_when_whole)
    lines = []
    manifest = export_package(tagger["checkpoint"], ExportOptions(out=tmp_path / "pkg", data=tagger["data"]["parity"],
                                                                  optimize="never"), say=lines.append)
    tried = manifest["quantization"]["tried"]
    assert [t["kept_fp32"] for t in tried] == ["nothing", "first layer's feed-forward"]
    assert tried[1]["agreement"] > tried[0]["agreement"]
    kept = manifest["quantization"]["kept_fp32"]
    assert kept and all("layer.0/" in name for name in kept)
    assert manifest["published"] == "int8"
    graph = onnx.load(str(tmp_path / "pkg/model.int8.onnx")).graph
    float_matmuls = {node.name for node in graph.node if node.op_type == "MatMul"}
    assert set(kept) <= float_matmuls  # left as fp32 MatMul, not MatMulInteger
    assert any("trying the first layer's feed-forward in fp32" in line for line in lines)


def test_fp32_fallbacks_name_the_first_layer_ffn(small_root):
    from export import onnx_models

    groups = onnx_models.fp32_fallbacks(small_package(small_root, "classification") / "model.onnx")
    assert [what for what, _ in groups] == ["first layer's feed-forward"]
    names = groups[0][1]
    assert len(names) == 2 and all(re.search(r"layer\.0/(intermediate|output)/", name) for name in names)


# --- hashes and errors ---------------------------------------------------------------------------------------


def test_verify_catches_a_modified_file(small_root, tmp_path):
    package = shutil.copytree(small_package(small_root, "classification"), tmp_path / "pkg")
    ok = tagsmith("export", "--verify", package)
    assert "every file matches" in ok.stderr
    with open(package / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    bad = tagsmith("export", "--verify", package, check=False)
    assert bad.returncode == 1
    assert "model.onnx: sha256 mismatch" in bad.stdout and "tokenizer.json" not in bad.stdout
    assert "Traceback" not in bad.stderr


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    result = tagsmith("export", tmp_path / "nope", "--out", tmp_path / "pkg", check=False)
    assert result.returncode == 1
    assert "no such checkpoint directory" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "pkg").exists()


def test_corrupt_checkpoint_is_one_clear_line(small_root, tmp_path):
    checkpoint = shutil.copytree(small_checkpoint(small_root / "checkpoints", "classification"), tmp_path / "best")
    (checkpoint / "model.safetensors").write_bytes(b"this is not a safetensors file")
    data = small_data(tmp_path, "classification")
    result = tagsmith("export", checkpoint, "--out", tmp_path / "pkg", "--data", data, check=False)
    assert result.returncode == 1, result.stderr
    assert "cannot load the checkpoint's weights" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pkg").exists() and not (tmp_path / "pkg.partial").exists()


def test_checkpoint_checks_before_loading(tmp_path):
    from export.checkpoint import ExportError, inspect_checkpoint

    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ExportError, match="corrupt JSON"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForTokenClassification"]}))
    with pytest.raises(ExportError, match="no tagsmith.json"):
        inspect_checkpoint(tmp_path)
    (tmp_path / "tagsmith.json").write_text(json.dumps({"task": "punctuation"}))
    with pytest.raises(ExportError, match="no model weights"):
        inspect_checkpoint(tmp_path)


def test_no_validation_data_is_a_clear_error(small_root, tmp_path):
    from export.checkpoint import ExportError
    from export.exporter import export_package

    checkpoint = small_checkpoint(tmp_path, "classification")
    with pytest.raises(ExportError, match="pass --data FILE"):
        export_package(checkpoint)


# --- benchmark -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_table_json_png(tagger, tmp_path):
    out = tmp_path / "bench"
    result = tagsmith("bench", tagger["package"], "--texts", "16", "--latency-texts", "5", "--threads", "1",
                      "--out", out, "--no-record")
    assert "onnx-int8" in result.stdout and "p50 ms" in result.stdout
    for backend in ("pytorch", "onnx-fp32", "onnx-int8"):  # a bar per backend and phase, stepping per text / batch
        assert re.search(rf"{backend}: latency \(1 text a call\).*100%.* 5/5", result.stderr), backend
        assert re.search(rf"{backend}: throughput \(batches of 32\).*100%.* 1/1", result.stderr), backend
    report = json.loads((out / "benchmark.json").read_text())
    assert (out / "benchmark.png").stat().st_size > 1000
    assert [row["backend"] for row in report["backends"]] == ["pytorch", "onnx-fp32", "onnx-int8"]
    assert report["matmul_peak"]["gflops"] > 0
    assert 0 < report["dense_weights"] < report["parameters"]
    for row in report["backends"]:
        assert "error" not in row, row
        assert row["latency_ms_p50"] > 0 and row["texts_per_second"] > 0 and row["peak_rss_mib"] > 0
        # dense weights only (no embedding lookups): a real fraction, below the machine's matmul peak
        assert 0 < row["fraction_of_matmul_peak"] < 1
        assert row["achieved_gflops"] == pytest.approx(2 * report["dense_weights"] * row["tokens_per_second"] / 1e9, rel=1e-3)
        assert row["metric"] > 0.6
    sizes = {row["backend"]: row["size_bytes"] for row in report["backends"]}
    assert sizes["onnx-int8"] < sizes["onnx-fp32"]
    onnx_rss = [row["rss_before_model_mib"] for row in report["backends"] if row["backend"].startswith("onnx")]
    assert max(onnx_rss) < 200  # the ONNX workers never import torch
