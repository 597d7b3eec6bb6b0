"""The HTTP contract as published: ``/docs.json`` carries the request limits, the error answers (with examples that
are what the server answers) and ``GET /info``; the request model refuses what ``check_texts`` refuses, with its
message and status; and what the server logs about the packages it serves or refuses."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from pydantic import ValidationError, create_model

from helpers import ROUTES

ERROR_STATUSES = ("400", "404", "413", "415", "503")


# --- without a server ---------------------------------------------------------------------------------------


def test_the_texts_type_publishes_the_limits_and_refuses_like_check_texts():
    from serving.limits import InputError, Limits, check_texts, texts_type

    limits = Limits(max_chars=10, max_texts=3, max_total_chars=25)
    model = create_model("Input", texts=(texts_type(limits), ...))
    one, many = model.model_json_schema(mode="serialization")["properties"]["texts"]["anyOf"]
    assert (one["type"], one["minLength"], one["maxLength"]) == ("string", 1, 10)
    assert (many["type"], many["minItems"], many["maxItems"]) == ("array", 1, 3)
    assert (many["items"]["minLength"], many["items"]["maxLength"]) == (1, 10)
    assert model.model_validate_json('{"texts": "天地"}').texts == ["天地"]
    for texts in ("x" * 11, ["a"] * 4, ["x" * 10] * 3, ["ok", " "], ["ok", 7], []):
        with pytest.raises(InputError) as expected:
            check_texts(texts, limits)
        with pytest.raises(ValidationError) as refused:
            model.model_validate_json(json.dumps({"texts": texts}))
        answer = InputError.from_validation_error(refused.value)
        assert (answer.status, answer.as_json()) == (expected.value.status, expected.value.as_json())
    for body, message in ((b"{}", "texts: Field required"), (b"[1]", "body: Input should be an object"),
                          (b"texts=1", "body: Invalid JSON")):
        with pytest.raises(ValidationError) as refused:
            model.model_validate_json(body)
        answer = InputError.from_validation_error(refused.value)
        assert answer.status == 400 and answer.message.startswith(message) and answer.detail[0]["loc"]


def _package(folder, manifest, files=None):
    folder.mkdir(parents=True)
    (folder / "tagsmith.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    for name, content in (files or {}).items():
        (folder / name).write_text(content)
    return folder


def test_loading_logs_each_refused_package_with_its_reason(tmp_path, caplog, monkeypatch):
    from serving.packages import load_all

    monkeypatch.setenv("TAGSMITH_SHIPPED", "0")
    root = tmp_path / "models"
    tampered = _package(root / "punctuation", {"task": "punctuation", "files": {"tokenizer.json": "0" * 64}},
                        {"tokenizer.json": "{}"})
    corrupt = _package(root / "toxicity", "{not json")
    unknown = _package(root / "mlm", {"task": "poetry", "files": {}})
    stray = _package(root / "punct", {"task": "punctuation", "files": {}})
    with caplog.at_level(logging.INFO, logger="serving.packages"):
        served = load_all(root, threads=1)
    lines = [record.getMessage() for record in caplog.records if record.name == "serving.packages"]
    assert not any(entry.runtime for entry in served.values())
    expected = [f"refused {stray}: unknown task 'punct'",
                f"refused {tampered}: package does not match its manifest, refusing to load it: tokenizer.json: "
                "sha256 mismatch",
                f"refused {corrupt}: {corrupt / 'tagsmith.json'}: corrupt manifest",
                f"refused {unknown}: task 'poetry' of kind None has no runtime",
                f"not serving segmentation: no package in {root / 'segmentation'}"]
    for start in expected:
        assert sum(line.startswith(start) for line in lines) == 1, (start, lines)
    assert len(lines) == len(expected), lines
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.getMessage().startswith("refused"))


# --- the real server ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_docs_json_publishes_the_limits_the_errors_and_info(server):
    from serving.answers import InfoResponse

    spec = httpx.get(server.url + "/docs.json", timeout=60).json()
    info = httpx.get(server.url + "/info", timeout=60).json()
    InfoResponse.model_validate(info)  # the answer is what the published model says
    limits = info["limits"]
    for route in ROUTES.values():
        operation = spec["paths"][route]["post"]
        texts = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["texts"]
        by_type = {member["type"]: member for member in texts["oneOf"]}
        one, many = by_type["string"], by_type["array"]
        assert (one["minLength"], one["maxLength"]) == (1, limits["max_chars"]), route
        assert (many["minItems"], many["maxItems"]) == (1, limits["max_texts"]), route
        assert (many["items"]["minLength"], many["items"]["maxLength"]) == (1, limits["max_chars"]), route
        assert str(limits["max_body_bytes"]) in operation["requestBody"]["description"]
        for status in ERROR_STATUSES:
            media = operation["responses"][status]["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (route, status)
            assert media["examples"], (route, status)
            for example in media["examples"].values():
                assert set(example["value"]) == {"error", "detail"} and example["value"]["error"], (route, status)
    error = spec["components"]["schemas"]["ErrorResponse"]
    assert set(error["properties"]) == {"error", "detail"} and error["required"] == ["error"]
    assert set(spec["components"]["schemas"]["ErrorDetail"]["properties"]) == {"loc", "msg"}
    for method in ("get", "post"):
        ok = spec["paths"]["/info"][method]["responses"]["200"]["content"]["application/json"]
        assert set(ok["schema"]["required"]) == {"models", "tasks", "limits", "batching"}, method
        assert ok["example"]["limits"] == limits and InfoResponse.model_validate(ok["example"])
    # the examples are what the server answers
    examples = {status: spec["paths"]["/segment"]["post"]["responses"][status]["content"]["application/json"]
                ["examples"] for status in ERROR_STATUSES}
    for body, status, name in ((["天"] * (limits["max_texts"] + 1), 413, "too many texts"),
                               ("天" * (limits["max_chars"] + 1), 413, "text too long"),
                               (["天地玄黃", " "], 400, "empty text")):
        answer = httpx.post(server.url + "/segment", json={"texts": body}, timeout=60)
        assert answer.status_code == status and answer.json() == examples[str(status)][name]["value"], answer.text
    missing = httpx.post(server.url + "/segment", json={}, timeout=60)
    assert missing.status_code == 400 and missing.json() == examples["400"]["missing field"]["value"]


@pytest.mark.slow
def test_the_server_logs_the_packages_it_serves(server, serving_models):
    log = server.log_text()
    for task in ROUTES:
        assert f"serving {task} from {serving_models / task} (published " in log, log[-3000:]
    assert "sha256 verified" in log
