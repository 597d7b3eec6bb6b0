import numpy as np
import pytest

from tagsmith.config import ConfigError, load_config
from tagsmith.windows import merge_windows, window_spans


def test_window_spans_cover_with_overlap():
    spans = window_spans(300, 126, 32)
    assert spans[0] == (0, 126) and spans[-1][1] == 300
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert c == b - 32
    assert window_spans(10, 126, 32) == [(0, 10)]


def test_merge_takes_the_most_central_window():
    spans = window_spans(20, 10, 4)
    values = [np.full((b - a, 1), k, dtype=np.float32) for k, (a, b) in enumerate(spans)]
    merged = merge_windows(20, spans, values)[:, 0]
    # window 0 covers 0..9, window 1 covers 6..15: position 7 is 2 from window 1's edge, 2 from window 0's
    assert merged[0] == 0 and merged[9] == 1 and merged[19] == 2


def test_config_unknown_key_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntask: segmentation\ntrainer: {learning_rate: 0.1}\n")
    config = load_config(path, ["trainer.learning_rate=3e-5", "model.head.type=cnn"])
    assert config.trainer["learning_rate"] == pytest.approx(3e-5)
    assert config.model.head.type == "cnn"
    path.write_text("name: x\ntask: segmentation\nmodle: {}\n")
    with pytest.raises(ConfigError, match="modle: unknown key; did you mean model\\?"):
        load_config(path)
    path.write_text("name: x\ntask: segmentation\ndata: {oversample: {prose: 3}}\n")
    assert load_config(path).data.oversample == {"prose": 3}
    for bad in ("0.5", "true", "two"):
        with pytest.raises(ConfigError, match="data.oversample.verse: expected int, got"):
            load_config(path, [f"data.oversample.verse={bad}"])
    with pytest.raises(ConfigError, match="data.oversample.verse: must be a whole number of copies >= 1"):
        load_config(path, ["data.oversample.verse=0"])
    with pytest.raises(ConfigError, match="model.head.type: expected one of linear, cnn, got 'rnn'"):
        load_config(values={"name": "x", "task": "segmentation", "model": {"head": {"type": "rnn"}}})


def test_decision_bias_tuning_records_narrow_by_kind_then_collection(caplog):
    from training.tagging import tuning_records

    records = [{"kind": "prose", "collection": "chengyu_sources"}, {"kind": "prose", "collection": "quansongshi_authors"},
               {"kind": "verse", "collection": "songci"}, {"kind": "prose", "collection": "chengyu_sources"}]
    assert tuning_records(records, {}) == ([0, 1, 2, 3], "all")
    assert tuning_records(records, {"tune_on_kind": "prose"}) == ([0, 1, 3], "kind 'prose'")
    assert tuning_records(records, {"tune_on_kind": "prose", "tune_on_collections": ["chengyu_sources"]}) == (
        [0, 3], "collections chengyu_sources, kind 'prose'")
    assert tuning_records(records, {"tune_on_collections": "songci"}) == ([2], "collections songci")
    # nothing matches: a warning, and the next wider set
    assert tuning_records(records, {"tune_on_kind": "prose", "tune_on_collections": ["lunyu"]}) == ([0, 1, 3], "kind 'prose'")
    assert tuning_records(records, {"tune_on_kind": "essay"}) == ([0, 1, 2, 3], "all")
    assert "no validation records of collections ['lunyu']" in caplog.text and "kind 'essay'" in caplog.text


def test_cpu_configs_group_windows_by_length_and_cut_padding(tmp_path):
    """The *-cpu configs ask the Trainer for length-grouped batches; with our window features that sampler must
    really be used and must pad far less than random batches do (the same windows, only their order changes)."""
    import random

    import torch
    from transformers import BertConfig, BertForTokenClassification
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from training.datasets import ListDataset
    from training.features import encode_windows
    from training.runner import Trainer, training_arguments
    from training.tokenizer import build_char_tokenizer

    rng = random.Random(0)
    texts = ["".join(rng.choice("天地玄黄宇宙洪荒日月盈昃辰宿列张") for _ in range(rng.choice([7, 12, 30, 200])))
             for _ in range(1600)]  # enough windows for megabatches of many batches, as in real training
    tokenizer = build_char_tokenizer(texts, tmp_path / "tok", min_count=1)
    windows = encode_windows(texts, tokenizer, 128, 32, [[0] * len(t) for t in texts])
    for name in ("segmentation-cpu", "punctuation-cpu"):
        config = load_config(f"training/configs/{name}.yaml", ["trainer.bf16=false"])
        arguments = training_arguments(config, tmp_path / name, "f1", {})
        assert arguments.group_by_length
    model = BertForTokenClassification(BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1,
                                                  num_attention_heads=1, intermediate_size=8, num_labels=2))
    trainer = Trainer(model=model, args=arguments, train_dataset=ListDataset(windows.features),
                      eval_dataset=ListDataset(windows.features))
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    # transformers 4.57 would shuffle evaluation and predict() too; predictions are merged back by position
    assert isinstance(trainer._get_eval_sampler(trainer.eval_dataset), torch.utils.data.SequentialSampler)
    assert [int(i) for i in trainer.get_eval_dataloader().sampler] == list(range(len(windows.features)))
    order = list(sampler)
    assert sorted(order) == list(range(len(windows.features)))  # every window once: nothing dropped or repeated

    def padded_fraction(indices, size=32):
        lengths = [len(windows.features[i]["input_ids"]) for i in indices]
        batches = [lengths[k:k + size] for k in range(0, len(lengths), size)]
        return 1 - sum(map(sum, batches)) / sum(max(b) * len(b) for b in batches)

    shuffled = list(range(len(windows.features)))
    rng.shuffle(shuffled)
    assert padded_fraction(order) < 0.25 * padded_fraction(shuffled), (padded_fraction(order), padded_fraction(shuffled))


