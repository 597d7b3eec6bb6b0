"""Distributed training: ``torchrun --nproc_per_node 2`` (CPU, gloo) trains the tiny segmentation config exactly as one
process does with the same global batch, and a torchrun run resumes from its checkpoint (issue #6).

With dropout off the two runs are the same computation: accelerate's sampler deals the global batches of one seeded
permutation out to the ranks (rank r takes half r of each), the gradient all-reduce averages the halves' gradients
(the Trainer scales each rank's loss by the world size, as it divides by the tokens of the whole global batch), and
DDP starts every rank from rank 0's weights, which prepare_run_dir seeds. So the test asks for the same losses to a
float rounding tolerance, not for "similar" ones, and would notice a rank seeing other batches or a mis-scaled loss.
Dropout is the one thing that has to differ (each rank draws masks for its half of the batch from the same seeded
generator; one process draws them for the whole batch), so both runs switch it off.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tagsmith.convert import punctuated_to_record
from tagsmith.records import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training" / "configs" / "segmentation-tiny.yaml"
TIMEOUT = 300  # s: a rendezvous or collective that hangs fails the test instead of blocking the session

# Verse with a fixed rhythm (a boundary every 4 characters): learnable in a few dozen steps, so F1 means something.
LINES = [
    "天地玄黃，宇宙洪荒。日月盈昃，辰宿列張。寒來暑往，秋收冬藏。閏餘成歲，律呂調陽。",
    "雲騰致雨，露結為霜。金生麗水，玉出崑岡。劍號巨闕，珠稱夜光。果珍李柰，菜重芥薑。",
    "海鹹河淡，鱗潛羽翔。龍師火帝，鳥官人皇。始制文字，乃服衣裳。推位讓國，有虞陶唐。",
]
VALIDATION = ["鳴鳳在竹，白駒食場。化被草木，賴及萬方。蓋此身髮，四大五常。恭惟鞠養，豈敢毀傷。",
              "弔民伐罪，周發殷湯。坐朝問道，垂拱平章。愛育黎首，臣伏戎羌。遐邇一體，率賓歸王。"]
TEST = ["女慕貞絜，男效才良。知過必改，得能莫忘。罔談彼短，靡恃己長。信使可覆，器欲難量。",
        "墨悲絲染，詩讚羔羊。景行維賢，克念作聖。德建名立，形端表正。空谷傳聲，虛堂習聽。"]
COPIES = 32  # 96 one-window records: 3 full global batches of 32 an epoch, so no epoch ends on a short batch

GLOBAL_BATCH = 32
STEPS = 40
RESUME_AT = 20  # a saved checkpoint (eval and save every 10 steps)


def overrides(data: dict, steps: int, per_device_batch: int) -> list[str]:
    settings = {
        **{f"data.{split}": str(path) for split, path in data.items()},
        "trainer.max_steps": steps, "trainer.eval_steps": 10, "trainer.logging_steps": 5,
        "trainer.per_device_train_batch_size": per_device_batch,
        # a learning rate that does not depend on max_steps, so that a run stopped at step 20 and resumed with
        # max_steps 40 follows the uninterrupted run's schedule
        "trainer.lr_scheduler_type": "constant_with_warmup", "trainer.warmup_steps": 4,
        "model.scratch.hidden_dropout_prob": 0, "model.scratch.attention_probs_dropout_prob": 0,
        "early_stopping_patience": 1000, "seed": 7,
    }
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def run(command: list[str], what: str) -> str:
    """Run in a session of its own, killed whole (torchrun and its workers) if it outlives TIMEOUT."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{what} did not finish in {TIMEOUT} s (hung?):\n{output[-4000:]}")
    assert process.returncode == 0, f"{what} exited {process.returncode}:\n{output[-6000:]}"
    return output


def train_single(data: dict, run_dir: Path) -> str:
    return run([sys.executable, "-m", "tagsmith.cli", "train", "--config", str(CONFIG), "--run-dir", str(run_dir),
                *overrides(data, STEPS, GLOBAL_BATCH)], "single-process training")


