"""Checkpoint -> ONNX fp32 -> (optimised graph) -> int8 / fp16 model files.

Standard transformers heads go through optimum's exporter; the BERT+CNN tagging head, which optimum does not
know, through ``torch.onnx.export`` (the TorchScript exporter: it writes one self-contained file, where the
default dynamo exporter of torch >= 2.9 writes external data). Batch and sequence axes are dynamic in both.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from export.checkpoint import Checkpoint, ExportError

OPSET = 18  # optimum's recommended minimum for BERT; LayerNormalization is a single op from 17
OPTIMUM_TASK = {"tagging": "token-classification", "classification": "text-classification", "mlm": "fill-mask"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@contextmanager
def quiet():
    """Exporters warn a lot about things that do not apply here (tracer warnings, deprecations)."""
    loggers = [logging.getLogger(name) for name in ("optimum", "transformers", "root", "onnxruntime")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_fp32(checkpoint: Checkpoint, model, out_file: Path, opset: int = OPSET) -> None:
    """Write the fp32 ONNX model of ``checkpoint`` (``model`` is its loaded PyTorch model) to ``out_file``."""
    with quiet():
        if checkpoint.head == "cnn":
            _export_with_torch(model, out_file, opset)
        else:
            _export_with_optimum(checkpoint, out_file, opset)
    if any(out_file.parent.glob(out_file.name + "_data")) or any(out_file.parent.glob("*.onnx.data")):
        raise ExportError(f"{out_file}: the exporter wrote external data; models over 2 GB are not supported")


def _export_with_optimum(checkpoint: Checkpoint, out_file: Path, opset: int) -> None:
    from optimum.exporters.onnx import main_export

    with tempfile.TemporaryDirectory(prefix="tagsmith-optimum-") as folder:
        try:
            main_export(str(checkpoint.path), folder, task=OPTIMUM_TASK[checkpoint.kind], opset=opset,
                        library_name="transformers", do_validation=False, device="cpu")
        except Exception as error:  # optimum raises ValueError/KeyError/RuntimeError for unsupported models
            raise ExportError(f"{checkpoint.path}: optimum could not export the model: {error}") from None
        extra = [p.name for p in Path(folder).glob("model.onnx?*")]
        if extra:
            raise ExportError(f"{checkpoint.path}: the exporter wrote external data {extra}; models over 2 GB are not supported")
        shutil.move(str(Path(folder) / "model.onnx"), out_file)


def _logits_only(model):
    """A module whose forward takes the three BERT inputs positionally and returns only the logits."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    # eval() matters: torch.onnx.export restores the wrapper's own mode afterwards, and a new module is in
    # training mode, which would switch dropout on in the caller's model
    return LogitsOnly(model).eval()


def _export_with_torch(model, out_file: Path, opset: int) -> None:
    import torch

    wrapper = _logits_only(model)
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    axes = {name: {0: "batch_size", 1: "sequence_length"} for name in INPUTS + ("logits",)}
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, (ids, mask, torch.zeros_like(ids)), str(out_file), input_names=list(INPUTS),
                              output_names=["logits"], dynamic_axes=axes, opset_version=opset, dynamo=False,
                              do_constant_folding=True)
    except Exception as error:  # torch.onnx raises several exception types for unsupported operators
        raise ExportError(f"torch.onnx.export failed: {error}") from None
    finally:
        model.eval()


def optimize_graph(src: Path, dst: Path, config: dict) -> dict:
    """ONNX Runtime's transformer fusions (attention, layer norm, GELU) with model_type bert; returns the
    counts of fused operators. Only portable fusions are used (opt_level 1, CPU)."""
    from onnxruntime.transformers import optimizer

    with quiet():
        model = optimizer.optimize_model(str(src), model_type="bert", num_heads=int(config.get("num_attention_heads", 0)),
                                         hidden_size=int(config.get("hidden_size", 0)), use_gpu=False)
        model.save_model_to_file(str(dst))
        fused = model.get_fused_operator_statistics()
    return {name: count for name, count in fused.items() if count}


