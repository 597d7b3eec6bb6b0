"""The model packages a server serves: ``<models>/<task>/`` for each task that has one, loaded and verified once.

A task whose folder is absent is simply not served (its endpoint answers 404); a folder that holds a package
which cannot be served (modified files, wrong task, unreadable model) is reported with the reason (503) while
the other tasks keep working. Nothing here imports torch.

Loading logs one line per task (logger ``serving.packages``): ``serving TASK from PATH (published int8, sha256
verified)``, ``refused PATH: reason``, or ``not serving TASK: ...``; a folder of the models directory that is no
task's is refused too (``tagsmith serve`` shows these on stderr: :func:`log_to_stderr`).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tagsmith.tasks import served_tasks

#: task -> (route, the runtime kind the task needs): the registry's tasks that have a route (tagsmith.tasks)
TASKS = {task.name: (task.route, task.kind) for task in served_tasks()}


log = logging.getLogger(__name__)

#: the packages this project ships (verified int8 models, each with a model card): served for a task whose
#: package the models folder lacks, so a fresh machine answers without training anything
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


def models_dir(env=os.environ) -> Path:
    return Path(env.get("TAGSMITH_MODELS") or "models")


def shipped_dir(env=os.environ) -> Path | None:
    """The shipped packages' folder, or None when TAGSMITH_SHIPPED=0 (serve the models folder alone)."""
    return None if (env.get("TAGSMITH_SHIPPED") or "1").strip() == "0" else SHIPPED_DIR


def package_dirs(root: Path, env=os.environ) -> dict[str, Path]:
    """task -> package folder: ``<root>/<task>`` where it exists (a user's own export wins), else the shipped one."""
    shipped = shipped_dir(env)
    found = {}
    for task in TASKS:
        if (root / task).is_dir():
            found[task] = root / task
        elif shipped is not None and (shipped / task / "tagsmith.json").is_file():
            found[task] = shipped / task
    return found


def runtime_threads(env=os.environ) -> int | None:
    """ONNX Runtime threads per model (TAGSMITH_THREADS); None = ONNX Runtime's default (one per core)."""
    raw = (env.get("TAGSMITH_THREADS") or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"TAGSMITH_THREADS={raw!r}: expected a positive whole number")
    return int(raw)


@dataclass
class Served:
    """One task's package: its runtime when it loaded, or why it did not."""

    task: str
    path: Path
    runtime: object | None = None
    problem: str | None = None

    @property
    def manifest(self) -> dict:
        return self.runtime.manifest if self.runtime is not None else {}


def present_tasks(root: Path) -> list[str]:
    """Tasks with a package (cheap: no model is loaded); segmentation also where only punctuation has one."""
    found = package_dirs(root)
    return [task for task in TASKS if task in found or (task == "segmentation" and "punctuation" in found)]


def not_served_message(task: str, root: Path) -> str:
    """Why ``task``'s endpoint answers 404."""
    return f"no {task} model is served here: {TASKS[task][0]} needs a package in {root / task} (TAGSMITH_MODELS)"


def log_to_stderr(level: int = logging.INFO) -> None:
    """Loading's log lines on stderr, once (the server's logging config sends only warnings of other loggers)."""
    if not any(getattr(handler, "tagsmith_stderr", False) for handler in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.tagsmith_stderr = True
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] [tagsmith] %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def load_all(root: Path, threads: int | None = None) -> dict[str, Served]:
    """Every present package, loaded with its hashes checked; a bad one is kept with its problem. Logs one line
    per task (and per folder of ``root`` that is no task's): served from where, or refused and why.

    Without a segmentation package, ``/segment`` is answered from the punctuation model when that one loaded:
    a sentence ends wherever it puts any mark (serving.runtime.BoundaryRuntime)."""
    from serving.runtime import BoundaryRuntime, PackageError, load_package

    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and folder.name not in TASKS and not folder.name.startswith("."):
                log.warning("refused %s: unknown task %r (a package goes in the folder of its task: %s)", folder,
                            folder.name, ", ".join(TASKS))
    served = {}
    for task, path in package_dirs(root).items():
        entry = Served(task, path)
        try:
            runtime = load_package(entry.path, verify=True, threads=threads)
            expected_kind = TASKS[task][1]
            if runtime.kind != expected_kind or runtime.manifest.get("task") not in (task, "classification"):
                raise PackageError(f"{entry.path} holds a {runtime.manifest.get('task')!r} model "
                                   f"({runtime.kind}); {TASKS[task][0]} needs a {task} model ({expected_kind})")
            entry.runtime = runtime
            published = runtime.manifest.get("published") or runtime.variant
            log.info("serving %s from %s (published %s, sha256 verified: %d files)", task, path, published,
                     len(runtime.manifest.get("files", {})))
        except PackageError as error:
            entry.problem = str(error)
            log.warning("refused %s: %s", path, entry.problem.removeprefix(f"{path}: "))
        served[task] = entry
    punctuation = served.get("punctuation")
    if "segmentation" not in served and punctuation is not None and punctuation.runtime is not None:
        served["segmentation"] = Served("segmentation", punctuation.path, BoundaryRuntime(punctuation.runtime))
        log.info("serving segmentation from %s (the punctuation model: any mark ends a sentence)", punctuation.path)
    for task in TASKS:
        if task not in served:
            log.info("not serving %s: no package in %s", task, root / task)
    return {task: served[task] for task in TASKS if task in served}


def model_info(entry: Served) -> dict:
    """What /info says about one task: the model, its labels, what it was trained on and how well it does."""
    if entry.runtime is None:
        return {"task": entry.task, "route": TASKS[entry.task][0], "served": False, "problem": entry.problem}
    manifest, runtime = entry.manifest, entry.runtime
    source = manifest.get("source", {})
    info = {
        "task": entry.task,
        "route": TASKS[entry.task][0],
        "served": True,
        "package": str(entry.path),
        "kind": runtime.kind,
        "labels": list(manifest.get("labels", [])),
        "model": runtime.variant,
        "max_length": manifest.get("max_length"),
        "script": manifest.get("script", "keep"),
        "training": {
            "run": source.get("run"),
            "base_model": source.get("base_model"),
            "architecture": source.get("architecture"),
            "data_sha256": source.get("data_sha256", {}),
            "git_commit": source.get("git_commit"),
        },
        "metrics": source.get("metrics", {}),
        "parity": {name: {k: v for k, v in value.items() if k in ("metric", "agreement", "max_abs_logit_diff")}
                   for name, value in manifest.get("parity", {}).items() if isinstance(value, dict)},
        "data_grade": manifest.get("data_grade") or source.get("data_grade") or "unknown",
        "package_sha256": manifest.get("files", {}),
    }
    if manifest.get("derived_from"):
        info["derived_from"] = manifest["derived_from"]
    if runtime.kind == "tagging":
        info["decision_bias"] = manifest.get("decision_bias", 0.0)
        info["window_overlap"] = manifest.get("window_overlap", 0)
    elif runtime.kind == "classification":
        info.update(runtime.settings())
    else:
        info["mask_token"] = runtime.mask_token
    return info
