"""What every training run shares, whatever the task: the run dir, logging, Trainer arguments, signals,
atomic checkpoints, resume, and the files a finished run leaves (docs/architecture.md, "Run dir")."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers
from transformers import TrainerCallback, TrainingArguments

from tagsmith import __version__
from tagsmith.config import ExperimentConfig, dump_config
from tagsmith.files import git_commit, write_json_atomic  # noqa: F401 (git_commit re-exported)
from tagsmith.hashing import sha256_file  # noqa: F401 (re-exported)
from tagsmith.manifest import previous_card

log = logging.getLogger("tagsmith")

#: exit code of a run stopped by SIGTERM / SIGUSR1 after saving a checkpoint: "requeue me and --resume"
EXIT_REQUEUE = 75
COMPLETE_MARKER = ".complete"


class RunDirError(RuntimeError):
    pass


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def prepare_run_dir(config: ExperimentConfig, resume: bool, overwrite: bool) -> Path:
    """The run dir, judged (and with --overwrite cleared) by rank 0 alone, and every RNG seeded with the config's
    seed so that the model's initial weights are the seed's (the Trainer seeds only after the model is built)."""
    run_dir = config.run_dir
    # the other ranks wait: had one of them written to the run dir first, rank 0 would find a run there
    with main_process_first(config):
        if is_main_process() and run_dir.exists() and any(run_dir.iterdir()) and not resume:
            if not overwrite:
                raise RunDirError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to start over")
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if is_main_process():
            dump_config(config, run_dir / "config.yaml")
    from transformers import set_seed

    set_seed(config.seed)
    return run_dir


@contextmanager
def main_process_first(config: ExperimentConfig):
    """Under torchrun, rank 0 runs the block first and the other ranks only once it has (a barrier before and after).
    It starts the process group the way TrainingArguments would (which then keeps it); when rank 0 leaves with an
    error, torchrun stops the ranks waiting here. Without torchrun, just the block."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    from datetime import timedelta

    from accelerate import PartialState

    cpu = bool(config.trainer.get("use_cpu", not _cuda_available()))
    timeout = timedelta(seconds=int(config.trainer.get("ddp_timeout", 1800)))
    with PartialState(cpu=cpu, backend=config.trainer.get("ddp_backend"), timeout=timeout).main_process_first():
        yield


def setup_logging(run_dir: Path) -> None:
    """Timestamped lines to RUN_DIR/train.log (rank 0 only) and the console."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    for name in ("tagsmith", "transformers.trainer"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        for handler in list(logger.handlers):
            if getattr(handler, "_tagsmith", False):
                logger.removeHandler(handler)
        if is_main_process():
            file_handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
            file_handler.setFormatter(formatter)
            file_handler._tagsmith = True
            logger.addHandler(file_handler)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in log.handlers):
        console = logging.StreamHandler()
        console.setFormatter(formatter)
        log.addHandler(console)
    log.propagate = False


def training_arguments(config: ExperimentConfig, run_dir: Path, metric: str, defaults: dict) -> TrainingArguments:
    """Project defaults, then the config's ``trainer:`` keys, which win."""
    arguments = {
        "output_dir": str(run_dir / "checkpoints"),
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "steps",
        "logging_steps": 50,
        "load_best_model_at_end": True,
        "metric_for_best_model": metric,
        "greater_is_better": True,
        "save_total_limit": 2,
        "report_to": [],
        "seed": config.seed,
        "data_seed": config.seed,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
        "use_cpu": not _cuda_available(),
        "ddp_find_unused_parameters": False,
    }
    arguments.update(defaults)
    arguments.update(config.trainer)
    if arguments.get("bf16") == "auto":
        arguments["bf16"] = bf16_is_fast()
        log.info("bf16: auto -> %s", arguments["bf16"])
    if arguments.get("save_strategy") != arguments.get("eval_strategy") and arguments.get("load_best_model_at_end"):
        arguments["save_strategy"] = arguments["eval_strategy"]
    if arguments.get("load_best_model_at_end") and "eval_steps" in arguments and "save_steps" not in config.trainer:
        arguments["save_steps"] = arguments["eval_steps"]  # the best model must be a saved one
    try:
        return TrainingArguments(**arguments)
    except (TypeError, ValueError) as error:
        raise RunDirError(f"config trainer: {error}") from None


