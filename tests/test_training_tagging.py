"""End-to-end: tiny taggers trained on generated data through the real CLI (the session's, conftest's
``tiny_models``), best/ reloaded to predict; bad records stop training."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from helpers import HEADS, tagging_data


def run_tagsmith(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "tagsmith.cli", *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"tagsmith {' '.join(map(str, args))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def train_args(files, out, name, *extra):
    return ["train", "--config", ROOT / "training/configs/punctuation-tiny.yaml",
            "--set", f"data.train={files['train']}", "--set", f"data.validation={files['validation']}",
            "--set", f"data.test={files['test']}", "--set", f"output_dir={out}", "--set", f"name={name}", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["punctuation", "segmentation"])
def test_train_reload_predict(tiny_models, task):
    """The session's tiny tagger of the task (helpers.train_tiny: punctuation with the linear head, segmentation with
    the CNN head), trained through the CLI: its run dir, results and manifest, and its best/ reloaded to predict."""
    head = HEADS[task]
    run_dir = tiny_models.run(task)["run_dir"]
    for name in ("config.yaml", "train.log", "results.json", "test_predictions.jsonl", "curves.png",
                 "best/config.json", "best/tagsmith.json", "best/tokenizer.json"):
        assert (run_dir / name).is_file(), name
    results = json.loads((run_dir / "results.json").read_text())
    metric = "f1" if task == "segmentation" else "micro_f1"
    # the rhythm is trivially learnable: a working pipeline scores well above chance on unseen lines
    assert results["test"][metric] > 0.6, results["test"]
    assert results["config"]["model"]["head"]["type"] == head
    manifest = json.loads((run_dir / "best/tagsmith.json").read_text())
    assert manifest["task"] == task and manifest["head"] == head and len(manifest["data_sha256"]) == 3
    prediction = json.loads((run_dir / "test_predictions.jsonl").read_text().splitlines()[0])
    assert set(prediction) >= {"text", "gold", "predicted", "output"}
    out = run_tagsmith("predict", run_dir / "best", "天地玄黃宇宙洪荒日月盈昃辰宿列張").stdout.strip()
    if task == "punctuation":
        # the answer keeps the caller's characters (traditional here) whatever script the model uses
        assert "".join(ch for ch in out if ch not in "，。：、；？！") == "天地玄黃宇宙洪荒日月盈昃辰宿列張"
        assert out.count("，") + out.count("。") >= 2
    else:
        assert " | " in out


def test_bad_records_stop_training_and_write_no_run(tmp_path):
    files = tagging_data(tmp_path, "punctuation", copies=1)
    bad = tmp_path / "bad-train.jsonl"
    bad.write_bytes(
        '{"text": "天地", "labels": ["O"]}\n{"text": "天地", "labels": ["O", "X"]}\n{"text": "", "labels": []}\n'.encode()
        + b'{"text": "\xff", "labels": ["O"]}\n'
    )
    files["train"] = bad
    result = run_tagsmith(*train_args(files, tmp_path / "runs", "bad"), check=False)
    assert result.returncode == 1
    lines = [l for l in result.stdout.splitlines() if l.startswith(str(bad))]
    assert [l.split(": ", 1)[0] for l in lines] == [f"{bad}:1", f"{bad}:2", f"{bad}:3", f"{bad}:4"]
    assert "length mismatch" in lines[0] and "unknown label" in lines[1] and "empty text" in lines[2]
    assert "invalid UTF-8" in lines[3]
    assert not (tmp_path / "runs").exists()
    validate = run_tagsmith("data", "validate", bad, "--task", "punctuation", check=False)
    assert validate.returncode == 1 and len([l for l in validate.stdout.splitlines() if l.startswith(str(bad))]) == 4


def test_cnn_head_save_reload_identical(tmp_path):
    import torch
    from transformers import BertConfig

    from tagsmith.config import HeadConfig
    from training.model import EncoderCnnForTokenClassification, build_tagging_model, load_tagging_model

    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    model = build_tagging_model(list("BMES"), HeadConfig(type="cnn", cnn_filters=8), config).eval()
    model.save_pretrained(tmp_path)
    again = load_tagging_model(tmp_path).eval()
    assert isinstance(again, EncoderCnnForTokenClassification)
    ids = torch.randint(5, 50, (2, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, again(input_ids=ids, attention_mask=mask).logits)
    assert again.config.cnn_kernels == [3, 5, 7]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    from training.model import CheckpointError, load_tagging_model

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_tagging_model(tmp_path)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_tagging_model(tmp_path / "missing")
    from transformers import BertConfig

    (tmp_path / "config.json").write_text(BertConfig(num_labels=4).to_json_string())  # good config, bad weights
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_tagging_model(tmp_path)

