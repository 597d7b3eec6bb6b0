"""Shared by the serving tests: tiny model packages for all four tasks and one real ``bentoml serve`` process.

Both are built once per test session (``serving_models``, ``server`` fixtures in the test modules call the
helpers here). The models are trained on generated data through the real CLI (``tagsmith train``) and packaged
with ``tagsmith export``, exactly as a user would, so the server is tested on what the pipeline produces.
``TAGSMITH_TEST_MODELS=DIR`` reuses packages built earlier (a development shortcut; CI builds them fresh).
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

import pytest

from tagsmith.convert import punctuated_to_record
from tagsmith.records import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("segmentation", "punctuation", "toxicity", "mlm")
# the service's routes, by task
ROUTES = {"segmentation": "/segment", "punctuation": "/punctuate", "toxicity": "/toxicity", "mlm": "/fill_mask"}

# Verse with a fixed rhythm (千字文, traditional characters): a tiny model learns a mark after every 4th character.
VERSE = [
    "天地玄黃，宇宙洪荒。日月盈昃，辰宿列張。寒來暑往，秋收冬藏。閏餘成歲，律呂調陽。",
    "雲騰致雨，露結為霜。金生麗水，玉出崑岡。劍號巨闕，珠稱夜光。果珍李柰，菜重芥薑。",
    "海鹹河淡，鱗潛羽翔。龍師火帝，鳥官人皇。始制文字，乃服衣裳。推位讓國，有虞陶唐。",
    "弔民伐罪，周發殷湯。坐朝問道，垂拱平章。愛育黎首，臣伏戎羌。遐邇一體，率賓歸王。",
]
HELD_OUT = ["鳴鳳在竹，白駒食場。化被草木，賴及萬方。蓋此身髮，四大五常。恭惟鞠養，豈敢毀傷。",
            "女慕貞絜，男效才良。知過必改，得能莫忘。罔談彼短，靡恃己長。信使可覆，器欲難量。"]
RUDE = ["idiot", "stupid", "moron", "loser", "trash", "pathetic", "disgusting", "dumb"]
NICE = ["lovely", "great", "kind", "thanks", "wonderful", "helpful", "friendly", "nice"]
FILLER = ["you", "are", "the", "game", "today", "really", "this", "team", "was", "so", "people", "post"]


def quiet_env(**extra: str) -> dict:
    """Environment for every subprocess the serving tests start: offline, one thread, no telemetry, and only the
    packages of the test's own models folder (TAGSMITH_SHIPPED=0; tests of the shipped packages set it to 1)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "BENTOML_DO_NOT_TRACK": "True", "GRADIO_ANALYTICS_ENABLED": "False", "TAGSMITH_SHIPPED": "0", **extra}


