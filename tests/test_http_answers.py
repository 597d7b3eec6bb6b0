"""The HTTP answers for a fixed sample of requests to every endpoint, recorded: a refactoring that changes what the
server says fails here. Served from the shipped packages (fixed weights), so the record holds on any machine up to
float noise in the confidences (int8 kernels differ between CPUs): numbers compare within 2e-3, everything else
exactly.

Re-record after an intended change of behaviour: ``TAGSMITH_RECORD_ANSWERS=1 pytest tests/test_http_answers.py``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

RECORD = Path(__file__).parent / "golden" / "http_answers.json"
LONG = "天" * 20_001

#: (name, method, path, body): raw bodies are sent as bytes, everything else as JSON
REQUESTS = [
    ("punctuate one text", "POST", "/punctuate", {"texts": "学而时习之不亦说乎有朋自远方来不亦乐乎人不知而不愠不亦君子乎"}),
    ("punctuate two texts, traditional script kept", "POST", "/punctuate",
     {"texts": ["天下大勢分久必合合久必分", "臣本布衣躬耕於南陽苟全性命於亂世不求聞達於諸侯"]}),
    ("segment", "POST", "/segment", {"texts": ["子曰学而时习之不亦说乎有朋自远方来不亦乐乎"]}),
    ("toxicity at the package threshold", "POST", "/toxicity",
     {"texts": ["thank you, that was really helpful", "shut up you stupid idiot"]}),
    ("toxicity at an operating point", "POST", "/toxicity",
     {"texts": ["this referee is blind and useless"], "operating_point": "recall_0.9"}),
    ("toxicity at a threshold", "POST", "/toxicity", {"texts": ["this referee is blind and useless"], "threshold": 0.9}),
    ("fill_mask without a package", "POST", "/fill_mask", {"texts": ["床前明[MASK]光"]}),
    ("empty text", "POST", "/punctuate", {"texts": [""]}),
    ("a number for a text", "POST", "/punctuate", {"texts": [42]}),
    ("missing texts", "POST", "/toxicity", {"text": "hello"}),
    ("text too long", "POST", "/punctuate", {"texts": [LONG]}),
    ("unknown operating point", "POST", "/toxicity", {"texts": ["hi"], "operating_point": "best"}),
    ("invalid JSON", "POST", "/punctuate", b'{"texts": ["a"'),
    ("no such route", "POST", "/translate", {"texts": ["a"]}),
]


def ask(server, method: str, path: str, body) -> dict:
    kwargs = {"content": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    response = httpx.request(method, server.url + path, timeout=60, **kwargs)
    # the models folder is a fresh temporary path each run
    text = response.text.replace(str(server.models), "MODELS")
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text
    return {"status": response.status_code, "answer": answer}


def same(recorded, got, where: str = "") -> list[str]:
    """Differences between a recorded and a fresh answer: numbers within 2e-3, the rest exactly."""
    if isinstance(recorded, bool) or isinstance(got, bool) or not isinstance(recorded, (int, float)):
        if isinstance(recorded, dict) and isinstance(got, dict):
            if set(recorded) != set(got):
                return [f"{where}: keys {sorted(recorded)} != {sorted(got)}"]
            return [d for key in recorded for d in same(recorded[key], got[key], f"{where}.{key}")]
        if isinstance(recorded, list) and isinstance(got, list):
            if len(recorded) != len(got):
                return [f"{where}: {len(recorded)} items != {len(got)}"]
            return [d for i, (a, b) in enumerate(zip(recorded, got)) for d in same(a, b, f"{where}[{i}]")]
        return [] if recorded == got else [f"{where}: {recorded!r} != {got!r}"]
    if not isinstance(got, (int, float)) or not math.isclose(recorded, got, abs_tol=2e-3):
        return [f"{where}: {recorded!r} != {got!r}"]
    return []


def test_answers_are_the_recorded_ones(shipped_server):
    answers = {name: ask(shipped_server, method, path, body) for name, method, path, body in REQUESTS}
    if os.environ.get("TAGSMITH_RECORD_ANSWERS") == "1":
        RECORD.parent.mkdir(exist_ok=True)
        RECORD.write_text(json.dumps(answers, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        pytest.skip(f"recorded {len(answers)} answers in {RECORD}")
    recorded = json.loads(RECORD.read_text(encoding="utf-8"))
    assert sorted(recorded) == sorted(answers), "the sample of requests changed: re-record"
    differences = [d for name in recorded for d in same(recorded[name], answers[name], name)]
    assert not differences, "\n".join(differences[:20])
    # the sample covers every endpoint and both sides of the contract
    statuses = {a["status"] for a in answers.values()}
    assert {200, 400, 404, 413} <= statuses, statuses
