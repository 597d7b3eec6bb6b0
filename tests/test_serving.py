"""The HTTP API: every endpoint of the real server (``tagsmith serve`` -> ``bentoml serve``) over HTTP with tiny
trained packages, both scripts, a 20,000-character text, model info, health, bad input, missing models, the
bento build; plus the fast pieces (limits, answer shapes, no torch) without a server."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import HELD_OUT, ROOT, VERSE
from helpers import ROUTES, quiet_env, start_server

MARKS = "，。：、；？！"
VERSE_PLAIN = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏"  # traditional, as the training data
VERSE_SIMPLIFIED = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏"


def post(server, route: str, body, **kwargs) -> httpx.Response:
    return httpx.post(server.url + route, json=body, timeout=120, **kwargs)


def strip_marks(text: str) -> str:
    return "".join(c for c in text if c not in MARKS)


# --- without a server ---------------------------------------------------------------------------------------


def test_serving_stack_never_imports_torch(tmp_path):
    code = ("import os, sys, json\nimport serving.service\n"
            "print(json.dumps([sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules),"
            " os.environ.get('OTEL_SDK_DISABLED')]))")
    env = {k: v for k, v in quiet_env(TAGSMITH_MODELS=str(tmp_path)).items() if k != "OTEL_SDK_DISABLED"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    heavy, tracing_sdk_disabled = json.loads(done.stdout.strip().splitlines()[-1])
    assert heavy == [] and tracing_sdk_disabled == "true"


def test_bentoml_request_timers_are_cancelled():
    """BentoML's timeout middleware keeps every request alive for `timeout` s unless its timer is cancelled."""
    from serving import bentoml_fixes

    bentoml_fixes.cancel_request_timers()
    from bentoml._internal.server.http import traffic

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def one_request():
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b""}

        await traffic.TimeoutMiddleware(app, timeout=300)({"type": "http"}, receive, send)
        pending = [timer for timer in asyncio.get_running_loop()._scheduled if not timer.cancelled()]
        return sent, pending

    sent, pending = asyncio.run(one_request())
    assert sent[0]["status"] == 200 and pending == []


def test_limits_come_from_the_environment():
    from serving.limits import Limits

    assert Limits.from_env({}).max_chars == 20_000
    limits = Limits.from_env({"TAGSMITH_MAX_CHARS": "50", "TAGSMITH_MAX_TEXTS": "3"})
    assert (limits.max_chars, limits.max_texts) == (50, 3)
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError, match="TAGSMITH_MAX_TEXTS"):
            Limits.from_env({"TAGSMITH_MAX_TEXTS": bad})


@pytest.mark.parametrize("texts,status,message", [
    ("", 400, "empty text"),
    (["ok", "   "], 400, r"texts\[1\]: empty text"),
    ([], 400, "empty list"),
    (["a"] * 4, 413, "too many texts: 4"),
    ("x" * 11, 413, "text too long: 11 characters, at most 10"),
    (["x" * 10] * 3, 413, "30 characters in all texts together, at most 25"),
    ({"a": 1}, 400, "must be a string or a list of strings, not an object"),
    (["ok", 7], 400, r"texts\[1\]: must be a string, not a number"),
    ("a\ud800b", 400, "unpaired UTF-16 surrogate"),
])
def test_bad_texts_are_named(texts, status, message):
    from serving.limits import InputError, Limits, check_texts

    limits = Limits(max_chars=10, max_texts=3, max_total_chars=25)
    with pytest.raises(InputError, match=message) as caught:
        check_texts(texts, limits)
    assert caught.value.status == status and caught.value.as_json()["detail"]
    assert check_texts("天地", limits) == ["天地"] and check_texts(["a", "b"], limits) == ["a", "b"]


def test_answers_keep_offsets_into_the_callers_text():
    from serving import answers
    from tagsmith.tasks import render_punctuation, render_segmentation

    text = "天地玄黃宇宙洪荒"
    raw = {"text": text, "labels": ["O", "O", "O", "，", "O", "O", "O", "。"], "confidence": [0.9] * 8}
    raw["output"] = render_punctuation(text, raw["labels"])  # the runtime's rendering is the answer's text
    result = answers.punctuated(raw)
    assert result["punctuated"] == "天地玄黃，宇宙洪荒。"
    assert [(m["mark"], m["position"], m["output_position"]) for m in result["marks"]] == [("，", 4, 4), ("。", 8, 9)]
    for mark in result["marks"]:
        assert result["punctuated"][mark["output_position"]] == mark["mark"]
    segmented = answers.segmented({"text": text, "labels": list("BMMEBMME"), "confidence": [0.9] * 8,
                                   "output": render_segmentation(text, list("BMMEBMME"))})
    assert segmented["segmented"] == "天地玄黃 | 宇宙洪荒"
    assert [(s["text"], s["start"], s["end"]) for s in segmented["sentences"]] == [("天地玄黃", 0, 4), ("宇宙洪荒", 4, 8)]
    answers.PunctuateResponse(results=[result])  # the documented response models accept what is sent
    answers.SegmentResponse(results=[segmented])


