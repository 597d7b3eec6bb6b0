"""A linear-head model package opens in optimum (``ORT*.from_pretrained(package_dir, file_name=...)``) with its own
config.json and tokenizer files, and gives the logits tagsmith's runtime gives on the same input. Reuses the small
packages helpers.small_package exports once per session (no training here)."""

from __future__ import annotations

import numpy as np

from conftest import HELD_OUT, WORDS
from helpers import manifest_of, small_package

HF_FILES = ("config.json", "tokenizer_config.json", "special_tokens_map.json")


def _published_file(package) -> str:
    manifest = manifest_of(package)
    return manifest["models"][manifest["published"]]


def test_linear_tagging_package_opens_in_optimum_with_runtime_logits(small_root):
    from optimum.onnxruntime import ORTModelForTokenClassification
    from transformers import AutoTokenizer

    from serving.runtime import load_package

    package = small_package(small_root, "tagging", "linear")
    manifest = manifest_of(package)
    assert set(HF_FILES) <= set(manifest["files"])  # hashed, so --verify covers them
    model = ORTModelForTokenClassification.from_pretrained(package, file_name=_published_file(package))
    tokenizer = AutoTokenizer.from_pretrained(package)
    text = HELD_OUT[0][:20]
    encoded = tokenizer(list(text), is_split_into_words=True, return_tensors="np")
    logits = np.asarray(model(**encoded).logits)[0]
    assert logits.shape == (len(text) + 2, len(manifest["labels"]))  # [CLS] one token per character [SEP]
    runtime = load_package(package)
    expected = runtime.char_logits([text])[0]
    np.testing.assert_allclose(logits[1:-1], expected, atol=1e-4)
    assert [model.config.id2label[i] for i in logits[1:-1].argmax(-1)] == \
        [manifest["labels"][i] for i in expected.argmax(-1)]


def test_classification_package_opens_in_optimum_with_runtime_logits(small_root):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    from serving.runtime import load_package

    package = small_package(small_root, "classification")
    manifest = manifest_of(package)
    assert set(HF_FILES) | {"vocab.txt"} <= set(manifest["files"])
    model = ORTModelForSequenceClassification.from_pretrained(package, file_name=_published_file(package))
    tokenizer = AutoTokenizer.from_pretrained(package)
    texts = [" ".join(WORDS[:7]), "you are so stupid"]
    runtime = load_package(package)
    for text in texts:  # one at a time: dynamic int8 depends on the batch, and each side gets the same one
        logits = np.asarray(model(**tokenizer([text], return_tensors="np")).logits)[0]
        np.testing.assert_allclose(logits, runtime.logits([text])[0], atol=1e-4)
        assert model.config.id2label[int(logits.argmax())] == manifest["labels"][int(runtime.logits([text])[0].argmax())]
    assert [model.config.id2label[i] for i in range(len(manifest["labels"]))] == manifest["labels"]


def test_cnn_package_carries_no_hf_config_and_says_why(small_root):
    package = small_package(small_root, "tagging", "cnn")
    assert not (package / "config.json").exists()
    card = (package / "README.md").read_text(encoding="utf-8")
    assert "not a transformers architecture" in card and "serving.runtime" in card


def test_shipped_toxicity_package_opens_in_optimum():
    """The shipped toxicity package (a linear head) carries config.json and the tokenizer files too (added after its
    export, hashed in its manifest): optimum's logits and tokens are the runtime's."""
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    from conftest import ROOT
    from serving.runtime import load_package

    package = ROOT / "serving" / "shipped" / "toxicity"
    runtime = load_package(package)  # verifies every file's sha256, the added ones included
    assert set(HF_FILES) | {"vocab.txt"} <= set(runtime.manifest["files"])
    model = ORTModelForSequenceClassification.from_pretrained(package, file_name="model.int8.onnx")
    tokenizer = AutoTokenizer.from_pretrained(package)
    assert model.config.num_hidden_layers == 3 and tokenizer.model_max_length == runtime.max_length
    long_text = " ".join(["you are a truly wonderful and kind person"] * 20)  # truncated at 64 tokens both ways
    for text in ["shut up you stupid idiot", "thank you so much, have a lovely day", long_text]:
        encoded = tokenizer([text], truncation=True, return_tensors="np")
        assert encoded["input_ids"][0].tolist() == runtime.tokenizer.encode(text).ids
        logits = np.asarray(model(**encoded).logits)[0]
        np.testing.assert_allclose(logits, runtime.logits([text])[0], atol=1e-4)
        assert model.config.id2label[int(logits.argmax())] in runtime.labels
