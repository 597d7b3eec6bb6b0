"""tagsmith's SLURM jobs (containers/slurm/) on a real one-node SLURM cluster (containers/local-slurm/up.sh).

The cluster tests are slow and need root (they install and start slurm-wlm + munge). They train the tiny configs
natively (CONTAINER=none) on generated records, so they need no network. The first tests need no cluster: they
check the scripts' syntax and the signal -> checkpoint -> exit 75 path outside SLURM.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import BOOK_CHUNK_CHARS
from tagsmith.convert import punctuated_to_record
from tagsmith.records import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = ROOT / "containers" / "slurm"
LOCAL_SLURM = ROOT / "containers" / "local-slurm"
JOBS = SLURM_DIR / "jobs"
SHELL_SCRIPTS = [*SLURM_DIR.glob("*.sbatch"), SLURM_DIR / "jobs", SLURM_DIR / "common.sh", SLURM_DIR / "config.env",
                 SLURM_DIR / "setup-cluster.sh", *LOCAL_SLURM.glob("*.sh")]

LINES = [
    "天地玄黃，宇宙洪荒。日月盈昃，辰宿列張。寒來暑往，秋收冬藏。閏餘成歲，律呂調陽。",
    "雲騰致雨，露結為霜。金生麗水，玉出崑岡。劍號巨闕，珠稱夜光。果珍李柰，菜重芥薑。",
    "海鹹河淡，鱗潛羽翔。龍師火帝，鳥官人皇。始制文字，乃服衣裳。推位讓國，有虞陶唐。",
]
VALIDATION = "鳴鳳在竹，白駒食場。化被草木，賴及萬方。蓋此身髮，四大五常。恭惟鞠養，豈敢毀傷。"
TEST = "女慕貞絜，男效才良。知過必改，得能莫忘。罔談彼短，靡恃己長。信使可覆，器欲難量。"


# --- no cluster needed --------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script):
    assert script.is_file(), script
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", sorted(SLURM_DIR.glob("*.sbatch")), ids=lambda p: p.name)
def test_sbatch_scripts_requeue_on_signal(script):
    directives = [line.split(None, 1)[1] for line in script.read_text().splitlines() if line.startswith("#SBATCH ")]
    assert any(re.fullmatch(r"--signal=B:USR1@\d+", d) for d in directives), directives
    assert "--requeue" in directives and "--open-mode=append" in directives
    assert any(d.startswith("--output=logs/slurm_") for d in directives)
    assert "run_resumable" in script.read_text()


def test_jobs_help():
    result = subprocess.run([str(JOBS), "help"], capture_output=True, text=True)
    assert result.returncode == 0 and "submit train|multi|sweep|export" in result.stdout


RESUMABLE_CHILD = """
import signal, sys, time
signal.signal(signal.SIGUSR1, lambda *_: (print("child saved a checkpoint", flush=True), sys.exit(75)))
print("child started", flush=True)
time.sleep(60)
"""


def test_run_resumable_forwards_usr1_outside_slurm(tmp_path):
    """The batch shell passes USR1 on to the trainer and, outside SLURM, exits 75 (resume by hand)."""
    child = tmp_path / "child.py"
    child.write_text(RESUMABLE_CHILD)
    script = tmp_path / "job.sh"
    script.write_text(
        f"set -euo pipefail\nsource {SLURM_DIR / 'common.sh'}\n"
        f"run_resumable {tmp_path / 'results.json'} {sys.executable} {child}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    process = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert "running:" in process.stdout.readline()
    assert "child started" in process.stdout.readline()
    process.send_signal(signal.SIGUSR1)  # SIGUSR1 to the batch shell only, as `scancel -b -s USR1` does
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 75, output
    assert "received SIGUSR1, forwarding it" in output and "child saved a checkpoint" in output and "run again to resume" in output


# --- a real SLURM cluster -----------------------------------------------------------------------------------


SUBMITTED: list[str] = []  # job ids, cancelled when the session ends


def cluster_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: containers/local-slurm/up.sh installs and starts slurm-wlm and munge"
    if not (shutil.which("sbatch") and shutil.which("slurmctld")) and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is not available to install it"
    return None


def cluster_is_up() -> bool:
    return shutil.which("scontrol") is not None and subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster():
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)
    was_up = cluster_is_up()
    result = subprocess.run([str(LOCAL_SLURM / "up.sh")], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"containers/local-slurm/up.sh failed:\n{result.stdout}\n{result.stderr}")
    yield
    if SUBMITTED:  # jobs a failed test left behind must not train on after the daemons stop
        subprocess.run(["scancel", *SUBMITTED], capture_output=True)
    if not was_up:
        subprocess.run([str(LOCAL_SLURM / "down.sh")], capture_output=True, timeout=120)


class Workspace:
    """Records, configs, run dirs and logs of one test, and the environment its jobs are submitted with."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.runs = folder / "runs"
        self.logs = folder / "logs"
        self.data = {task: self._records(task) for task in ("segmentation", "punctuation")}

    def _records(self, task: str) -> dict:
        files = {}
        for split, lines in (("train", LINES * 30), ("validation", [VALIDATION]), ("test", [TEST])):
            files[split] = self.folder / "data" / f"{task}-{split}.jsonl"
            files[split].parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(files[split], [punctuated_to_record(line, task) for line in lines])
        return files

    def config(self, task: str, max_steps: int, eval_steps: int) -> Path:
        """The task's tiny config on the generated records, stopping exactly at max_steps."""
        config = yaml.safe_load((ROOT / "training" / "configs" / f"{task}-tiny.yaml").read_text())
        config["data"].update({split: str(path) for split, path in self.data[task].items()})
        config["trainer"].update(max_steps=max_steps, eval_steps=eval_steps, logging_steps=5)
        config["early_stopping_patience"] = 1000  # these tests count steps
        path = self.folder / "configs" / f"{task}-tiny.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        return path

    def env(self, **settings: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        env.update(
            PROJECT_DIR=str(ROOT), RUNS_DIR=str(self.runs), LOG_DIR=str(self.logs),
            TAGSMITH_CACHE=str(self.folder / "cache"), HF_HUB_OFFLINE="1", CONTAINER="none", VENV=sys.prefix,
            GPUS_PER_NODE="0", CPUS_PER_TASK="1", PARTITION="", OVERRIDES="",
            # a limit well above the scripts' --signal lead time, so that SLURM sends no USR1 of its own
            TIME_LIMIT="01:00:00", SIGNAL_LEAD="",
        )
        env.update(settings)
        return env

    def results(self, config: Path) -> dict:
        return json.loads((self.runs / config.stem / "results.json").read_text())

    def job_log(self, job_id: str) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob(f"slurm_{job_id}*.out")))


