"""End-to-end: toxicity classification and masked-LM adaptation through the real CLI (the session's tiny models,
conftest's ``tiny_models``, and runs of their own for the options tested here); interruption + resume."""

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import FILLER, NICE, ROOT, RUDE
from helpers import toxicity_data
from tagsmith.records import write_jsonl

PYTHON = [sys.executable, "-m", "tagsmith.cli"]


def run(*args, timeout=600):
    result = subprocess.run([*PYTHON, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def data_overrides(files):
    return ["--set", f"data.train={files['train']}", "--set", f"data.validation={files['validation']}",
            "--set", f"data.test={files['test']}"]


@pytest.fixture(scope="module")
def tiny_toxicity(tiny_models):
    """(data files, run dir) of the session's tiny toxicity model (helpers.train_tiny): tested here, and the
    teacher of the distillation test."""
    run = tiny_models.run("toxicity")
    return run["data"], run["run_dir"]


@pytest.mark.slow
def test_toxicity_trains_tunes_threshold_and_predicts(tiny_toxicity):
    _, run_dir = tiny_toxicity
    results = json.loads((run_dir / "results.json").read_text())
    # one word decides the label: a working pipeline separates the classes almost perfectly
    assert results["test"]["macro_f1"] > 0.9, results["test"]
    assert results["test"]["roc_auc"] > 0.95
    matrix = results["test"]["confusion_matrix"]
    assert matrix["labels"] == ["non-toxic", "toxic"] and sum(map(sum, matrix["matrix"])) == 80
    manifest = json.loads((run_dir / "best/tagsmith.json").read_text())
    assert 0 < manifest["threshold"] < 1 and manifest["positive_label"] == "toxic"
    out = run("predict", run_dir / "best", "you are a stupid moron", "thanks you are so kind").stdout.splitlines()
    predictions = [json.loads(line) for line in out if line.startswith("{")]
    assert [p["label"] for p in predictions] == ["toxic", "non-toxic"]


@pytest.mark.slow
def test_mlm_before_after_and_fill_mask(tiny_models):
    """The session's tiny masked-LM (helpers.train_tiny, on VERSE): scored before and after training, then fills a
    mask."""
    run_dir = tiny_models.run("mlm")["run_dir"]
    results = json.loads((run_dir / "results.json").read_text())
    before, after = results["before"], results["after"]
    assert before["masked_tokens"] == after["masked_tokens"] > 0  # the same masked positions both times
    assert 1 < after["perplexity"] < before["perplexity"]
    assert after["top5_accuracy"] >= before["top5_accuracy"]
    out = run("predict", run_dir / "best", "天地玄[MASK]，宇宙洪荒。").stdout.splitlines()
    fills = json.loads([l for l in out if l.startswith("{")][0])["fills"]
    assert len(fills) == 1 and len(fills[0]) == 5


@pytest.mark.slow
def test_sigterm_checkpoints_exits_75_and_resume_matches_uninterrupted(tmp_path):
    files = toxicity_data(tmp_path)
    common = ["train", "--config", ROOT / "training/configs/toxicity-tiny.yaml", *data_overrides(files),
              "--set", "trainer.max_steps=60", "--set", "trainer.eval_steps=10", "--set", "max_length=16",
              "--set", "trainer.save_total_limit=null", "--set", "early_stopping_patience=100"]
    run(*common, "--set", f"output_dir={tmp_path}/plain")

    run_dir = tmp_path / "cut/toxicity-tiny"
    process = subprocess.Popen([*PYTHON, *map(str, common), "--set", f"output_dir={tmp_path}/cut"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not list((run_dir / "checkpoints").glob("checkpoint-20/.complete")):
        assert process.poll() is None and time.time() < deadline, "training ended before it could be interrupted"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 75, output[-3000:]
    assert "received SIGTERM" in (run_dir / "train.log").read_text()
    assert not (run_dir / "results.json").exists()
    interrupted_at = max(int(p.parent.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("*/.complete"))
    assert 20 <= interrupted_at < 60
    # a half-written checkpoint (no completion marker) must never be resumed from
    (run_dir / "checkpoints/checkpoint-59").mkdir()
    (run_dir / "checkpoints/checkpoint-59/trainer_state.json").write_text("{trunc")

    run(*common, "--set", f"output_dir={tmp_path}/cut", "--resume")
    log = (run_dir / "train.log").read_text()
    assert f"resuming from {run_dir}/checkpoints/checkpoint-{interrupted_at}" in log
    plain = json.loads((tmp_path / "plain/toxicity-tiny/results.json").read_text())
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["global_step"] == plain["global_step"] == 60
    assert resumed["test"]["roc_auc"] == pytest.approx(plain["test"]["roc_auc"], abs=0.03)
    assert resumed["test"]["macro_f1"] == pytest.approx(plain["test"]["macro_f1"], abs=0.05)


def test_whole_word_masking_masks_every_piece_of_a_word(tmp_path):
    from training.mlm import _with_offsets, chunk, training_collator
    from training.tokenizer import build_wordpiece_tokenizer

    texts = ["the transcription factor binds the promoter region"] * 30 + ["transcriptional regulation"] * 30
    tokenizer = build_wordpiece_tokenizer(texts, tmp_path / "tok", vocab_size=60)
    blocks = _with_offsets(chunk(texts[:8], tokenizer, 32), tokenizer, True)
    batch = training_collator(tokenizer, 0.5, True, seed=0)([dict(b) for b in blocks])
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in batch["input_ids"].tolist()]
    masked = batch["labels"] != -100
    assert masked.any()
    for row, flags in zip(tokens, masked.tolist()):
        for i, token in enumerate(row):
            if i and token.startswith("##") and token != "[MASK]":  # a continuation piece left visible ...
                assert not flags[i - 1], "... whose word start was masked"


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_masked_only_scoring_gives_the_stock_loss_and_gradients(family):
    """Training scores the vocabulary at masked positions only: same loss and gradients as the stock head."""
    import copy

    import torch
    from transformers import BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

    from training.mlm import score_masked_positions_only

    size = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=40)
    stock = (BertForMaskedLM(BertConfig(**size)) if family == "bert"
             else RobertaForMaskedLM(RobertaConfig(**size, pad_token_id=1)))
    fast = copy.deepcopy(stock)
    assert score_masked_positions_only(fast)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 300, (4, 24), generator=generator)
    labels = torch.full_like(ids, -100)
    masked = torch.rand(ids.shape, generator=generator) < 0.2
    labels[masked] = ids[masked]
    for model in (stock, fast):
        model.train()
        torch.manual_seed(1)  # the same dropout masks in both
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
    torch.manual_seed(1)
    assert fast(input_ids=ids, labels=labels).logits.shape == (int(masked.sum()), 300)  # masked positions only
    for (name, a), b in zip(stock.named_parameters(), fast.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    fast.eval()  # evaluation and inference see the stock model: logits at every position
    assert fast(input_ids=ids, labels=labels).logits.shape == (4, 24, 300)


@pytest.mark.slow
def test_whole_word_mlm_trains_on_blocks_of_different_lengths(tmp_path):
    """Sentences of different lengths, a WordPiece vocabulary, whole-word masking, through the Trainer (this once
    failed: the Trainer dropped offset_mapping, and blocks of different lengths could not be batched)."""
    rng = random.Random(0)
    words = FILLER + RUDE + NICE + ["transcription", "regulation", "promoter", "binding", "expression"]
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, [{"text": " ".join(rng.choices(words, k=rng.randint(3, 30)))} for _ in range(300)])
    run("train", "--config", ROOT / "training/configs/mlm-tiny.yaml", "--set", f"data.files=[{corpus}]",
        "--set", "data.script=keep", "--set", f"output_dir={tmp_path}/runs", "--set", "trainer.max_steps=30",
        "--set", "trainer.eval_steps=15", "--set", "trainer.per_device_train_batch_size=8",
        "--set", "options.scratch_tokenizer=wordpiece", "--set", "options.whole_word_mask=true",
        "--set", "options.validation_fraction=0.1", "--set", "max_length=24")
    results = json.loads((tmp_path / "runs/mlm-tiny/results.json").read_text())
    assert results["whole_word_mask"] is True and results["global_step"] == 30
    assert results["after"]["perplexity"] < results["before"]["perplexity"]


def test_whole_word_collator_pads_offsets_of_blocks_of_different_lengths(tmp_path):
    from training.mlm import _with_offsets, chunk, training_collator
    from training.tokenizer import build_wordpiece_tokenizer

    texts = ["the transcription factor binds the promoter region of the gene"] * 20 + ["transcriptional regulation"] * 20
    tokenizer = build_wordpiece_tokenizer(texts, tmp_path / "tok", vocab_size=60)
    blocks = _with_offsets(chunk([texts[0], texts[-1]], tokenizer, 32), tokenizer, True)
    assert len({len(b["input_ids"]) for b in blocks}) == 2
    batch = training_collator(tokenizer, 0.9, True, seed=0)([dict(b) for b in blocks])
    short = len(blocks[1]["input_ids"])
    assert batch["input_ids"].shape == (2, len(blocks[0]["input_ids"]))
    assert (batch["labels"][1, short:] == -100).all()  # padding is never masked
    assert (batch["labels"] != -100).any()


def test_head_warm_up_trains_the_head_only(tmp_path):
    """A checkpoint without a masked-LM head: warm_up_head fits the new head and leaves the encoder and the tied
    embeddings exactly as they were."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from training.mlm import chunk, training_collator, warm_up_head
    from training.tokenizer import build_char_tokenizer

    texts = ["天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。"] * 40 + ["寒来暑往，秋收冬藏。闰余成岁，律吕调阳。"] * 40
    tokenizer = build_char_tokenizer(texts, tmp_path / "tok", 1, 200)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    encoder = {k: v.clone() for k, v in model.bert.state_dict().items()}
    transform = model.cls.predictions.transform.dense.weight.clone()
    blocks = chunk(texts, tokenizer, 24)
    result = warm_up_head(model, tokenizer, blocks, training_collator(tokenizer, 0.3, False, 0), steps=60,
                          learning_rate=1e-2, batch_size=16, seed=0, progress=False)
    assert result["steps"] == 60 and result["loss_last"] < 0.9 * result["loss_first"]
    for name, value in model.bert.state_dict().items():
        assert torch.equal(value, encoder[name]), f"{name} changed during the head warm-up"
    assert not torch.equal(model.cls.predictions.transform.dense.weight, transform)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_mlm_from_a_checkpoint_without_head_warms_it_up_first(tmp_path):
    """all-MiniLM-L6-v2 ships no masked-LM head: the run says so, warms the head up, and scores "before" on the
    original encoder with the warmed-up head (a random head's perplexity is no baseline)."""
    from transformers import BertConfig, BertModel

    from training.tokenizer import build_char_tokenizer

    texts = [f"{a}{b}，{c}{d}。" for a in "天地玄黄" for b in "宇宙洪荒" for c in "日月盈昃" for d in "辰宿列张"]
    headless = tmp_path / "headless"
    tokenizer = build_char_tokenizer(texts, headless, 1, 200)
    tokenizer.save_pretrained(headless)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(headless)
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, [{"text": t} for t in texts])
    run("train", "--config", ROOT / "training/configs/mlm-tiny.yaml", "--set", f"data.files=[{corpus}]",
        "--set", f"model.name_or_path={headless}", "--set", f"output_dir={tmp_path}/runs",
        "--set", "trainer.max_steps=10", "--set", "trainer.eval_steps=10", "--set", "options.head_warmup_steps=40",
        "--set", "options.head_warmup_learning_rate=0.01", "--set", "max_length=32")
    results = json.loads((tmp_path / "runs/mlm-tiny/results.json").read_text())
    assert any(name.startswith("cls.predictions.transform") for name in results["new_head_weights"])
    assert results["head_warmup"]["steps"] == 40
    assert results["before"]["perplexity"] < results["before_head_warmup"]["perplexity"]


def test_distillation_loss_is_the_kl_to_the_teacher_plus_the_weighted_label_loss():
    import torch

    from training.classification import distillation_loss

    torch.manual_seed(0)
    logits, labels = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 0])
    weights = torch.tensor([0.7, 1.6])
    # the class-weighted sum over the texts divided by their count (training.losses.weighted_loss says why
    # not by the sum of their weights, as torch's weighted mean would)
    hard = torch.nn.functional.cross_entropy(logits, labels, weight=weights, reduction="sum") / 6
    own = torch.softmax(logits / 3.0, dim=-1)
    assert torch.allclose(distillation_loss(weights, 3.0, 0.0)(logits, labels, own), hard)
    assert distillation_loss(weights, 3.0, 1.0)(logits, labels, own).abs() < 1e-6  # the student is the teacher
    teacher = torch.tensor([[0.9, 0.1]] * 6)
    kl = (teacher * (teacher.log() - torch.log_softmax(logits / 3.0, dim=-1))).sum(-1).mean() * 9
    assert torch.allclose(distillation_loss(weights, 3.0, 0.25)(logits, labels, teacher), 0.25 * kl + 0.75 * hard)
    assert torch.allclose(distillation_loss(weights, 3.0, 0.25)(logits, labels), hard)  # evaluation: labels only
    # in training the Trainer passes the texts of the whole global batch (here: this one and another of 6)
    assert torch.allclose(distillation_loss(weights, 3.0, 0.25)(logits, labels, teacher, num_items_in_batch=12),
                          (0.25 * kl + 0.75 * hard) / 2)