class Trainer(transformers.Trainer):
    """The Hugging Face Trainer, with evaluation and prediction always in dataset order, and an optional collator
    for training batches alone (``train_data_collator``).

    transformers 4.57 applies ``group_by_length`` to evaluation and ``predict()`` too: their sampler becomes a
    shuffling ``LengthGroupedSampler``, so predictions come back in another order than the dataset. Every task here
    maps predictions back to their windows, records and texts by position, so only training batches are grouped.
    """

    def __init__(self, *args, train_data_collator=None, **kwargs):
        training_args = kwargs.get("args") if kwargs.get("args") is not None else (args[1] if len(args) > 1 else None)
        if training_args is not None:
            # transformers 4.57 writes the precision of every TrainingArguments into ACCELERATE_MIXED_PRECISION and
            # reads it back as the default of the next one, so after one bf16 run in a process every later run
            # trained in bf16 too, whatever its own ``bf16: false`` said. Each Trainer's own arguments decide.
            wanted = mixed_precision(training_args)
            os.environ["ACCELERATE_MIXED_PRECISION"] = wanted
            from accelerate.state import AcceleratorState

            if AcceleratorState._shared_state.get("_mixed_precision", wanted) != wanted:
                AcceleratorState._reset_state()  # an Accelerator of an earlier run: its precision is not this run's
        super().__init__(*args, **kwargs)
        #: a collator for training batches only (e.g. character dropout); evaluation keeps ``data_collator``
        self.train_data_collator = train_data_collator

    def get_train_dataloader(self):
        if self.train_data_collator is None:
            return super().get_train_dataloader()
        plain, self.data_collator = self.data_collator, self.train_data_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = plain

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = getattr(dataset, "lengths", None)
        if self.args.group_by_length and lengths is not None:  # known lengths: no pass over every item to measure them
            from transformers.trainer_pt_utils import LengthGroupedSampler

            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        dataset=dataset, lengths=list(lengths))
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        if self.args.group_by_length and not self.args.use_legacy_prediction_loop:
            # what the base class does without group_by_length: sequential on one process, accelerate's
            # order-keeping split across several
            return torch.utils.data.SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
        return super()._get_eval_sampler(eval_dataset)


def mixed_precision(args: TrainingArguments) -> str:
    """The accelerate precision name of a run's Trainer arguments."""
    return "fp16" if args.fp16 else "bf16" if args.bf16 else "no"


def bf16_is_fast() -> bool:
    """Whether bf16 mixed precision speeds training here: a CUDA GPU that supports it (Ampere or later), or a
    CPU with native bf16 matmuls (AVX512-BF16 or AMX, Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4).
    Elsewhere bf16 is emulated on CPU and slower than fp32, so ``bf16: auto`` means fp32 there."""
    import torch

    if _cuda_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --- checkpoints and signals ---------------------------------------------------------------------------------


class CompleteCheckpointCallback(TrainerCallback):
    """Marks a checkpoint complete only after the Trainer wrote all of it; resume ignores unmarked ones."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                _fsync_tree(folder)
                marker = folder / COMPLETE_MARKER
                marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"), encoding="utf-8")
                _fsync_path(marker)
        return control


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            _fsync_path(path)


def latest_complete_checkpoint(run_dir: Path) -> Path | None:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    complete = [
        p for p in folder.glob("checkpoint-*") if (p / COMPLETE_MARKER).is_file() and p.name.split("-")[-1].isdigit()
    ]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


class StopOnSignalCallback(TrainerCallback):
    """SIGTERM / SIGUSR1 (SLURM's warning before the time limit, or preemption) -> save at the next step, stop."""

    def __init__(self):
        self.received: int | None = None
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.received = signum
        # a second signal while we checkpoint and exit must not kill the process half-way
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        log.warning("received %s: saving a checkpoint at the next step, then exiting %d", signal.Signals(signum).name, EXIT_REQUEUE)

    def _any_rank_received(self) -> bool:
        """All ranks must stop at the same step, or the next collective hangs: share the flag."""
        if not _distributed():
            return self.received is not None
        import torch
        import torch.distributed as dist

        device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1 if self.received is not None else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self._any_rank_received():
            self.received = self.received or signal.SIGTERM
            control.should_save = True
            control.should_training_stop = True
        return control


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class TimeBudgetCallback(TrainerCallback):
    """``options.max_minutes``: stop cleanly (evaluate, save, finish the run) once the budget is spent."""

    def __init__(self, minutes: float | None):
        self.seconds = float(minutes) * 60 if minutes else None
        self.started = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds and self.started and time.time() - self.started > self.seconds:
            log.info("time budget of %.1f minutes spent at step %d: evaluating and stopping", self.seconds / 60, state.global_step)
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = True
            control.should_training_stop = True
        return control


def train_until_done_or_signal(trainer, run_dir: Path, resume: bool, stopper: "StopOnSignalCallback") -> float | None:
    """Train (from the newest complete checkpoint with ``resume``); seconds taken, or None when a signal
    stopped the run after a checkpoint (the caller exits EXIT_REQUEUE)."""
    checkpoint = latest_complete_checkpoint(run_dir) if resume else None
    if checkpoint:
        log.info("resuming from %s", checkpoint)
        _restore_cpu_index_locations()
    started = time.time()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if stopper.received is not None:
        log.warning("stopped by signal at step %d; resume with --resume", trainer.state.global_step)
        return None
    return time.time() - started


_CPU_INDEX_LOCATIONS = False  # whether torch.load restores "cpu:N" yet


def _restore_cpu_index_locations() -> None:
    """Let torch.load take ``cpu:0`` for the CPU. Under torchrun on CPUs (gloo) accelerate makes the Trainer's device
    ``cpu:0``, which the Trainer passes as map_location of the optimizer state on resume; torch restores only ``cpu``
    and fails with "don't know how to restore data location ... (tagged with cpu:0)". Saving is unaffected."""
    global _CPU_INDEX_LOCATIONS
    if _CPU_INDEX_LOCATIONS:
        return
    import torch

    def deserialize(storage, location: str):
        return storage if re.fullmatch(r"cpu:\d+", location) else None

    torch.serialization.register_package(99, lambda storage: None, deserialize)
    _CPU_INDEX_LOCATIONS = True


def standard_callbacks(config: ExperimentConfig, stopper: "StopOnSignalCallback") -> list:
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(config.early_stopping_patience), CompleteCheckpointCallback(), LogHistoryCallback(),
            TimeBudgetCallback(config.options.get("max_minutes")), stopper]