def quantize_int8(src: Path, dst: Path, per_channel: bool = True, reduce_range: bool = False,
                  keep_fp32: Sequence[str] = (), conv: bool = False) -> dict:
    """Dynamic int8 quantisation of the weights (activations quantised at run time).

    ``reduce_range`` uses 7-bit weights, which avoids saturation on CPUs without VNNI (pre-Cascade Lake x86).
    ``keep_fp32``: names of nodes left in fp32 (see :func:`fp32_fallbacks`).
    ``conv``: quantise Conv too (the CNN head), as ConvInteger: the package's model shrinks by a third (10.4 ->
    7.1 MB for the shipped punctuation model), but on a 2-core AVX2 CPU without VNNI ONNX Runtime's ConvInteger
    made a batch 1.4x slower than fp32 convolutions, so it is off unless asked for (``--quantize-conv``).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from onnxruntime.quantization.registry import IntegerOpsRegistry

    settings = {"method": "dynamic", "weight_type": "QInt8", "per_channel": per_channel, "reduce_range": reduce_range,
                "kept_fp32": list(keep_fp32), "conv": conv}
    typed = Path(dst).with_name(Path(dst).stem + ".typed.onnx")
    typed_inputs = _type_conv_inputs(Path(src), typed) if conv else 0
    if typed_inputs:
        settings["conv_inputs_typed"] = typed_inputs
    op_types = [op for op in IntegerOpsRegistry if conv or op != "Conv"]
    try:
        with quiet():
            # fused contrib operators (after optimize_graph) have no ONNX type inference: say their outputs are float
            quantize_dynamic(typed if typed_inputs else src, dst, per_channel=per_channel, reduce_range=reduce_range,
                             weight_type=QuantType.QInt8, nodes_to_exclude=list(keep_fp32), op_types_to_quantize=op_types,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        typed.unlink(missing_ok=True)
    return settings


def _type_conv_inputs(src: Path, dst: Path) -> int:
    """Declare the float type of Conv inputs that type inference cannot reach (they follow fused contrib
    operators, e.g. the CNN head after the encoder's SkipLayerNormalization): without it quantize_dynamic
    leaves those convolutions in fp32 (38% of a CNN-head model's int8 size). Writes ``dst`` and returns how
    many inputs it typed (0: nothing written)."""
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    known = {v.name for v in (*graph.value_info, *graph.input, *graph.output)} | {i.name for i in graph.initializer}
    missing = sorted({n.input[0] for n in graph.node if n.op_type == "Conv" and n.input[0] not in known})
    if not missing:
        return 0
    graph.value_info.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in missing)
    onnx.save(model, str(dst))
    return len(missing)


# The dense layers nearest the embeddings see the largest activation outliers, where one int8 scale per tensor
# costs most: the first encoder layer's feed-forward block (intermediate + output). Measured for MiniLM on OLID
# validation: all int8 agrees with PyTorch on 98.1% of predictions, with that block in fp32 on 98.5% (for 3.5 MB,
# 4% of the fp32 size, more); the whole first layer (98.7%) costs 5.3 MB, which breaks the int8
# package's size target (<= 30% of fp32), so it is not tried.
_FALLBACKS = (("first layer's feed-forward", re.compile(r"layer\.0/(intermediate|output)/")),)


def fp32_fallbacks(model_file: Path) -> list[tuple[str, list[str]]]:
    """(description, node names) of the MatMul/Gemm groups to try keeping in fp32, mildest first; groups the
    graph does not have (other naming, fused attention) are left out."""
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    dense = [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm") and node.name]
    groups = [(what, [name for name in dense if pattern.search(name)]) for what, pattern in _FALLBACKS]
    return [(what, names) for what, names in groups if names]


def convert_fp16(src: Path, dst: Path) -> dict:
    """fp16 weights and activations with fp32 inputs/outputs (for GPUs / CPUs with fast fp16)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet():
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
    return {"method": "float16", "keep_io_types": True}
