"""The task registry (tagsmith.tasks) is what every stage reads: each registered task has what each stage needs of
it, checked from the registry itself (a new entry is checked without touching this file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagsmith.tasks import TASKS, served_tasks

ROOT = Path(__file__).resolve().parent.parent
SERVED = served_tasks()
IDS = [task.name for task in SERVED]


def _env(models: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "BENTOML_DO_NOT_TRACK": "True", "GRADIO_ANALYTICS_ENABLED": "False", "TAGSMITH_SHIPPED": "0",
            "TAGSMITH_MODELS": str(models)}


@pytest.fixture(scope="module")
def service_routes(server) -> list[str]:
    """The routes the running service publishes in its OpenAPI document (the session's server)."""
    import httpx

    return sorted(httpx.get(server.url + "/docs.json", timeout=30).json()["paths"])


def test_every_task_is_complete():
    from serving.runtime import RUNTIMES, package_kind

    assert SERVED, "no task has a route"
    for name, task in TASKS.items():
        assert task.name == name and task.kind in RUNTIMES and package_kind({"task": name}) == task.kind
        assert isinstance(task.main_metric, str) and task.main_metric
        assert isinstance(task.labels, tuple)
        assert callable(getattr(RUNTIMES[task.kind], task.call, None)), f"{name}: runtime has no {task.call}()"
        if task.kind == "tagging":
            assert task.labels and callable(task.render), f"{name}: a tagger needs labels and a rendering"


@pytest.mark.parametrize("name", IDS)
def test_a_served_task_has_an_endpoint(name, service_routes):
    from serving.packages import TASKS as SERVED_TASKS

    task = TASKS[name]
    assert task.route in service_routes, f"{name}: {task.route} is not an endpoint of serving/service.py"
    assert SERVED_TASKS[name] == (task.route, task.kind)


@pytest.mark.parametrize("name", IDS)
def test_a_served_task_has_an_answer_shape_and_a_demo_tab(name):
    from serving import answers, demo_page

    task = TASKS[name]
    assert task.answer in answers.SHAPES, f"{name}: no answer shape {task.answer!r} in serving.answers.SHAPES"
    assert task.answer in demo_page.TABS, f"{name}: no demo tab for answers of shape {task.answer!r}"
    assert task.title and task.examples and demo_page.TITLES[name] == task.title


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_task_has_a_bench_call_a_reference_and_a_parity_evaluation(name):
    from export.benchmark import CALL
    from export.parity import EVALS
    from export.reference import REFERENCES

    task = TASKS[name]
    assert CALL[task.kind] == task.call
    assert callable(getattr(REFERENCES[task.kind], task.call, None)), f"{name}: the reference has no {task.call}()"
    assert task.kind in EVALS


def test_a_new_entry_reaches_serving_and_the_demo_page(tmp_path):
    code = ("import json\nfrom tagsmith.tasks import ClassificationTask, register\n"
            "register(ClassificationTask('sentiment', labels=('negative', 'positive'), positive_label='positive', "
            "route='/sentiment', answer='toxicity', title='Sentiment', examples=('what a lovely day',)))\n"
            "from serving import demo_page, packages, runtime\n"
            "print(json.dumps([packages.TASKS['sentiment'], runtime.package_kind({'task': 'sentiment'}), "
            "demo_page.TITLES['sentiment'], demo_page.EXAMPLES['sentiment']]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [["/sentiment", "classification"], "classification",
                                                                 "Sentiment", ["what a lovely day"]]