def train_torchrun(data: dict, run_dir: Path, steps: int = STEPS, *extra: str) -> str:
    # --standalone: a c10d rendezvous on a free port of localhost that torchrun picks itself (no port to guess)
    return run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
                "--max_restarts", "0", "-m", "tagsmith.cli", "train", "--config", str(CONFIG), "--run-dir", str(run_dir),
                *extra, *overrides(data, steps, GLOBAL_BATCH // 2)], "torchrun training")


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def losses(run_dir: Path, step: int) -> dict:
    """Training and validation losses by step from a checkpoint's trainer_state.json."""
    state = json.loads((run_dir / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").read_text())
    found = {}
    for entry in state["log_history"]:
        for key in ("loss", "eval_loss"):
            if key in entry:
                found[(key, entry["step"])] = entry[key]
    return found


def assert_same_losses(actual: dict, expected: dict, steps: range) -> None:
    # rel 5e-3: the runs differ only in the order floats are summed (one batch of 32 vs two of 16 and an
    # all-reduce), ~1e-7 a step, and that rounding compounds over the steps: measured up to 1.2e-3 relative by
    # step 30-35 (CI, 2026-11). Dropout on, they drift apart by a few per cent, as would a rank that sees other
    # batches; a mis-scaled loss is off by the world size.
    chosen = {k: v for k, v in expected.items() if k[1] in steps}
    assert len(chosen) >= 4, expected
    assert {k: actual.get(k) for k in chosen} == {k: pytest.approx(v, rel=5e-3) for k, v in chosen.items()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("distributed-data")
    files = {}
    for split, lines in (("train", LINES * COPIES), ("validation", VALIDATION), ("test", TEST)):
        files[split] = folder / f"{split}.jsonl"
        write_jsonl(files[split], [punctuated_to_record(line, "segmentation") for line in lines])
    return files


@pytest.fixture(scope="module")
def torchrun_run(data, tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("torchrun") / "segmentation-ddp"
    return run_dir, train_torchrun(data, run_dir)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(data, torchrun_run, tmp_path):
    single_dir = tmp_path / "segmentation-single"
    train_single(data, single_dir)
    ddp_dir, ddp_output = torchrun_run
    single, ddp = results(single_dir), results(ddp_dir)

    assert single["global_step"] == ddp["global_step"] == STEPS
    # the comparison means something: the single-process model learned (F1 of a model that learned nothing is ~0.3
    # or less: no boundaries, or one after every character)
    assert single["test"]["f1"] > 0.8, single["test"]
    # F1 of ~16 test boundaries: 0.05 is one boundary placed differently, possible only for a character whose
    # logits tie to within the float rounding the losses differ by
    assert abs(single["test"]["f1"] - ddp["test"]["f1"]) <= 0.05, (single["test"], ddp["test"])
    assert abs(single["validation"]["f1"] - ddp["validation"]["f1"]) <= 0.05, (single["validation"], ddp["validation"])
    assert_same_losses(losses(ddp_dir, STEPS), losses(single_dir, STEPS), range(1, STEPS + 1))

    # two processes: the Trainer (rank 0's train.log) ran 16 a device for a global batch of 32
    log = (ddp_dir / "train.log").read_text(encoding="utf-8")
    per_device = int(re.search(r"Instantaneous batch size per device = (\d+)", log).group(1))
    total = int(re.search(r"Total train batch size \(w\. parallel, distributed & accumulation\) = (\d+)", log).group(1))
    assert (per_device, total) == (GLOBAL_BATCH // 2, GLOBAL_BATCH), "world size is not 2"
    state = json.loads((ddp_dir / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["train_batch_size"] * 2 == GLOBAL_BATCH
    assert sorted(p.name for p in (ddp_dir / "checkpoints" / f"checkpoint-{STEPS}").glob("rng_state_*.pth")) == [
        "rng_state_0.pth", "rng_state_1.pth"]  # one RNG state per rank

    # only rank 0 writes the run's files: one results.json, written once, and one train.log
    assert [p.relative_to(ddp_dir) for p in ddp_dir.rglob("results.json")] == [Path("results.json")]
    assert not list(ddp_dir.rglob("*.tmp"))
    assert ddp_output.count("done: best model in") == 1, ddp_output[-3000:]
    assert log.count("***** Running training *****") == 1


@pytest.mark.slow
def test_torchrun_run_resumes_from_its_checkpoint(data, torchrun_run, tmp_path):
    """A torchrun run stopped at step 20 and resumed (--resume) goes on as the uninterrupted one did.

    This used to fail on CPU: the Trainer loads the optimizer state with map_location = its device, which under
    torchrun on CPUs is ``cpu:0``, a location torch.load did not restore (training/runner.py now lets it)."""
    run_dir = tmp_path / "segmentation-resumed"
    train_torchrun(data, run_dir, RESUME_AT)
    assert results(run_dir)["global_step"] == RESUME_AT
    output = train_torchrun(data, run_dir, STEPS, "--resume")
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert f"resuming from {run_dir / 'checkpoints' / f'checkpoint-{RESUME_AT}'}" in log, output[-3000:]
    assert "Continuing training from global step 20" in output
    assert results(run_dir)["global_step"] == STEPS

    uninterrupted_dir, _ = torchrun_run
    # the steps after the resume: the same batches (the sampler's epoch and position were restored), weights and
    # Adam state from the checkpoint
    assert_same_losses(losses(run_dir, STEPS), losses(uninterrupted_dir, STEPS), range(RESUME_AT + 1, STEPS + 1))
    assert results(run_dir)["test"]["f1"] == pytest.approx(results(uninterrupted_dir)["test"]["f1"], abs=0.05)
