"""The model package on disk (DESIGN.md "Model package"): its manifest, the sha256 of every file, and putting a
finished package in place without ever leaving a half-written one where serving would find it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

from export.checkpoint import Checkpoint, ExportError
from serving.runtime import MANIFEST, PACKAGE_FORMAT, sha256_file

TOKENIZER_FILE = "tokenizer.json"
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
VERSIONED = ("tagsmith", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "onnxscript", "tokenizers")


def versions() -> dict:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_tokenizer(tokenizer, folder: Path) -> dict:
    """The fast tokenizer as one tokenizer.json, and the special tokens the runtimes need."""
    tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
    special = {"pad": tokenizer.pad_token, "pad_id": tokenizer.pad_token_id}
    if tokenizer.mask_token is not None:
        special.update(mask=tokenizer.mask_token, mask_id=tokenizer.mask_token_id)
    return special


def base_manifest(checkpoint: Checkpoint, tokenizer, special_tokens: dict, parameters: int) -> dict:
    """Everything the runtimes need to serve the package; hashes, parity and publication come later."""
    info, config = checkpoint.info, checkpoint.config
    manifest = {
        "format": PACKAGE_FORMAT,
        "format_version": 1,
        "task": checkpoint.task,
        "kind": checkpoint.kind,
        "labels": info.get("labels") or _config_labels(config),
        "max_length": int(info.get("max_length") or min(tokenizer.model_max_length, 512)),
        "window_overlap": int(info.get("window_overlap", 0)),
        "script": info.get("script", "keep"),
        "tokenizer": TOKENIZER_FILE,
        "special_tokens": special_tokens,
        "parameters": parameters,
    }
    if checkpoint.kind == "tagging":
        manifest.update(bias_labels=info.get("bias_labels", []), decision_bias=float(info.get("decision_bias", 0.0)),
                        head=checkpoint.head)
    elif checkpoint.kind == "classification":
        manifest.update(threshold=info.get("threshold"), positive_label=info.get("positive_label"),
                        problem_type=config.get("problem_type") or "single_label_classification")
        if info.get("operating_points"):  # thresholds tuned on validation that a request may pick by name
            manifest.update(operating_points=info["operating_points"], threshold_objective=info.get("threshold_objective"))
        if info.get("main_metric"):
            manifest["main_metric"] = info["main_metric"]
    elif checkpoint.kind == "mlm":
        manifest["labels"] = []
    manifest["source"] = {
        "checkpoint": str(checkpoint.path.resolve()),
        "weights_sha256": sha256_file(checkpoint.weights),
        "git_commit": info.get("git_commit"),
        "run": info.get("run"),
        "base_model": info.get("base_model"),
        "architecture": (config.get("architectures") or [None])[0],
        "model_type": config.get("model_type"),
        "data_sha256": info.get("data_sha256", {}),
        "metrics": info.get("metrics", {}),
    }
    # "demo" when trained on the built-in seed set: the API and the demo page say so
    manifest["data_grade"] = info.get("data_grade", "real")
    return manifest


def _config_labels(config: dict) -> list[str]:
    id2label = config.get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)]


def finish_manifest(folder: Path, manifest: dict) -> dict:
    """Add the sha256 of every file in the package and write tagsmith.json."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest["files"] = {p.name: sha256_file(p) for p in files}
    manifest["sizes"] = {p.name: p.stat().st_size for p in files}
    write_manifest(folder, manifest)
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(folder / MANIFEST)


def staging_dir(out: Path) -> Path:
    if out.exists() and not _replaceable(out):
        raise ExportError(f"{out} exists and is not a model package; choose another --out or remove it")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _replaceable(out: Path) -> bool:
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        return json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("format") == PACKAGE_FORMAT
    except (OSError, ValueError):
        return False


def install(staging: Path, out: Path) -> None:
    """Replace ``out`` by the finished package in ``staging`` (two renames: never a half-written package)."""
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    if old.exists():
        shutil.rmtree(old)


def created() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
