"""Helpers the tests share (plain functions and classes, imported by name); the fixtures that use them and the
sample texts are in conftest.py.

``TinyModels``: the tiny model of each task (segmentation with the CNN head, punctuation with the linear head,
toxicity, mlm), trained on generated data through the real CLI (``tagsmith train``) and packaged with ``tagsmith
export``, exactly as a user would, each on first use and once per test session (conftest's ``tiny_models``).
``TAGSMITH_TEST_MODELS=DIR`` reuses packages built earlier (a development shortcut; CI builds them fresh): DIR is a
``models`` folder; the runs beside it (``DIR/../runs``) are reused too when a test needs a task's run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import FILLER, HELD_OUT, NICE, ROOT, RUDE, VERSE, WORDS
from tagsmith.convert import punctuated_to_record
from tagsmith.records import write_jsonl

from tagsmith.tasks import served_tasks

#: the served tasks, from the registry: each gets a tiny model, trained, exported and served by the tests (a served
#: task without tiny data, steps and a ``training/configs/<task>-tiny.yaml`` fails the session's server fixture)
TASKS = tuple(task.name for task in served_tasks())
# the service's routes, by task
ROUTES = {task.name: task.route for task in served_tasks()}


def quiet_env(**extra: str) -> dict:
    """Environment for every subprocess the tests start: offline, one thread, no telemetry, and only the
    packages of the test's own models folder (TAGSMITH_SHIPPED=0; tests of the shipped packages set it to 1)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false", "BENTOML_DO_NOT_TRACK": "True", "GRADIO_ANALYTICS_ENABLED": "False",
            "TAGSMITH_SHIPPED": "0", **extra}


