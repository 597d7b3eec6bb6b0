"""serving.runtime: torch-free, verifies hashes, picks the published model, and answers like PyTorch does."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import HELD_OUT, VERSE
from helpers import small_checkpoint, small_package

ROOT = Path(__file__).resolve().parents[1]


def test_runtime_never_imports_torch(small_root):
    package = small_package(small_root, "classification")
    code = (
        "import sys, json\n"
        "from serving.runtime import load_package\n"
        f"runtime = load_package({str(package)!r}, threads=1)\n"
        "result = runtime.predict(['you are great'])[0]\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'label': result.label}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [] and report["label"] in ("toxic", "non-toxic")


# --- hashes and model choice ---------------------------------------------------------------------------------


def test_modified_or_missing_file_is_refused(small_root, tmp_path):
    from serving.runtime import PackageError, load_package

    package = shutil.copytree(small_package(small_root, "classification"), tmp_path / "pkg")
    load_package(package)
    tokenizer = package / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text(encoding="utf-8") + " ", encoding="utf-8")
    with pytest.raises(PackageError, match=r"tokenizer\.json: sha256 mismatch"):
        load_package(package)
    assert load_package(package, verify=False).variant in ("int8", "fp32")  # the caller may opt out
    (package / "model.onnx").unlink()
    with pytest.raises(PackageError, match=r"model\.onnx: missing"):
        load_package(package)
    with pytest.raises(PackageError, match="not a model package"):
        load_package(tmp_path)


def test_published_model_unless_preferred(small_root):
    from serving.runtime import PackageError, load_package

    package = small_package(small_root, "classification")
    manifest = json.loads((package / "tagsmith.json").read_text())
    assert load_package(package).variant == manifest["published"]
    runtime = load_package(package, prefer="fp32", threads=1)
    assert runtime.variant == "fp32" and runtime.model_file.name == "model.onnx"
    assert runtime.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(PackageError, match="no fp16 model"):
        load_package(package, prefer="fp16")


# --- tagging -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_long_text_windows_match_pytorch(tagger):
    from serving.runtime import load_package
    from training.predict import TaggingPredictor

    chars = [c for c in "".join(VERSE + HELD_OUT) if c not in "，。"]
    rng = random.Random(0)
    long_text = "".join(rng.choice(chars) for _ in range(2000))
    texts = [long_text, "天地玄黃宇宙洪荒日月盈昃辰宿列張", "x y\u3000z", "天"]
    reference = TaggingPredictor(tagger["checkpoint"])
    expected = reference.predict(texts)
    fp32 = load_package(tagger["package"], prefer="fp32", threads=1)
    assert fp32.max_length == 64 and len(long_text) > 10 * fp32.max_length  # dozens of windows
    results = fp32.predict(texts)
    assert [r.labels for r in results] == expected
    for ours, theirs in zip(fp32.char_logits(texts), reference.char_logits(texts)):
        assert np.abs(ours - theirs).max() <= 1e-4
    int8 = load_package(tagger["package"]).predict(texts)
    same = sum(a == b for r, e in zip(int8, expected) for a, b in zip(r.labels, e))
    assert same / sum(map(len, texts)) >= 0.99
    # answers use the caller's (traditional) characters although the model reads simplified ones
    assert results[1].text == texts[1] and results[1].output.replace("，", "").replace("。", "") == texts[1]
    assert results[1].output.count("，") + results[1].output.count("。") >= 2
    assert all(0.0 < c <= 1.0 for r in results for c in r.confidence)
    assert [len(r.confidence) for r in results] == [len(t) for t in texts]


def test_tagging_runtime_edge_cases(small_root):
    from serving.runtime import load_package

    runtime = load_package(small_package(small_root, "tagging", "cnn"))
    empty, spaces, long = runtime.predict(["", "   ", "天" * 100])
    assert empty.labels == [] and empty.confidence == [] and empty.output == ""
    assert len(spaces.labels) == 3  # characters without a token still get a label
    assert len(long.labels) == 100 and set(long.labels) <= set("BMES")
    assert long.as_dict()["text"] == "天" * 100



def test_tagging_manifest_with_unknown_bias_label_is_refused_by_name(small_root, tmp_path):
    from serving.runtime import PackageError, load_package
    from tagsmith.windows import bias_indices

    package = shutil.copytree(small_package(small_root, "tagging", "cnn"), tmp_path / "pkg")
    manifest_file = package / "tagsmith.json"
    manifest = json.loads(manifest_file.read_text())
    assert bias_indices(manifest["labels"], manifest["bias_labels"], "m") == [manifest["labels"].index(label)
                                                                              for label in manifest["bias_labels"]]
    manifest["bias_labels"] = ["E", "X"]
    manifest_file.write_text(json.dumps(manifest))  # the manifest is not a hashed file
    with pytest.raises(PackageError, match=r"tagsmith\.json: bias_labels \['X'\] are not among the model's labels"):
        load_package(package)


# --- classification and fill-mask ------------------------------------------------------------------------------


def test_classification_probabilities_and_threshold(small_root, tmp_path):
    from export.checkpoint import inspect_checkpoint
    from export.reference import ClassificationReference
    from serving.runtime import load_package

    texts = ["you are a stupid idiot", "thanks this is great", "the team was so good today"]
    package = shutil.copytree(small_package(small_root, "classification"), tmp_path / "pkg")
    runtime = load_package(package, prefer="fp32")
    probabilities = runtime.probabilities(texts)
    assert np.allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    reference = ClassificationReference(inspect_checkpoint(small_checkpoint(small_root / "checkpoints", "classification")))
    assert np.abs(runtime.logits(texts) - reference.logits(texts)).max() <= 1e-4
    results = runtime.predict(texts)
    for result, row in zip(results, probabilities):
        assert result.label == ("toxic" if row[1] >= 0.4 else "non-toxic")  # the tuned threshold, not argmax
        assert set(result.probabilities) == {"non-toxic", "toxic"}
    manifest_file = package / "tagsmith.json"
    for threshold, label in ((0.0, "toxic"), (1.01, "non-toxic")):
        manifest = json.loads(manifest_file.read_text())
        manifest["threshold"] = threshold
        manifest_file.write_text(json.dumps(manifest))  # the manifest is not a hashed file
        assert {r.label for r in load_package(package).predict(texts)} == {label}


def test_fill_mask_top_k(small_root):
    import torch

    from export.checkpoint import inspect_checkpoint, load_torch_model
    from serving.runtime import load_package

    runtime = load_package(small_package(small_root, "mlm"), prefer="fp32")
    with_masks, without = runtime.predict(["you are [MASK] good [MASK]", "no mask here"], top_k=3)
    assert without == [] and len(with_masks) == 2
    for fills in with_masks:
        assert len(fills) == 3 and [f["score"] for f in fills] == sorted((f["score"] for f in fills), reverse=True)
        assert all(set(f) == {"token", "token_id", "score"} for f in fills)
    model = load_torch_model(inspect_checkpoint(small_checkpoint(small_root / "checkpoints", "mlm")))
    encoding = runtime.tokenizer.encode("you are [MASK] good [MASK]")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([encoding.ids])).logits[0]
    masks = [i for i, t in enumerate(encoding.ids) if t == runtime.mask_id]
    assert [fills[0]["token_id"] for fills in with_masks] == [int(logits[i].argmax()) for i in masks]