@pytest.fixture
def workspace(tmp_path):
    return Workspace(tmp_path)


def jobs(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(JOBS), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


# pending reasons no amount of waiting resolves on a one-node cluster
NEVER_STARTS = {"PartitionConfig", "PartitionNodeLimit", "BadConstraints", "ReqNodeNotAvail"}


def run_job(kind: str, workspace: "Workspace", env: dict, *args: str, timeout: float = 240) -> str:
    """Submit and wait for the job (every task of an array) to end; its id once all went well, else a failure."""
    job_id = submit(kind, *args, env=env)

    def states() -> list[str]:
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
        stuck = set(re.findall(r"\bReason=(\S+)", out)) & NEVER_STARTS
        assert not stuck, f"{kind} job {job_id} can never start here (Reason={stuck.pop()})"
        return re.findall(r"\bJobState=(\S+)", out)

    try:  # polling, because sbatch --wait backs off to 10 s between its checks
        found = wait_for(lambda: (s := states()) and not set(s) & {"PENDING", "RUNNING", "COMPLETING",
                                                                   "CONFIGURING", "REQUEUED"} and s,
                         timeout, f"{kind} job {job_id} to end", interval=0.5)
    except AssertionError as error:
        subprocess.run(["scancel", job_id])
        pytest.fail(f"{error}\n{failure_details(workspace, job_id)}")
    assert set(found) == {"COMPLETED"}, failure_details(workspace, job_id)
    return job_id


def submit(*args: str, env: dict) -> str:
    result = jobs("submit", *args, env=env)
    job_id = result.stdout.strip().split(";")[0]
    assert job_id.isdigit(), f"no job id: {result.stdout}\n{result.stderr}"
    SUBMITTED.append(job_id)
    return job_id


def job_info(job_id: str) -> dict:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def failure_details(workspace: Workspace, job_id: str) -> str:
    err = "".join(p.read_text(errors="replace")[-3000:] for p in workspace.logs.glob(f"slurm_{job_id}*.err"))
    info = {k: v for k, v in job_info(job_id).items() if k in ("JobState", "Reason", "ExitCode", "Restarts", "RunTime")}
    return f"job {job_id}: {info}\n--- out\n{workspace.job_log(job_id)}\n--- err (end)\n{err}"


@pytest.mark.slow
def test_train_then_export_natively(slurm_cluster, workspace):
    """sbatch -W of train.sbatch (CONTAINER=none), then export.sbatch through `jobs` with a dependency."""
    config = workspace.config("segmentation", max_steps=20, eval_steps=10)
    env = workspace.env(CONFIG=str(config), OVERRIDES="trainer.learning_rate=3e-3 seed=7", TASK="segmentation",
                        MODELS_DIR=str(workspace.folder / "models"))
    # Plain sbatch from the project root, as docs/slurm.md shows; --gres=none drops the script's GPU line.
    workspace.logs.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["sbatch", "--parsable", "--wait", "--gres=none", "--cpus-per-task=1",
         f"--output={workspace.logs}/slurm_%j.out", f"--error={workspace.logs}/slurm_%j.err",
         "containers/slurm/train.sbatch"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    train_id = result.stdout.strip().split(";")[0]
    SUBMITTED.append(train_id)
    assert result.returncode == 0, failure_details(workspace, train_id) + result.stderr
    export_id = run_job("export", workspace, env, "--after", train_id)

    results = workspace.results(config)
    assert results["global_step"] == 20
    assert results["config"]["trainer"]["learning_rate"] == 3e-3 and results["config"]["seed"] == 7
    assert "done:" in workspace.job_log(train_id)
    package = workspace.folder / "models" / "segmentation"
    assert (package / "tagsmith.json").is_file() and (package / "model.onnx").is_file(), failure_details(workspace, export_id)


@pytest.mark.slow
def test_sweep_array_trains_every_config(slurm_cluster, workspace):
    configs = [workspace.config("segmentation", max_steps=15, eval_steps=15),
               workspace.config("punctuation", max_steps=10, eval_steps=10)]
    env = workspace.env(SWEEP_CONFIGS=" ".join(map(str, configs)))
    array_id = run_job("sweep", workspace, env)
    assert [workspace.results(c)["global_step"] for c in configs] == [15, 10]
    assert [workspace.results(c)["task"] for c in configs] == ["segmentation", "punctuation"]
    assert sorted(p.name for p in workspace.logs.glob(f"slurm_{array_id}_*.out")) == [
        f"slurm_{array_id}_0.out", f"slurm_{array_id}_1.out"]


@pytest.mark.slow
def test_signal_checkpoints_requeues_and_resumes(slurm_cluster, workspace):
    max_steps = 100
    config = workspace.config("segmentation", max_steps=max_steps, eval_steps=50)
    run_dir = workspace.runs / config.stem
    job_id = submit("train", env=workspace.env(CONFIG=str(config)))

    def training_started() -> bool:
        log = run_dir / "train.log"
        # Logged by Trainer.train(), after the trainer installed its signal handlers.
        return log.is_file() and "***** Running training *****" in log.read_text()

    def job_state() -> dict:
        return job_info(job_id)

    try:
        wait_for(training_started, 180, "the trainer to start training", interval=0.1)
        # What SLURM sends before the time limit (--signal=B:USR1@...), without waiting for its ~30 s tick.
        assert jobs("checkpoint", job_id, env=workspace.env()).returncode == 0
        wait_for(lambda: int(job_state().get("Restarts", 0)) >= 1, 120, "the job to requeue itself")
        # A requeued job waits ~2 minutes (Reason=BeginTime) before it may start again: start it now.
        wait_for(lambda: job_state().get("Reason") == "BeginTime" or job_state().get("JobState") != "PENDING",
                 60, "the requeued job to wait for its BeginTime")
        if job_state().get("JobState") == "PENDING":
            assert jobs("resume", job_id, env=workspace.env()).returncode == 0
        info = wait_for(lambda: (i := job_state()).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED") and i,
                        240, "the resumed job to finish")
    except AssertionError as error:
        subprocess.run(["scancel", job_id])
        raise AssertionError(f"{error}\n{failure_details(workspace, job_id)}") from None

    assert info["JobState"] == "COMPLETED", failure_details(workspace, job_id)
    out = workspace.job_log(job_id)
    assert "received SIGUSR1" in out and "command exited with status 75" in out and "requeueing job" in out, out
    assert "restart 1" in out and "done:" in out, out
    train_log = (run_dir / "train.log").read_text()
    stopped = int(re.search(r"stopped by signal at step (\d+)", train_log).group(1))
    assert 0 < stopped < max_steps
    assert re.search(rf"resuming from \S*checkpoint-{stopped}\b", train_log), train_log[-3000:]
    assert workspace.results(config)["global_step"] == max_steps
    state = json.loads((run_dir / "checkpoints" / f"checkpoint-{max_steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == max_steps


@pytest.mark.slow
def test_multi_process_job_with_torchrun(slurm_cluster, workspace):
    """train-multi.sbatch: srun -> torchrun (c10d rendezvous from SLURM variables) -> 2 CPU workers (gloo)."""
    config = workspace.config("segmentation", max_steps=20, eval_steps=10)
    # as many CPUs as the node has (1 on a one-core host: the two workers then share it); asking for more
    # than the node has leaves the job pending with reason PartitionConfig
    node_cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[0])
    env = workspace.env(CONFIG=str(config), NODES="1", NPROC_PER_NODE="2", CPUS_PER_TASK=str(min(2, node_cpus)))
    job_id = run_job("multi", workspace, env, timeout=180)
    out = workspace.job_log(job_id)
    assert "1 node(s) x 2 process(es)" in out, out
    assert workspace.results(config)["global_step"] == 20


@pytest.mark.slow
def test_punctuate_array_with_a_killed_task_rerun_merges_like_one_process(slurm_cluster, workspace, million_book):
    """jobs submit punctuate: 3 array tasks over a 1M-character book; task 1 is killed mid-way, so the merge
    step (afterany) fails naming it; rerunning task 1 alone resumes its output, and the merge then joins the
    shards into exactly what one uninterrupted process wrote."""
    source, reference, package = million_book
    out = workspace.folder / "punctuated"
    env = workspace.env(PUNCTUATE_INPUT=str(source), PUNCTUATE_SHARDS="3", PUNCTUATE_OUT=str(out),
                        PUNCTUATE_PACKAGE=str(package), PUNCTUATE_ARGS=f"--chunk-chars {BOOK_CHUNK_CHARS}",
                        TQDM_MININTERVAL="0.5")
    submitted = jobs("submit", "punctuate", env=env)
    assert submitted.returncode == 0, submitted.stderr
    array_id, merge_id = submitted.stdout.split()
    SUBMITTED.extend([array_id, merge_id])
    record = out / "parts" / "book.txt.part-00001-of-00003.tagsmith.json"

    def task_1_progress() -> int:
        try:
            return json.loads(record.read_text())["done"]["paragraphs"]
        except (FileNotFoundError, json.JSONDecodeError):
            return 0

    wait_for(lambda: task_1_progress() >= 1, 180, "array task 1 to write its first chunk", interval=0.05)
    # SIGKILL to task 1's CLI process: a crash or an out-of-memory kill, no chance to tidy up or to requeue
    # (scancel sends TERM first, which the job takes as preemption: it saves, requeues itself and resumes)
    import psutil

    shard_1 = [p for p in psutil.process_iter(["cmdline"])
               if "--shard" in (p.info["cmdline"] or []) and "1/3" in p.info["cmdline"] and str(out) in p.info["cmdline"]]
    assert len(shard_1) == 1, shard_1
    shard_1[0].kill()
    wait_for(lambda: job_info(merge_id).get("JobState") in ("COMPLETED", "FAILED"), 240, "the first merge to end")
    assert job_info(merge_id)["JobState"] == "FAILED", workspace.job_log(merge_id)
    first_merge = workspace.job_log(merge_id) + "".join(p.read_text() for p in workspace.logs.glob(f"slurm_{merge_id}.err"))
    assert "1 of 3 shards are not done" in first_merge and "shard 1 (paragraphs" in first_merge, first_merge
    stopped_at = task_1_progress()
    assert 0 < stopped_at, "task 1 had written a chunk before it was cancelled"

    rerun = jobs("submit", "punctuate", "--array=1", env=env)
    assert rerun.returncode == 0, rerun.stderr
    rerun_id, merge_id = rerun.stdout.split()
    SUBMITTED.extend([rerun_id, merge_id])
    wait_for(lambda: job_info(merge_id).get("JobState") in ("COMPLETED", "FAILED"), 240, "the second merge to end")
    assert job_info(merge_id)["JobState"] == "COMPLETED", failure_details(workspace, merge_id)
    rerun_log = "".join(p.read_text() for p in workspace.logs.glob(f"slurm_{rerun_id}_1.err"))
    assert "resuming after paragraph" in rerun_log, rerun_log[-2000:]
    assert (out / "book.txt").read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in (out / "shards").glob("*.json")) == [
        "00000-of-00003.json", "00001-of-00003.json", "00002-of-00003.json"]