@pytest.mark.slow
def test_a_student_of_fewer_layers_learns_from_a_cached_teacher(tiny_toxicity, tmp_path, monkeypatch):
    """distill.teacher + model.keep_layers: a 1-layer student initialised from a 2-layer teacher, taught by its
    probabilities (computed once, cached in the run dir) and the labels."""
    files, teacher = tiny_toxicity
    common = ["--config", ROOT / "training/configs/toxicity-tiny.yaml", *data_overrides(files),
              "--set", "trainer.max_steps=120", "--set", "trainer.eval_steps=40", "--set", "max_length=16"]
    run("train", *common, "--set", f"output_dir={tmp_path}/student", "--set", f"model.name_or_path={teacher}/best",
        "--set", "model.keep_layers=1", "--set", f"distill.teacher={teacher}", "--set", "distill.temperature=2",
        "--set", "distill.alpha=0.7", "--set", "trainer.learning_rate=3e-4")
    student = tmp_path / "student/toxicity-tiny"
    results = json.loads((student / "results.json").read_text())
    assert results["test"]["macro_f1"] > 0.9, results["test"]
    assert json.loads((student / "best/config.json").read_text())["num_hidden_layers"] == 1
    assert results["config"]["distill"] == {"teacher": str(teacher), "temperature": 2, "alpha": 0.7}
    log = (student / "train.log").read_text()
    assert log.count("logits of 400 training texts") == 1 and "distilling from" in log

    # the cache: the same texts and teacher weights never run the teacher again
    from tagsmith.config import load_config
    from training import classification

    config = load_config(ROOT / "training/configs/toxicity-tiny.yaml",
                         [f"distill.teacher={teacher}", "max_length=16"])
    texts = [json.loads(line)["text"] for line in files["train"].read_text().splitlines()]
    cached = classification.teacher_logits(config, student, ["non-toxic", "toxic"], texts)
    assert cached.shape == (1, 400, 2)
    monkeypatch.setattr(classification.AutoModelForSequenceClassification, "from_pretrained",
                        lambda *a, **k: pytest.fail("the teacher ran again"))
    again = classification.teacher_logits(config, student, ["non-toxic", "toxic"], texts)
    assert (again == cached).all()
    soft = classification.soft_targets(cached, 2.0)
    gold = [json.loads(line)["label"] == "toxic" for line in files["train"].read_text().splitlines()]
    assert ((soft[:, 1] > 0.5) == gold).mean() > 0.9  # the teacher's soft targets carry the labels
