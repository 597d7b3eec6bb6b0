"""The model packages tagsmith ships (serving/shipped/): intact, small, and right on passages everyone knows.

A worse model cannot be shipped silently: each passage below names marks the shipped punctuation model must put
(and places it must leave bare). They are well-known openings of 论语, 孟子, 史记 and 道德经, checked mark by mark.
"""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import ROOT

SHIPPED = ROOT / "serving" / "shipped"
#: the size each shipped package must stay under, and what its model card must name: data and reproduce command
MAX_PACKAGE_MB = {"punctuation": 20, "toxicity": 30}
CARD_NAMES = {"punctuation": ("CCLUE", "make ship-punctuation"), "toxicity": ("OLID", "Zampieri", "make ship-toxicity")}
#: plainly offensive and plainly friendly texts the shipped toxicity model must put on the right side of its threshold
OFFENSIVE = ["shut up you stupid idiot", "you are a worthless piece of trash", "go to hell you disgusting moron",
             "what a pathetic loser you are"]
FRIENDLY = ["thank you so much, have a lovely day", "congratulations on the new job!", "I really enjoyed the game tonight",
            "this is a helpful and kind community"]

#: passage -> {character index after which a mark must follow: that mark, or "any"}
PASSAGES = {
    "学而时习之不亦说乎有朋自远方来不亦乐乎人不知而不愠不亦君子乎": {8: "？", 18: "any", 29: "any"},
    "孟子见梁惠王王曰叟不远千里而来亦将有以利吾国乎": {7: "：", 22: "？"},
    "太史公曰余登箕山其上盖有许由冢云": {3: "：", 15: "。"},
    "大学之道在明明德在亲民在止于至善": {3: "any", 15: "any"},
    "孔子曰三人行必有我师焉择其善者而从之其不善者而改之": {2: "：", 10: "any", 24: "any"},
}
#: passage -> character indices inside a word or a phrase, after which no mark may follow
BARE = {
    "学而时习之不亦说乎有朋自远方来不亦乐乎人不知而不愠不亦君子乎": [0, 1, 2, 3, 5, 6, 7, 15, 16, 17, 25, 26, 27, 28],
    "孟子见梁惠王王曰叟不远千里而来亦将有以利吾国乎": [0, 1, 2, 3, 4, 9, 10, 11, 12, 15, 16, 17, 20, 21],
    "太史公曰余登箕山其上盖有许由冢云": [0, 1, 2, 4, 5, 6, 10, 11, 12, 13, 14],
    "大学之道在明明德在亲民在止于至善": [0, 1, 2, 4, 5, 6, 8, 9, 11, 12, 13, 14],
    "孔子曰三人行必有我师焉择其善者而从之其不善者而改之": [0, 1, 3, 4, 11, 12, 13, 19, 20, 22, 23],
}


def post(server, route: str, body) -> httpx.Response:
    return httpx.post(server.url + route, json=body, timeout=120)


def shipped_packages() -> list[str]:
    return sorted(p.name for p in SHIPPED.iterdir() if (p / "tagsmith.json").is_file()) if SHIPPED.is_dir() else []


def test_the_classical_chinese_package_is_shipped():
    assert "punctuation" in shipped_packages(), f"no punctuation package in {SHIPPED}"


@pytest.mark.parametrize("task", shipped_packages())
def test_shipped_package_verifies_is_small_and_has_a_card(task):
    from serving.runtime import load_package, verify_package

    package = SHIPPED / task
    manifest = verify_package(package)  # sha256 of every file
    size = sum(f.stat().st_size for f in package.iterdir() if f.is_file()) / 2**20
    assert size <= MAX_PACKAGE_MB[task], f"{package}: {size:.1f} MB"
    assert manifest["published"] == "int8" and load_package(package).variant == "int8"
    card = (package / "README.md").read_text(encoding="utf-8")
    assert all(name in card for name in CARD_NAMES[task]), CARD_NAMES[task]


def test_the_shipped_toxicity_model_is_real_and_decides_plain_cases():
    """Trained on OLID (not the demo seed set), with operating points; plain cases on the right side."""
    from serving.runtime import load_package

    assert "toxicity" in shipped_packages(), f"no toxicity package in {SHIPPED}"
    runtime = load_package(SHIPPED / "toxicity")
    manifest = runtime.manifest
    assert manifest["data_grade"] == "real" and set(manifest["operating_points"]) == {"macro_f1", "f1", "recall_0.9"}
    assert manifest["source"]["metrics"]["test"]["macro_f1"] >= 0.75
    results = runtime.predict(OFFENSIVE + FRIENDLY)
    assert [r.label for r in results] == ["toxic"] * len(OFFENSIVE) + ["non-toxic"] * len(FRIENDLY), \
        [(r.text, r.probabilities) for r in results]


def test_shipped_punctuation_gets_well_known_passages_right():
    from serving.runtime import BoundaryRuntime, load_package

    runtime = load_package(SHIPPED / "punctuation")
    results = runtime.predict(list(PASSAGES))
    for result in results:
        for index, mark in PASSAGES[result.text].items():
            got = result.labels[index]
            assert got != "O" and (mark == "any" or got == mark), (result.output, index, mark)
        for index in BARE[result.text]:
            assert result.labels[index] == "O", (result.output, index)
    # /segment from the same model: a sentence ends exactly where a mark was put
    segmented = BoundaryRuntime(runtime).predict(list(PASSAGES))
    for tagged, marks in zip(segmented, results):
        ends = [label in ("E", "S") for label in tagged.labels]
        assert ends[:-1] == [label != "O" for label in marks.labels][:-1]
        assert all(0.0 < c <= 1.0 for c in tagged.confidence)
        # where a mark was put, the probability of some mark there beats that of none
        assert all(c > 0.5 for c, end in zip(tagged.confidence[:-1], ends[:-1]) if end)


@pytest.mark.slow
def test_a_fresh_server_answers_from_the_shipped_packages(shipped_server):
    """`tagsmith serve` with an empty models folder: /punctuate and /segment answer from serving/shipped/."""
    server = shipped_server
    text = next(iter(PASSAGES))
    punctuated = post(server, "/punctuate", {"texts": text})
    assert punctuated.status_code == 200
    answer = punctuated.json()["results"][0]
    assert answer["punctuated"].replace("，", "").replace("？", "").replace("。", "").replace("：", "") \
        .replace("；", "").replace("！", "").replace("、", "") == text
    assert answer["punctuated"].startswith("学而时习之不亦说乎？") and answer["punctuated"][-1] in "？！。"
    segmented = post(server, "/segment", {"texts": text})
    assert segmented.status_code == 200 and len(segmented.json()["results"][0]["sentences"]) >= 3
    info = httpx.get(server.url + "/info", timeout=30).json()
    assert info["models"]["punctuation"]["package"].endswith("serving/shipped/punctuation")
    assert "punctuation package" in info["models"]["segmentation"]["derived_from"]
    demo = httpx.get(server.url + "/demo/", timeout=30)
    assert demo.status_code == 200
    toxic = post(server, "/toxicity", {"texts": "shut up you stupid idiot"}).json()["results"][0]
    assert toxic["label"] == "toxic" and toxic["operating_point"] == "macro_f1", toxic
    assert info["models"]["toxicity"]["package"].endswith("serving/shipped/toxicity")
    assert json.loads((SHIPPED / "punctuation" / "tagsmith.json").read_text(encoding="utf-8"))["task"] == "punctuation"