def tagsmith(*args, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """``tagsmith ARGS`` in a subprocess (quiet_env); an AssertionError with its output when it fails and check."""
    done = subprocess.run([sys.executable, "-m", "tagsmith.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=quiet_env())
    if check and done.returncode != 0:
        command = " ".join(map(str, args[:2]))
        raise AssertionError(f"tagsmith {command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


# --- the tiny model of each task ------------------------------------------------------------------------------


def tagging_data(folder: Path, task: str, copies: int = 40) -> dict:
    """train (VERSE x copies), validation (HELD_OUT[0]), test (HELD_OUT[1]) records of the task; ``parity``: more
    characters than the one validation line (VERSE + HELD_OUT), so that export parity is measured finely."""
    files = {}
    for split, lines in (("train", VERSE * copies), ("validation", HELD_OUT[:1]), ("test", HELD_OUT[1:]),
                         ("parity", VERSE + HELD_OUT)):
        files[split] = folder / f"{task}-{split}.jsonl"
        write_jsonl(files[split], [punctuated_to_record(line, task) for line in lines])
    return files


def sentence(rng: random.Random, words: list[str]) -> str:
    picked = rng.sample(FILLER, 4) + [rng.choice(words)]
    rng.shuffle(picked)
    return " ".join(picked)


def toxicity_data(folder: Path) -> dict:
    """400 / 80 / 80 generated sentences, 30% toxic (imbalanced, as real data is): one word decides the label."""
    rng = random.Random(0)
    seen, files = set(), {}
    for split, n in (("train", 400), ("validation", 80), ("test", 80)):
        records = []
        while len(records) < n:
            toxic = rng.random() < 0.3
            text = sentence(rng, RUDE if toxic else NICE)
            if text not in seen:
                seen.add(text)
                records.append({"text": text, "label": "toxic" if toxic else "non-toxic"})
        files[split] = folder / f"toxicity-{split}.jsonl"
        write_jsonl(files[split], records)
    return files


def mlm_data(folder: Path) -> dict:
    corpus, held = folder / "mlm-corpus.txt", folder / "mlm-held.txt"
    corpus.write_text("\n".join(VERSE * 30) + "\n", encoding="utf-8")
    held.write_text("\n".join(HELD_OUT) + "\n", encoding="utf-8")
    return {"files": corpus, "validation": held}


def task_data(folder: Path, task: str) -> dict:
    assert task in STEPS and (ROOT / f"training/configs/{task}-tiny.yaml").is_file(), (
        f"no tiny model for the registry's task {task!r}: add its data here, its STEPS and "
        f"training/configs/{task}-tiny.yaml")
    folder.mkdir(parents=True, exist_ok=True)
    if task in ("segmentation", "punctuation"):
        return tagging_data(folder, task)
    return toxicity_data(folder) if task == "toxicity" else mlm_data(folder)


#: training steps of each task's tiny model
STEPS = {"segmentation": 80, "punctuation": 100, "toxicity": 80, "mlm": 60}
#: the head of each tagging model: both heads are trained end to end and served
HEADS = {"segmentation": "cnn", "punctuation": "linear"}


def train_tiny(task: str, data: dict, runs: Path) -> Path:
    """``tagsmith train`` of the task's tiny config on ``data``; the run dir (``runs/<task>``)."""
    steps = STEPS[task]
    sets = [f"output_dir={runs}", f"name={task}", f"trainer.max_steps={steps}", f"trainer.eval_steps={steps // 2}",
            "trainer.learning_rate=3e-3"]
    if task == "mlm":
        sets += [f"data.files=[{data['files']}]", f"data.validation={data['validation']}", "max_length=32",
                 "model.scratch.min_char_count=1"]
    else:
        sets += [f"data.{split}={data[split]}" for split in ("train", "validation", "test")]
        sets += ["max_length=16"] if task == "toxicity" else ["max_length=64", "window_overlap=16",
                                                              f"model.head.type={HEADS[task]}"]
    if task == "segmentation":
        sets.append("data.script=traditional")  # punctuation reads simplified: the two scripts are both covered
    if task == "toxicity":
        sets.append("options.data_grade=demo")  # generated sentences: the model info must say so
    tagsmith("train", "--config", ROOT / f"training/configs/{task}-tiny.yaml", *[a for s in sets for a in ("--set", s)])
    return runs / task


class TinyModels:
    """``root/{data,runs,models,logs}``: each task's tiny model trained and exported when first asked for.

    ``reuse``: a ``models`` folder built earlier (TAGSMITH_TEST_MODELS); its packages are used as they are, and its
    runs (``reuse/../runs``) when a test needs a run and they are there; whatever is missing is built under root."""

    def __init__(self, root: Path, reuse: Path | None = None):
        self.root, self.reuse = root, reuse

    def _complete(self, base: Path, task: str, with_run: bool) -> bool:
        needed = [base / "models" / task / "tagsmith.json"]
        if with_run:
            needed += [base / "runs" / task / "best" / "tagsmith.json", base / "logs" / f"{task}-export.log",
                       *self._data_files(base, task).values()]
        return all(path.is_file() for path in needed)

    def _unmoved(self, base: Path, task: str) -> bool:
        """A complete build of the task whose package still names its run where it is (the manifests record
        absolute paths, which the card and export tests compare)."""
        if not self._complete(base, task, with_run=True):
            return False
        source = manifest(base / "models", task).get("source", {}).get("checkpoint")
        return source == str((base / "runs" / task / "best").resolve())

    @staticmethod
    def _data_files(base: Path, task: str) -> dict:
        folder = base / "data"
        if task in ("segmentation", "punctuation"):
            return {split: folder / f"{task}-{split}.jsonl" for split in ("train", "validation", "test", "parity")}
        if task == "toxicity":
            return {split: folder / f"toxicity-{split}.jsonl" for split in ("train", "validation", "test")}
        return {"files": folder / "mlm-corpus.txt", "validation": folder / "mlm-held.txt"}

    def base(self, task: str, with_run: bool = False) -> Path:
        """The folder with the task's package and run: the reused build's (with_run), or root, built there."""
        if with_run and self.reuse is not None and self.reuse.name == "models" and self._unmoved(self.reuse.parent, task):
            return self.reuse.parent
        if not self._complete(self.root, task, with_run=True):
            data = task_data(self.root / "data", task)
            run_dir = train_tiny(task, data, self.root / "runs")
            # parity on validation; punctuation's (test_export.py checks it) on more characters than one line
            parity = [] if task == "mlm" else ["--data", data["parity" if task == "punctuation" else "validation"]]
            done = tagsmith("export", run_dir / "best", "--out", self.root / "models" / task, *parity)
            (self.root / "logs").mkdir(exist_ok=True)
            (self.root / "logs" / f"{task}-export.log").write_text(done.stderr, encoding="utf-8")
        return self.root

    def models(self) -> Path:
        """A models folder with all four packages (the reused one only when it has all four)."""
        if self.reuse is not None and all((self.reuse / task / "tagsmith.json").is_file() for task in TASKS):
            return self.reuse
        for task in TASKS:
            self.base(task)
        return self.root / "models"

    def run(self, task: str) -> dict:
        """The task's run: ``run_dir`` (``best/`` the checkpoint), ``package`` exported from it, ``data`` files,
        ``export_log`` (the export's stderr)."""
        base = self.base(task, with_run=True)
        return {"run_dir": base / "runs" / task, "checkpoint": base / "runs" / task / "best",
                "package": base / "models" / task, "data": self._data_files(base, task),
                "export_log": (base / "logs" / f"{task}-export.log").read_text(encoding="utf-8")}


def manifest(models: Path, task: str) -> dict:
    return json.loads((models / task / "tagsmith.json").read_text(encoding="utf-8"))


def manifest_of(package: Path) -> dict:
    return json.loads((package / "tagsmith.json").read_text(encoding="utf-8"))


# --- small untrained models of each kind (export, runtime, card and optimum tests) ---------------------------


_SMALL: dict = {}  # the small packages exported so far (once per session: conftest's small_root is the one root)


def small_checkpoint(root: Path, kind: str, head: str = "linear") -> Path:
    """An untrained BERT of the kind, built from a small config, saved as a run's best/ would be."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertTokenizerFast

    folder = root / f"{kind}-{head}"
    if (folder / "tagsmith.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if kind == "tagging":
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted({c for line in VERSE + HELD_OUT for c in line})
        tokenizer = BertTokenizerFast(vocab_file=_vocab(folder, vocab), do_lower_case=False, tokenize_chinese_chars=True)
    else:
        tokenizer = BertTokenizerFast(vocab_file=_vocab(folder, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS),
                                      do_lower_case=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    info = {"task": {"tagging": "segmentation", "classification": "toxicity", "mlm": "mlm"}[kind], "max_length": 32,
            "window_overlap": 8, "script": "keep", "git_commit": "0" * 40, "run": f"small-{kind}"}
    if kind == "tagging":
        from tagsmith.config import HeadConfig
        from training.model import build_tagging_model

        model = build_tagging_model(list("BMES"), HeadConfig(type=head, cnn_filters=16), config)
        info.update(labels=list("BMES"), bias_labels=["E", "S"], decision_bias=0.5, head=head)
    elif kind == "classification":
        labels = ["non-toxic", "toxic"]
        config.update({"num_labels": 2, "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}})
        model = BertForSequenceClassification(config)
        info.update(labels=labels, threshold=0.4, positive_label="toxic")
    else:
        model = BertForMaskedLM(config)
        info.update(labels=[])
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "tagsmith.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


def _vocab(folder: Path, tokens: list[str]) -> str:
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


def small_data(root: Path, kind: str) -> Path:
    import random

    rng = random.Random(0)
    path = root / f"{kind}-data.jsonl"
    if kind == "tagging":
        from tagsmith.convert import punctuated_to_record as record

        records = [record(line, "segmentation") for line in VERSE + HELD_OUT]
        records.append({"text": ("".join(VERSE) * 2).replace("，", "").replace("。", "")[:150], "labels": ["M"] * 150})
    else:
        records = []
        for i in range(24):
            words = rng.sample(WORDS, rng.randint(3, 9))
            records.append({"text": " ".join(words), "label": "toxic" if i % 3 == 0 else "non-toxic"})
    write_jsonl(path, records)
    return path


def small_package(root: Path, kind: str, head: str = "linear") -> Path:
    """Export (in-process) a small untrained model of the kind; cached for the session."""
    key = f"{kind}-{head}"
    if key not in _SMALL:
        from export.exporter import ExportOptions, export_package

        checkpoint = small_checkpoint(root / "checkpoints", kind, head)
        out = root / "models" / key
        export_package(checkpoint, ExportOptions(out=out, data=small_data(root, kind)), say=lambda line: None)
        _SMALL[key] = out
    return _SMALL[key]



# --- the server -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``bentoml serve serving.service:TagsmithService`` on a free loopback port, as ``tagsmith serve`` starts it."""

    def __init__(self, models: Path, log: Path, command: str = "serve", **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = open(log, "wb")
        command = [sys.executable, "-m", "tagsmith.cli", command, "--models", str(models), "--host", "127.0.0.1",
                   "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self._log_file, stderr=subprocess.STDOUT,
                                        env=quiet_env(**env), start_new_session=True)

    def wait_ready(self, timeout: float = 180) -> "Server":
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log_text()[-4000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        self._log_file.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")

    def pids(self) -> list[int]:
        """The server's process tree (the CLI, bentoml's arbiter and its workers)."""
        import psutil

        try:
            parent = psutil.Process(self.process.pid)
            return [parent.pid] + [child.pid for child in parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        import psutil

        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        if self._log_file.closed:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the session we started: the server and its workers
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log_file.close()


def start_server(models: Path, log: Path, command: str = "serve", **env: str) -> Server:
    return Server(models, log, command, **env).wait_ready()


# --- books for tagsmith punctuate / segment ---------------------------------------------------------------------


def book(path: Path, characters: int, seed: int = 0) -> Path:
    """A made-up book of the tiny models' characters: paragraphs of 1 to 600 characters with marks, quotes,
    spaces, Latin letters and empty lines, at least ``characters`` characters in all."""
    from serving.bulk import is_content

    chars = sorted({c for line in VERSE for c in line if is_content(c)})
    rng, lines, total = random.Random(seed), [], 0
    while total < characters:
        if rng.random() < 0.03:
            lines.append("")
            continue
        parts = []
        for _ in range(rng.randint(1, 600)):
            parts.append(rng.choice(chars))
            roll = rng.random()
            if roll < 0.15:
                parts.append(rng.choice("，。：、；？！,."))
            elif roll < 0.17:
                parts.append(rng.choice(["「", "」", " ", "《", "》", "AB", "3"]))
        lines.append("".join(parts))
        total += len(lines[-1])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def without_marks(text: str) -> str:
    """The text without whitespace and punctuation marks: what punctuating must leave unchanged."""
    from tagsmith import marks

    return "".join(c for c in text if not (marks.is_space(c) or marks.normalise_mark(c)))


#: the chunk size every test of a million-character book uses (a resume and the shards need the one of the run)
BOOK_CHUNK_CHARS = 20000