def test_bentofile_installs_the_serve_extra_without_torch():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    import yaml

    bentofile = yaml.safe_load((ROOT / "serving/bentofile.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["serve"]
    assert sorted(bentofile["python"]["packages"]) == sorted(expected)
    assert bentofile["python"]["lock_packages"] is False
    assert not any(name.startswith(("torch", "transformers")) for name in bentofile["python"]["packages"])
    assert bentofile["service"] == "serving.service:TagsmithService"


def test_serve_refuses_a_missing_models_directory(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tagsmith.cli", "serve", "--models", str(tmp_path / "absent")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=quiet_env())
    assert done.returncode == 2 and "no such models directory" in done.stderr


@pytest.mark.slow
def test_bentoml_build_works_offline(tmp_path):
    env = quiet_env(BENTOML_HOME=str(tmp_path / "bentoml"), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    done = subprocess.run([sys.executable, "-m", "bentoml", "build", "-f", "serving/bentofile.yaml", "--output", "tag"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    bento = next((tmp_path / "bentoml/bentos/tagsmith").glob("*/bento.yaml")).parent
    requirements = (bento / "env/python/requirements.txt").read_text()
    assert "onnxruntime" in requirements and "torch" not in requirements and "transformers" not in requirements
    assert (bento / "src/serving/service.py").is_file() and not (bento / "src/training").exists()


# --- the real server ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_segment_answers_sentences_with_offsets(server):
    response = post(server, "/segment", {"texts": VERSE_PLAIN})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "segmentation" and len(body["results"]) == 1
    result = body["results"][0]
    assert result["text"] == VERSE_PLAIN and len(result["labels"]) == len(result["confidence"]) == len(VERSE_PLAIN)
    assert set(result["labels"]) <= set("BMES") and all(0 < c <= 1 for c in result["confidence"])
    assert "".join(s["text"] for s in result["sentences"]) == VERSE_PLAIN
    for sentence in result["sentences"]:
        assert VERSE_PLAIN[sentence["start"]:sentence["end"]] == sentence["text"]
    assert [s["text"] for s in result["sentences"]][:2] == ["天地玄黃", "宇宙洪荒"]  # it learned the rhythm
    assert result["segmented"].startswith("天地玄黃 | 宇宙洪荒 | ")


@pytest.mark.slow
def test_punctuate_one_text_or_a_list(server):
    single = post(server, "/punctuate", {"texts": VERSE_PLAIN}).json()["results"]
    many = post(server, "/punctuate", {"texts": [VERSE_PLAIN, "鳴鳳在竹白駒食場"]}).json()["results"]
    assert len(single) == 1 and len(many) == 2 and many[0]["punctuated"] == single[0]["punctuated"]
    # int8 activations are quantized per batch: what else is in the batch moves a confidence by a hair, not a mark
    for alone, batched in zip(single[0]["marks"], many[0]["marks"]):
        assert alone["confidence"] == pytest.approx(batched["confidence"], abs=0.01)
    result = single[0]
    assert strip_marks(result["punctuated"]) == VERSE_PLAIN
    assert result["punctuated"].startswith("天地玄黃，宇宙洪荒。")
    for mark in result["marks"]:
        assert mark["mark"] in MARKS and 0 < mark["confidence"] <= 1
        assert result["punctuated"][mark["output_position"]] == mark["mark"]
        assert result["punctuated"][:mark["output_position"]].endswith(VERSE_PLAIN[mark["position"] - 1])


@pytest.mark.slow
@pytest.mark.parametrize("route", ["/punctuate", "/segment"])
def test_both_scripts_answer_alike_in_the_callers_characters(server, route):
    """punctuation reads simplified and segmentation traditional: either script works with either model."""
    traditional, simplified = post(server, route, {"texts": [VERSE_PLAIN, VERSE_SIMPLIFIED]}).json()["results"]
    assert traditional["text"] == VERSE_PLAIN and simplified["text"] == VERSE_SIMPLIFIED
    if route == "/punctuate":
        assert [(m["mark"], m["position"]) for m in traditional["marks"]] == \
               [(m["mark"], m["position"]) for m in simplified["marks"]]
        assert strip_marks(simplified["punctuated"]) == VERSE_SIMPLIFIED
        assert strip_marks(traditional["punctuated"]) == VERSE_PLAIN
    else:
        assert traditional["labels"] == simplified["labels"]
        assert "".join(s["text"] for s in simplified["sentences"]) == VERSE_SIMPLIFIED


@pytest.mark.slow
def test_a_20000_character_text_is_punctuated_whole(server):
    chars = [c for c in "".join(VERSE + HELD_OUT) if c not in MARKS]
    rng = random.Random(0)
    text = "".join(rng.choice(chars) for _ in range(20_000))
    started = time.time()
    response = post(server, "/punctuate", {"texts": text})
    assert response.status_code == 200, response.text[:500]
    result = response.json()["results"][0]
    assert result["text"] == text and strip_marks(result["punctuated"]) == text
    assert len(result["marks"]) > 1000  # marks all along the text, not just in a first window
    assert result["marks"][-1]["position"] > 19_000
    segments = post(server, "/segment", {"texts": text}).json()["results"][0]
    assert len(segments["labels"]) == 20_000
    print(f"20,000 characters punctuated in {time.time() - started:.1f} s")
    too_long = post(server, "/punctuate", {"texts": text + "天"})
    assert too_long.status_code == 413 and "20001 characters, at most 20000" in too_long.json()["error"]


@pytest.mark.slow
def test_toxicity_probability_and_tuned_threshold(server, serving_models):
    from helpers import manifest

    threshold = manifest(serving_models, "toxicity")["threshold"]
    results = post(server, "/toxicity", {"texts": ["you are so stupid and pathetic", "thanks you are so kind"]}).json()
    rude, nice = results["results"]
    assert rude["label"] == "toxic" and nice["label"] == "non-toxic"
    for result in (rude, nice):
        assert result["threshold"] == pytest.approx(threshold) and result["positive_label"] == "toxic"
        assert result["probability"] == result["probabilities"]["toxic"]
        assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        # probabilities are rounded to 6 decimals in the answer, the decision is taken before rounding
        assert (result["probability"] >= threshold - 1e-6) == (result["label"] == "toxic")
        assert result["operating_point"] == "f1"  # toxicity-tiny tunes for the toxic class's F1


@pytest.mark.slow
def test_toxicity_operating_points_per_request(server, serving_models):
    from helpers import manifest

    points = manifest(serving_models, "toxicity")["operating_points"]
    assert set(points) == {"macro_f1", "f1", "recall_0.9"} and all(0 <= p["threshold"] <= 1 for p in points.values())
    assert httpx.get(server.url + "/info", timeout=60).json()["models"]["toxicity"]["operating_points"] == points
    text = {"texts": ["you are the game today"]}
    chosen = post(server, "/toxicity", {**text, "operating_point": "recall_0.9"}).json()["results"][0]
    assert chosen["operating_point"] == "recall_0.9" and chosen["threshold"] == pytest.approx(points["recall_0.9"]["threshold"])
    for cut, label in ((0.0, "toxic"), (1.0, "non-toxic")):  # every text is toxic at 0, none at 1 (p < 1)
        given = post(server, "/toxicity", {**text, "threshold": cut}).json()["results"][0]
        assert given["label"] == label and given["operating_point"] == "request" and given["threshold"] == cut
    for body, status, message in (({**text, "operating_point": "best"}, 400, "unknown operating_point 'best'"),
                                  ({**text, "threshold": 0.5, "operating_point": "f1"}, 400, "not both"),
                                  ({**text, "threshold": 1.5}, 400, "threshold")):
        response = post(server, "/toxicity", body)
        assert response.status_code == status and message in response.text, response.text


@pytest.mark.slow
def test_fill_mask_top_k(server):
    body = post(server, "/fill_mask", {"texts": ["天地玄[MASK]，宇宙洪[MASK]。"], "top_k": 3}).json()
    result = body["results"][0]
    assert len(result["masks"]) == 2 and all(len(candidates) == 3 for candidates in result["masks"])
    for candidates in result["masks"]:
        scores = [c["score"] for c in candidates]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert "[MASK]" not in result["filled"] and result["filled"].startswith("天地玄")
    default = post(server, "/fill_mask", {"texts": "天地玄[MASK]，宇宙洪荒。"}).json()["results"][0]
    assert len(default["masks"][0]) == 5
    no_mask = post(server, "/fill_mask", {"texts": ["天地玄黃", "宇宙[MASK]"]})
    assert no_mask.status_code == 400 and "texts[0] has no [MASK] token" in no_mask.json()["error"]


@pytest.mark.slow
def test_info_describes_every_served_model(server):
    by_get, by_post = httpx.get(server.url + "/info", timeout=30), post(server, "/info", {})
    assert by_get.status_code == by_post.status_code == 200 and by_get.json() == by_post.json()
    info = by_get.json()
    assert info["tasks"] == ROUTES and info["limits"]["max_chars"] == 20_000
    for task, model in info["models"].items():
        assert model["served"] and model["route"] == ROUTES[task] and model["model"] in ("int8", "fp32")
        assert model["training"]["data_sha256"] and model["metrics"] and model["data_grade"]
        assert set(model["package_sha256"]) >= {"tokenizer.json"}
    assert info["models"]["punctuation"]["labels"][0] == "O"
    assert info["models"]["segmentation"]["labels"] == list("BMES")
    assert 0 < info["models"]["toxicity"]["threshold"] < 1 and info["models"]["mlm"]["mask_token"] == "[MASK]"
    assert info["models"]["punctuation"]["script"] == "simplified"


@pytest.mark.slow
def test_health_metrics_and_adaptive_batching(server):
    for route in ("/livez", "/readyz"):
        assert httpx.get(server.url + route, timeout=10).status_code == 200
    texts = [VERSE_PLAIN[i % 8:i % 8 + 8] for i in range(64)]

    async def concurrently():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(server.url + "/segment", json={"texts": t}) for t in texts))

    for _ in range(2):  # BentoML's dispatcher runs its first ~20 batches small while it times the model
        assert all(r.status_code == 200 for r in asyncio.run(concurrently()))
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    sizes = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
             if line.startswith("tagsmith_batch_size_") and 'task="segmentation"' in line and "_bucket" not in line}
    # the model runs and the texts in them: more texts than runs = concurrent requests were merged
    assert sizes["tagsmith_batch_size_sum"] > sizes["tagsmith_batch_size_count"] > 0, sizes
    assert 'endpoint="/segment"' in metrics
    # another BentoML server starting on this host empties BentoML's shared metrics folder: this server's own
    # folder keeps its figures (they vanished before, when a second test server started mid-session)
    subprocess.run([sys.executable, "-c", "from bentoml.serving import ensure_prometheus_dir; ensure_prometheus_dir()"],
                   check=True, timeout=120, env=quiet_env())
    after = httpx.get(server.url + "/metrics", timeout=10).text
    assert f'tagsmith_batch_size_count{{task="segmentation"}} {sizes["tagsmith_batch_size_count"]}' in after, after[:2000]


@pytest.mark.slow
def test_demo_page_is_served(server):
    response = httpx.get(server.url + "/demo/", timeout=30)
    assert response.status_code == 200 and "gradio" in response.text.lower()
    assert httpx.get(server.url + "/demo", timeout=30, follow_redirects=True).status_code == 200


BAD_REQUESTS = [
    ("missing field", "/punctuate", b"{}", "application/json", 400, "texts"),
    ("wrong type", "/punctuate", b'{"texts": 12}', "application/json", 400, "texts"),
    ("list of numbers", "/segment", b'{"texts": [1, 2]}', "application/json", 400, "texts"),
    ("empty text", "/toxicity", b'{"texts": ""}', "application/json", 400, "empty text"),
    ("whitespace", "/segment", b'{"texts": ["ok", " \\n "]}', "application/json", 400, "texts[1]: empty text"),
    ("empty list", "/punctuate", b'{"texts": []}', "application/json", 400, "empty list"),
    ("not JSON", "/punctuate", b"texts=abc", "application/json", 400, "Invalid JSON"),
    ("invalid UTF-8", "/punctuate", b'{"texts": "\xff\xfe\xfd"}', "application/json", 400, "Invalid JSON"),
    ("lone surrogate", "/punctuate", b'{"texts": "a\\udc00b"}', "application/json", 400, "surrogate"),
    ("JSON array body", "/segment", b'["a"]', "application/json", 400, "object"),
    ("empty body", "/segment", b"", "application/json", 400, "texts"),
    ("form body", "/punctuate", b"texts=abc", "application/x-www-form-urlencoded", 415, "Content-Type"),
    ("multipart", "/toxicity", b"--x\r\n", "multipart/form-data", 415, "Content-Type"),
    ("top_k zero", "/fill_mask", b'{"texts": "a[MASK]", "top_k": 0}', "application/json", 400, "top_k"),
    ("top_k text", "/fill_mask", b'{"texts": "a[MASK]", "top_k": "many"}', "application/json", 400, "top_k"),
    ("too many texts", "/segment", json.dumps({"texts": ["天"] * 65}).encode(), "application/json", 413,
     "too many texts"),
    ("unknown route", "/nope", b"{}", "application/json", 404, "no such route"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,route,body,content_type,status,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_is_a_4xx_json_error_naming_the_problem(server, name, route, body, content_type, status, message):
    response = httpx.post(server.url + route, content=body, headers={"content-type": content_type}, timeout=60)
    assert response.status_code == status, response.text
    assert message in json.dumps(response.json(), ensure_ascii=False)


@pytest.mark.slow
def test_oversize_body_and_wrong_method_then_still_serving(server):
    huge = b'{"texts": "' + b"a" * (3 * 1024 * 1024) + b'"}'
    response = httpx.post(server.url + "/punctuate", content=huge, headers={"content-type": "application/json"},
                          timeout=60)
    assert response.status_code == 413 and "TAGSMITH_MAX_BODY_BYTES" in response.json()["error"]
    wrong_method = httpx.get(server.url + "/punctuate", timeout=10)
    assert wrong_method.status_code == 405 and "allowed: POST" in wrong_method.json()["error"]
    assert post(server, "/punctuate", {"texts": VERSE_PLAIN}).status_code == 200
    assert server.process.poll() is None


@pytest.mark.slow
def test_missing_and_broken_packages_answer_404_and_503(serving_models, tmp_path):
    """`tagsmith demo` on a folder with toxicity, a tampered punctuation package and nothing else."""
    models = tmp_path / "models"
    shutil.copytree(serving_models / "toxicity", models / "toxicity")
    broken = shutil.copytree(serving_models / "punctuation", models / "punctuation")
    (broken / "tokenizer.json").write_text((broken / "tokenizer.json").read_text(encoding="utf-8") + " ")
    demo = start_server(models, tmp_path / "demo.log", command="demo", TAGSMITH_THREADS="1")
    try:
        banner = demo.log_text()
        assert f"{demo.url}/demo/" in banner and f"{demo.url}/info" in banner
        # the service process says which package it refused and why, and what it serves
        assert f"refused {broken}: package does not match its manifest, refusing to load it: tokenizer.json: " \
               "sha256 mismatch" in banner, banner[-3000:]
        assert f"serving toxicity from {models / 'toxicity'} (published " in banner
        assert f"not serving segmentation: no package in {models / 'segmentation'}" in banner
        missing = post(demo, "/segment", {"texts": "天地玄黃"})
        assert missing.status_code == 404 and "no segmentation model is served" in missing.json()["error"]
        refused = post(demo, "/punctuate", {"texts": "天地玄黃"})
        assert refused.status_code == 503 and "tokenizer.json: sha256 mismatch" in refused.json()["error"]
        assert post(demo, "/toxicity", {"texts": "you are kind"}).status_code == 200
        info = httpx.get(demo.url + "/info", timeout=30).json()
        assert set(info["tasks"]) == {"toxicity", "punctuation"} and not info["models"]["punctuation"]["served"]
        assert httpx.get(demo.url + "/demo/", timeout=30).status_code == 200
    finally:
        demo.stop()


def test_a_toxicity_request_picks_a_threshold_or_an_operating_point():
    from serving import answers

    info = {"positive_label": "toxic", "threshold": 0.6, "threshold_objective": "macro_f1",
            "operating_points": {"macro_f1": {"threshold": 0.6}, "f1": {"threshold": 0.4}, "recall_0.9": {"threshold": 0.2}}}
    assert answers.choose_threshold(info, None, None) == ("macro_f1", None)
    assert answers.choose_threshold(info, None, "recall_0.9") == ("recall_0.9", 0.2)
    assert answers.choose_threshold(info, 0.35, None) == ("request", 0.35)
    with pytest.raises(ValueError, match="not both"):
        answers.choose_threshold(info, 0.3, "f1")
    with pytest.raises(ValueError, match="unknown operating_point 'best'; this model has: macro_f1, f1, recall_0.9"):
        answers.choose_threshold(info, None, "best")
    with pytest.raises(ValueError, match="need a binary model"):
        answers.choose_threshold({"positive_label": None}, 0.5, None)
    raw = {"text": "x", "label": "non-toxic", "score": 0.7, "probabilities": {"non-toxic": 0.7, "toxic": 0.3}}
    assert answers.toxicity(raw, 0.6, "toxic", "macro_f1")["label"] == "non-toxic"
    low = answers.toxicity(raw, 0.6, "toxic", "recall_0.9", 0.2)
    assert low["label"] == "toxic" and low["threshold"] == 0.2 and low["operating_point"] == "recall_0.9"