def test_length_grouped_loss_weighs_every_token_alike():
    """With a fixed expected count, a token's gradient weight no longer depends on how full its batch is."""
    import torch

    from training.losses import weighted_loss

    logits = torch.zeros(1, 10, 2, requires_grad=True)
    short = torch.full((1, 10), -100)
    short[0, :2] = 1  # a short window: 2 labelled tokens
    long = torch.ones(1, 10, dtype=torch.long)  # a long one: 10
    per_batch, fixed = weighted_loss(None), weighted_loss(None, expected_items=6.0)

    def token_gradient(loss_fn, labels):
        logits.grad = None
        loss_fn({"logits": logits}, labels, torch.tensor(int((labels != -100).sum()))).backward()
        return float(logits.grad[0, 0].abs().sum())

    assert token_gradient(per_batch, short) == pytest.approx(5 * token_gradient(per_batch, long))
    assert token_gradient(fixed, short) == pytest.approx(token_gradient(fixed, long))
    with torch.no_grad():  # evaluation: still the batch mean
        assert float(fixed({"logits": logits}, short, torch.tensor(2))) == pytest.approx(float(torch.log(torch.tensor(2.0))))


def test_char_dropout_replaces_only_labelled_characters_and_only_in_training(tmp_path):
    """options.char_dropout: in training batches about that share of the labelled characters read as [UNK], labels
    unchanged; [CLS]/[SEP]/padding never; evaluation batches are the plain ones."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, DataCollatorForTokenClassification, TrainingArguments

    from training.datasets import ListDataset
    from training.features import CharDropoutCollator, encode_windows
    from training.runner import Trainer
    from training.tokenizer import build_char_tokenizer

    texts = ["天地玄黄宇宙洪荒日月盈昃辰宿列张" * 4, "寒来暑往秋收冬藏"] * 200
    tokenizer = build_char_tokenizer(texts, tmp_path / "tok", min_count=1)
    windows = encode_windows(texts, tokenizer, 128, 32, [[1] * len(t) for t in texts])
    plain = DataCollatorForTokenClassification(tokenizer)
    dropout = CharDropoutCollator(plain, tokenizer.unk_token_id, 0.2)
    torch.manual_seed(0)
    clean, noisy = plain(windows.features), dropout(windows.features)
    assert torch.equal(clean["labels"], noisy["labels"])
    changed = clean["input_ids"] != noisy["input_ids"]
    labelled = clean["labels"] != -100
    assert not (changed & ~labelled).any()  # specials and padding untouched
    assert (noisy["input_ids"][changed] == tokenizer.unk_token_id).all()
    assert 0.18 < changed[labelled].float().mean() < 0.22
    assert not (clean["input_ids"] == tokenizer.unk_token_id).any()

    model = BertForTokenClassification(BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1,
                                                  num_attention_heads=1, intermediate_size=8, num_labels=2))
    arguments = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=64,
                                  per_device_eval_batch_size=64, report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=arguments, train_dataset=ListDataset(windows.features),
                      eval_dataset=ListDataset(windows.features), data_collator=plain, train_data_collator=dropout)
    train_batch = next(iter(trainer.get_train_dataloader()))
    eval_batch = next(iter(trainer.get_eval_dataloader()))
    assert (train_batch["input_ids"] == tokenizer.unk_token_id).any()
    assert not (eval_batch["input_ids"] == tokenizer.unk_token_id).any()
    assert trainer.data_collator is plain

    with pytest.raises(ConfigError, match="char_dropout"):
        load_config("training/configs/segmentation-tiny.yaml", ["options.char_dropout=0.6"])
    with pytest.raises(ValueError, match="char_dropout"):
        CharDropoutCollator(plain, 1, 1.5)


def test_oversample_by_collection_takes_precedence_over_kind(caplog):
    import logging

    from training.datasets import prepare_train_records

    records = [{"text": "甲", "kind": "prose", "collection": "a"}, {"text": "乙", "kind": "prose", "collection": "b"},
               {"text": "丙", "kind": "verse", "collection": "c"}]
    config = load_config(values={"name": "x", "task": "segmentation", "data": {"oversample": {"prose": 3, "b": 5}}})
    out = prepare_train_records(config, records)
    assert [r["text"] for r in out].count("甲") == 3 and [r["text"] for r in out].count("乙") == 5
    assert [r["text"] for r in out].count("丙") == 1 and len(out) == 9
    config = load_config(values={"name": "x", "task": "segmentation", "data": {"oversample": {"prsoe": 3}}})
    with caplog.at_level(logging.WARNING, logger="tagsmith"):
        assert prepare_train_records(config, records) == records
    assert "data.oversample names prsoe, which no record" in caplog.text


def test_mlm_refuses_length_grouped_batches():
    with pytest.raises(ConfigError, match="trainer.group_by_length: not supported for mlm"):
        load_config("training/configs/mlm-tiny.yaml", ["trainer.group_by_length=true"])
    assert load_config("training/configs/mlm-tiny.yaml", ["trainer.group_by_length=false"]).task == "mlm"
