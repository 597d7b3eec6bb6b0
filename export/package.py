"""The model package on disk (docs/architecture.md, "Model package"): its manifest, the sha256 of every file, and putting a
finished package in place without ever leaving a half-written one where serving would find it."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

from export.checkpoint import Checkpoint, ExportError
from tagsmith import card
from tagsmith.files import git_commit  # noqa: F401 (the exporter records it as package.git_commit())
from tagsmith.hashing import sha256_file
from tagsmith.manifest import MANIFEST, PACKAGE_FORMAT, is_package, previous_card
from tagsmith.manifest import write_manifest as write_manifest_file

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


def write_tokenizer(tokenizer, folder: Path) -> dict:
    """The fast tokenizer as one tokenizer.json, and the special tokens the runtimes need."""
    tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
    special = {"pad": tokenizer.pad_token, "pad_id": tokenizer.pad_token_id}
    if tokenizer.mask_token is not None:
        special.update(mask=tokenizer.mask_token, mask_id=tokenizer.mask_token_id)
    return special


#: what optimum / transformers need beside the ONNX model: the HF config (id2label, label2id) and the tokenizer files
HF_CONFIG = "config.json"
HF_TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
                      "sentencepiece.bpe.model", "spiece.model", "added_tokens.json")


def write_hf_files(checkpoint: Checkpoint, tokenizer, folder: Path, max_length: int) -> list[str]:
    """A linear-head package's ``config.json`` and tokenizer files, so that optimum opens it
    (``ORTModelForTokenClassification.from_pretrained(package, file_name="model.int8.onnx")``) and
    ``AutoTokenizer.from_pretrained(package)`` gives the runtime's tokens. tokenizer.json stays the one
    :func:`write_tokenizer` wrote (the runtime's); the tokenizer's ``model_max_length`` is the package's. A CNN
    head is no transformers architecture: nothing is written (the card says why). Returns the files written."""
    if checkpoint.head != "linear":
        return []
    shutil.copyfile(checkpoint.path / HF_CONFIG, folder / HF_CONFIG)
    written = [HF_CONFIG]
    with tempfile.TemporaryDirectory(prefix="tagsmith-tokenizer-") as tmp:
        tokenizer.save_pretrained(tmp)
        for name in HF_TOKENIZER_FILES:
            if (Path(tmp) / name).is_file():
                shutil.copyfile(Path(tmp) / name, folder / name)
                written.append(name)
    settings_file = folder / "tokenizer_config.json"
    if settings_file.is_file():
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
        settings["model_max_length"] = max_length
        settings_file.write_text(json.dumps(settings, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return written


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
        "base_model_source": info.get("base_model_source"),
        "base_model_revision": info.get("base_model_revision"),
        "architecture": (config.get("architectures") or [None])[0],
        "model_type": config.get("model_type"),
        "data_sha256": info.get("data_sha256", {}),
        "data_files": info.get("data_files", {}),
        "metrics": info.get("metrics", {}),
    }
    # "demo" when trained on the built-in seed set: the API and the demo page say so
    manifest["data_grade"] = info.get("data_grade", "real")
    return manifest


def _config_labels(config: dict) -> list[str]:
    id2label = config.get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)]


def finish_manifest(folder: Path, manifest: dict) -> dict:
    """Add the sha256 of every file in the package (the model card aside: documentation a user may edit) and
    write tagsmith.json."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST and p.name not in card.CARD_FILES)
    manifest["files"] = {p.name: sha256_file(p) for p in files}
    manifest["sizes"] = {p.name: p.stat().st_size for p in files}
    write_manifest(folder, manifest)
    return manifest


def write_card(staging: Path, out: Path, manifest: dict) -> dict:
    """The package's model card (README.md) from its manifest, recorded in the manifest as ``card``. A card the
    user wrote in the package being replaced (``out``) is carried over and kept; the generated one then goes to
    README.tagsmith.md beside it (tagsmith.card.place_card)."""
    previous = None
    if Path(out).resolve() != Path(staging).resolve() and (out / card.CARD_FILE).is_file():
        previous = previous_card(out)
        shutil.copyfile(out / card.CARD_FILE, staging / card.CARD_FILE)
    manifest["card"] = card.place_card(staging, card.package_card(manifest), previous)
    write_manifest(staging, manifest)
    return manifest


def refresh_card(folder: Path, manifest: dict) -> None:
    """Write the card again after the manifest changed (``tagsmith bench`` figures), where the card is still the
    generated one, unedited; a user's card is left alone."""
    record = manifest.get("card")
    if not record or not (folder / record.get("file", card.CARD_FILE)).is_file():
        return
    target = folder / record["file"]
    try:
        unchanged = card.sha256_text(target.read_text(encoding="utf-8")) == record.get("sha256")
    except (OSError, UnicodeDecodeError):
        return
    if unchanged:
        text = card.package_card(manifest)
        target.write_text(text, encoding="utf-8")
        manifest["card"] = {**record, "sha256": card.sha256_text(text)}


def write_manifest(folder: Path, manifest: dict) -> None:
    write_manifest_file(folder, manifest)


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
    return is_package(out)


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
