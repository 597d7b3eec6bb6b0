"""The training losses do not depend on how a global batch is laid out (issue #16): batch 32 on one process, 16 x
gradient accumulation 2, 2 processes x 16 and 2 processes x 8 x accumulation 2 give the same loss, the same gradient
norm and the same update, for the class-weighted classification loss, the distillation loss and the tagging loss.

Each layout runs one real ``Trainer.train()`` step (SGD, learning rate 1, so the update is minus the gradient) of a
tiny BERT (hidden 32, one layer, no dropout) on the same 32 examples, which make exactly one global batch. The
reference layout runs unclipped; the others run with ``max_grad_norm`` at 1.5x the reference's gradient norm, so a
loss that grew with the accumulation steps or the process count (the Trainer skips its division by the accumulation
steps for a ``compute_loss_func`` and multiplies by the process count) would be clipped and move the weights less.
Two processes are two workers on CPU (gloo), this file as their script, with the environment torchrun would give them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # s: a rendezvous that hangs fails the test instead of blocking the session
VOCAB, LABELS, ITEMS = 40, 3, 32
WEIGHTS = [0.4, 1.0, 3.0]  # uneven on purpose: micro-batches then differ in their sums of weights
CASES = ("weighted", "distillation", "tagging")
# (processes, per-device batch, gradient accumulation steps); every layout is one global batch of 32
REFERENCE = (1, 32, 1)
ONE_PROCESS = [(1, 16, 2)]
TWO_PROCESSES = [(2, 16, 1), (2, 8, 2)]
UNCLIPPED = 1e9  # max_grad_norm: the norm is measured (and logged), nothing is clipped


def examples(case: str) -> list[dict]:
    import torch

    generator = torch.Generator().manual_seed(1)
    items = []
    for i in range(ITEMS):
        length = 3 + int(torch.randint(0, 10, (1,), generator=generator))
        ids = [2] + torch.randint(5, VOCAB, (length,), generator=generator).tolist() + [3]
        item = {"input_ids": ids}
        if case == "tagging":  # a label per token, -100 on [CLS]/[SEP]: the items differ in their labelled tokens
            item["labels"] = [-100] + [2 if t % 7 == 0 else 1 if t % 3 == 0 else 0 for t in ids[1:-1]] + [-100]
        else:  # imbalanced classes
            item["labels"] = 2 if i % 8 == 0 else 1 if i % 3 == 0 else 0
        if case == "distillation":
            item["teacher_probs"] = torch.softmax(torch.randn(LABELS, generator=generator), -1).tolist()
        items.append(item)
    return items


def collate(features: list[dict]) -> dict:
    import torch

    longest = max(len(f["input_ids"]) for f in features)

    def pad(values, fill):
        return list(values) + [fill] * (longest - len(values))

    batch = {"input_ids": torch.tensor([pad(f["input_ids"], 0) for f in features]),
             "attention_mask": torch.tensor([pad([1] * len(f["input_ids"]), 0) for f in features])}
    labels = [f["labels"] for f in features]
    batch["labels"] = torch.tensor([pad(l, -100) for l in labels] if isinstance(labels[0], list) else labels)
    if "teacher_probs" in features[0]:
        batch["teacher_probs"] = torch.tensor([f["teacher_probs"] for f in features])
    return batch


def make_trainer(case: str, layout: tuple[int, int, int], max_grad_norm: float, output_dir: str):
    """The model and Trainer the task's training function would build, at one layout."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

    from tagsmith.config import HeadConfig
    from training import classification, losses, runner
    from training.datasets import ListDataset
    from training.model import build_tagging_model

    _, per_device, accumulation = layout
    encoder = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    labels = ["a", "b", "c"]
    if case == "tagging":  # the CNN head's forward takes **kwargs: the Trainer passes it num_items_in_batch too
        model = build_tagging_model(labels, HeadConfig(type="cnn", cnn_kernels=[3], cnn_filters=16, cnn_dropout=0.0),
                                    BertConfig(**encoder))
    else:
        model = BertForSequenceClassification(BertConfig(**encoder, num_labels=LABELS))
    args = TrainingArguments(
        output_dir=output_dir, max_steps=1, per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation, learning_rate=1.0, optim="sgd", lr_scheduler_type="constant",
        weight_decay=0.0, max_grad_norm=max_grad_norm, logging_steps=1, save_strategy="no", eval_strategy="no",
        report_to=[], use_cpu=True, seed=0, data_seed=0, disable_tqdm=True, remove_unused_columns=False,
        dataloader_num_workers=0, ddp_find_unused_parameters=False,
    )
    weights = torch.tensor(WEIGHTS)
    common = dict(model=model, args=args, train_dataset=ListDataset(examples(case)), data_collator=collate)
    if case == "distillation":
        return classification.DistillationTrainer(distill_loss=classification.distillation_loss(weights, 2.0, 0.5),
                                                  **common)
    loss = losses.weighted_loss(weights)  # the one loss of classification and tagging
    return runner.Trainer(compute_loss_func=loss, **common)