def tagsmith(*args, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tagsmith.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=quiet_env())
    if done.returncode != 0:
        command = " ".join(map(str, args[:2]))
        raise AssertionError(f"tagsmith {command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


# --- tiny model packages --------------------------------------------------------------------------------------


def _tagging_data(folder: Path, task: str) -> dict:
    files = {}
    for split, lines in (("train", VERSE * 40), ("validation", HELD_OUT[:1]), ("test", HELD_OUT[1:])):
        files[split] = folder / f"{task}-{split}.jsonl"
        write_jsonl(files[split], [punctuated_to_record(line, task) for line in lines])
    return files


def _toxicity_data(folder: Path) -> dict:
    rng = random.Random(0)
    seen, files = set(), {}
    for split, n in (("train", 400), ("validation", 80), ("test", 80)):
        records = []
        while len(records) < n:
            toxic = rng.random() < 0.3
            words = rng.sample(FILLER, 4) + [rng.choice(RUDE if toxic else NICE)]
            rng.shuffle(words)
            text = " ".join(words)
            if text not in seen:
                seen.add(text)
                records.append({"text": text, "label": "toxic" if toxic else "non-toxic"})
        files[split] = folder / f"toxicity-{split}.jsonl"
        write_jsonl(files[split], records)
    return files


def _mlm_data(folder: Path) -> dict:
    lines = [line for line in VERSE]
    corpus, held = folder / "mlm-corpus.txt", folder / "mlm-held.txt"
    corpus.write_text("\n".join(lines * 30) + "\n", encoding="utf-8")
    held.write_text("\n".join(HELD_OUT) + "\n", encoding="utf-8")
    return {"files": corpus, "validation": held}


def _train(task: str, data: dict, runs: Path, steps: int) -> Path:
    config = {"segmentation": "segmentation-tiny", "punctuation": "punctuation-tiny", "toxicity": "toxicity-tiny",
              "mlm": "mlm-tiny"}[task]
    sets = [f"output_dir={runs}", f"name={task}", f"trainer.max_steps={steps}", f"trainer.eval_steps={steps // 2}",
            "trainer.learning_rate=3e-3"]
    if task == "mlm":
        sets += [f"data.files=[{data['files']}]", f"data.validation={data['validation']}", "max_length=32",
                 "model.scratch.min_char_count=1"]
    else:
        sets += [f"data.{split}={data[split]}" for split in ("train", "validation", "test")]
        sets += ["max_length=16"] if task == "toxicity" else ["max_length=64", "window_overlap=16"]
    if task == "segmentation":
        sets.append("data.script=traditional")  # punctuation reads simplified: the two scripts are both covered
    if task == "toxicity":
        sets.append("options.data_grade=demo")  # generated sentences: the model info must say so
    tagsmith("train", "--config", ROOT / f"training/configs/{config}.yaml", *[a for s in sets for a in ("--set", s)])
    return runs / task / "best"


def build_model_packages(root: Path) -> Path:
    """``root/models/<task>`` for the four tasks: trained in a few seconds each, exported with the CLI."""
    models = root / "models"
    steps = {"segmentation": 80, "punctuation": 100, "toxicity": 80, "mlm": 60}
    for task in TASKS:
        if (models / task / "tagsmith.json").is_file():
            continue
        data = root / "data"
        data.mkdir(parents=True, exist_ok=True)
        if task in ("segmentation", "punctuation"):
            files = _tagging_data(data, task)
        elif task == "toxicity":
            files = _toxicity_data(data)
        else:
            files = _mlm_data(data)
        checkpoint = _train(task, files, root / "runs", steps[task])
        export_args = ["--data", files["validation"]] if task != "mlm" else []
        tagsmith("export", checkpoint, "--out", models / task, *export_args)
    return models


def model_packages(tmp_path_factory) -> Path:
    reuse = os.environ.get("TAGSMITH_TEST_MODELS")
    if reuse and all((Path(reuse) / task / "tagsmith.json").is_file() for task in TASKS):
        return Path(reuse)
    return build_model_packages(tmp_path_factory.mktemp("serving"))


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


# --- session fixtures: import them into a test module by name (`from serving_fixtures import server`) -------

_SESSION: dict = {}  # one model build and one server per test session, whichever module asks first


@pytest.fixture(scope="session")
def serving_models(tmp_path_factory) -> Path:
    if "models" not in _SESSION:
        _SESSION["models"] = model_packages(tmp_path_factory)
    return _SESSION["models"]


@pytest.fixture(scope="session")
def server(serving_models, tmp_path_factory):
    """The real server (``tagsmith serve``) on a free loopback port, with the four tiny packages."""
    if "server" not in _SESSION:
        log = tmp_path_factory.mktemp("server") / "server.log"
        _SESSION["server"] = start_server(serving_models, log, TAGSMITH_THREADS="1")
    yield _SESSION["server"]
    _SESSION["server"].stop()


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


@pytest.fixture(scope="session")
def million_book(serving_models, tmp_path_factory):
    """A >= 1M-character book and its uninterrupted punctuation by the tiny package (one thread): the reference
    for the bulk CLI tests and the SLURM array test."""
    if "million_book" not in _SESSION:
        folder = tmp_path_factory.mktemp("book")
        source = book(folder / "book.txt", 1_000_000)
        out = folder / "book.punctuated.txt"
        package = serving_models / "punctuation"
        done = subprocess.run([sys.executable, "-m", "tagsmith.cli", "punctuate", str(source), "-o", str(out), "--package",
                               str(package), "--chunk-chars", str(BOOK_CHUNK_CHARS), "--quiet"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, env=quiet_env(TAGSMITH_THREADS="1"))
        assert done.returncode == 0, done.stderr[-3000:]
        _SESSION["million_book"] = (source, out, package)
    return _SESSION["million_book"]


def manifest(models: Path, task: str) -> dict:
    return json.loads((models / task / "tagsmith.json").read_text(encoding="utf-8"))