class LogHistoryCallback(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: (float(f"{v:.5g}") if isinstance(v, float) else v) for k, v in logs.items()}
            log.info("step %d epoch %.2f %s", state.global_step, state.epoch or 0, json.dumps(shown, ensure_ascii=False))


# --- what a finished run leaves ---------------------------------------------------------------------------------


def data_paths(config: ExperimentConfig) -> dict:
    """The run's data files by name (train, validation, test, ``train:PATH`` / ``file:PATH`` for lists) that exist."""
    train = config.data.train
    paths = {"validation": config.data.validation, "test": config.data.test}
    if isinstance(train, list):
        paths.update({f"train:{p}": p for p in train})
    else:
        paths["train"] = train
    paths.update({f"file:{p}": p for p in config.data.files})
    return {name: str(p) for name, p in paths.items() if p and Path(p).is_file()}


def data_hashes(config: ExperimentConfig) -> dict:
    return {name: sha256_file(p) for name, p in data_paths(config).items()}


def write_json(path: Path, value: dict) -> None:
    """``value`` as JSON, written atomically. A checkpoint manifest (``best/tagsmith.json``, made by
    :func:`manifest`) gets its model card too: see :func:`write_checkpoint_card`."""
    if is_checkpoint_manifest(path, value):
        value = write_checkpoint_card(path.parent, value)
    write_json_atomic(path, value, default=_plain)


def is_checkpoint_manifest(path: Path, value: dict) -> bool:
    return Path(path).name == "tagsmith.json" and isinstance(value, dict) and "tagsmith_version" in value \
        and "task" in value and "data_sha256" in value


def write_checkpoint_card(folder: Path, info: dict) -> dict:
    """The checkpoint's model card (README.md, tagsmith.card) from its manifest ``info``; returns ``info`` with the
    card's record (``card``). A README.md that is not the unedited card of the manifest already there is the
    user's and stays (the generated card goes to README.tagsmith.md). A card that cannot be written is logged,
    never fatal: the checkpoint is what matters."""
    from tagsmith import card

    folder = Path(folder)
    previous = previous_card(folder)
    config = {}
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    info = {k: v for k, v in info.items() if k != "card"}
    try:
        record = card.place_card(folder, card.checkpoint_card(json.loads(json.dumps(info, default=_plain)), config),
                                 previous)
    except (OSError, ValueError, TypeError, KeyError) as error:
        log.warning("could not write the model card in %s: %s", folder, error)
        return info
    return {**info, "card": record}


def _plain(value):
    try:
        return value.item()
    except AttributeError:
        return str(value)


def manifest(config: ExperimentConfig, **fields) -> dict:
    return {
        "tagsmith_version": __version__,
        "task": config.task,
        "run": config.name,
        "max_length": config.max_length,
        "window_overlap": config.window_overlap,
        "script": config.data.script,
        "base_model": config.model.name_or_path or "scratch",
        # where the base model came from and its revision: the hub commit of the cached snapshot, the PyPI
        # version of a package: model, None for local and scratch models
        **base_model_record(config.model.name_or_path),
        "head": config.model.head.type,
        "data_sha256": data_hashes(config),
        "data_files": data_paths(config),
        "git_commit": git_commit(),
        **fields,
    }


def base_model_record(name_or_path: str | None) -> dict:
    from tagsmith.card import base_model_record as record

    return record(name_or_path)


def plot_curves(log_history: list[dict], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h.get("eval_loss"), h.get(f"eval_{metric}")) for h in log_history if "eval_loss" in h]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        left.plot(*zip(*train), label="train loss")
    if evals:
        left.plot([e[0] for e in evals], [e[1] for e in evals], marker="o", label="validation loss")
        right.plot([e[0] for e in evals], [e[2] for e in evals], marker="o", color="tab:green")
    left.set_xlabel("step"), left.set_title("loss"), left.legend()
    right.set_xlabel("step"), right.set_title(f"validation {metric}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