def one_step(case: str, layout: tuple[int, int, int], max_grad_norm: float, output_dir: str) -> dict:
    """Loss (as the Trainer reports it: averaged over processes, unrounded), gradient norm before clipping, and the
    update of every weight, after one optimizer step."""
    import torch

    trainer = make_trainer(case, layout, max_grad_norm, output_dir)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    output = trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "grad_norm" in entry)
    update = torch.cat([(p.detach() - before[name]).flatten() for name, p in trainer.model.named_parameters()])
    return {"loss": output.training_loss, "grad_norm": float(logged["grad_norm"]), "update": update.tolist()}


def step_differences(actual: dict, expected: dict, what: str) -> list[str]:
    """What differs between two steps beyond float rounding (summation order), as readable lines."""
    import torch

    found = []
    for key, rel in (("loss", 1e-5), ("grad_norm", 1e-4)):
        if actual[key] != pytest.approx(expected[key], rel=rel):
            found.append(f"{what}: {key} {actual[key]:.6g}, expected {expected[key]:.6g}")
    update, reference = torch.tensor(actual["update"]), torch.tensor(expected["update"])
    if not torch.allclose(update, reference, rtol=1e-4, atol=1e-6):
        found.append(f"{what}: update norm {float(update.norm()):.6g}, expected {float(reference.norm()):.6g}; "
                     f"largest difference {float((update - reference).abs().max()):.3g}")
    return found


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("loss-scale")
    return {case: one_step(case, REFERENCE, UNCLIPPED, str(folder / case)) for case in CASES}


def clip_at(reference: dict) -> float:
    return 1.5 * reference["grad_norm"]


def test_the_losses_are_what_they_say(references, tmp_path):
    """The reference step's loss, recomputed by hand from the initial model: class-weighted cross-entropy summed over
    the items and divided by their count (labelled tokens for tagging); distillation adds alpha * T^2 * KL."""
    import torch

    weights = torch.tensor(WEIGHTS)
    computed = {}
    for case in CASES:
        trainer = make_trainer(case, REFERENCE, UNCLIPPED, str(tmp_path))
        batch = collate(examples(case))
        labels, teacher = batch.pop("labels"), batch.pop("teacher_probs", None)
        with torch.no_grad():
            logits = trainer.model(**batch).logits.float()
        flat, gold = logits.reshape(-1, LABELS), labels.reshape(-1)
        hard = torch.nn.functional.cross_entropy(flat, gold, weight=weights, ignore_index=-100, reduction="sum")
        expected = hard / (gold != -100).sum()
        if teacher is not None:
            kl = torch.nn.functional.kl_div(torch.log_softmax(logits / 2.0, -1), teacher, reduction="sum") * 4.0
            expected = 0.5 * kl / ITEMS + 0.5 * expected
        computed[case] = (references[case]["loss"], float(expected))
        assert references[case]["grad_norm"] > 0
    assert {case: loss for case, (loss, _) in computed.items()} == {
        case: pytest.approx(value, rel=1e-5) for case, (_, value) in computed.items()}


def test_gradient_accumulation_does_not_change_loss_or_gradients(references, tmp_path):
    found = []
    for case in CASES:
        for layout in ONE_PROCESS:
            step = one_step(case, layout, clip_at(references[case]), str(tmp_path / case))
            found += step_differences(step, references[case], f"{case} {layout}")
    assert not found, "\n".join(found)


@pytest.mark.slow  # two fresh processes import torch and transformers: ~10 s of CPU each
def test_two_processes_match_one(references, tmp_path):
    out = tmp_path / "ddp.json"
    settings = json.dumps({case: clip_at(references[case]) for case in CASES})
    with socket.socket() as probe:  # a free port for the rendezvous (no torchrun agent: one import of torch less)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ranks = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": str(rank),
               "LOCAL_RANK": str(rank)}
        ranks.append(subprocess.Popen([sys.executable, str(Path(__file__)), str(out), str(tmp_path), settings],
                                      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                      start_new_session=True))
    outputs = []
    for process in ranks:
        try:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
        except subprocess.TimeoutExpired:
            for each in ranks:
                os.killpg(each.pid, signal.SIGKILL)
            pytest.fail(f"the two processes did not finish in {TIMEOUT} s:\n{process.communicate()[0][-4000:]}")
    assert [p.returncode for p in ranks] == [0, 0], "\n".join(o[-4000:] for o in outputs)
    steps = json.loads(out.read_text())
    assert sorted(steps) == sorted(f"{case} {list(layout)}" for case in CASES for layout in TWO_PROCESSES)
    found = [line for case in CASES for layout in TWO_PROCESSES
             for line in step_differences(steps[f"{case} {list(layout)}"], references[case], f"{case} {layout}")]
    assert not found, "\n".join(found)


def _worker(out: str, folder: str, clip: dict) -> None:
    """One of the two processes: every case at every two-process layout; rank 0 writes the results."""
    results = {}
    for case in CASES:
        for layout in TWO_PROCESSES:
            results[f"{case} {list(layout)}"] = one_step(case, layout, clip[case], str(Path(folder) / f"ddp-{case}"))
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _worker(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
