"""``tagsmith punctuate`` / ``tagsmith segment`` on whole files (serving/bulk.py).

The rendering and input checks run on a fake runtime (labels decided by a rule, so every expected string is
known); the CLI runs as users run it, in a subprocess, on the session's tiny punctuation package (fast enough for
a million characters) and once on the shipped package.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serving import bulk
from serving.runtime import Tagged
from conftest import ROOT
from helpers import book, quiet_env, without_marks


class EveryFourth:
    """A fake tagging runtime: a comma after every 4th content character, a full stop at the end; confidence
    0.9 for a mark, except after the 8th character (0.4)."""

    def predict(self, texts):
        results = []
        for text in texts:
            labels = ["，" if (i + 1) % 4 == 0 else "O" for i in range(len(text))]
            labels[-1] = "。"
            confidence = [0.4 if i == 7 else 0.9 for i in range(len(text))]
            results.append(Tagged(text, labels, confidence))
        return results


class EndsEveryFourth(EveryFourth):
    def predict(self, texts):
        from tagsmith.tasks import labels_from_ends

        return [Tagged(t.text, labels_from_ends([label != "O" for label in t.labels]), t.confidence)
                for t in super().predict(texts)]


def render(text: str, task: str = "punctuation", **settings) -> list[str]:
    runtime = EveryFourth() if task == "punctuation" else EndsEveryFourth()
    data = bulk.render_chunk(runtime, [(text, None)], bulk.Settings(task, **settings))
    return data.decode("utf-8").split("\n")[:-1]


# --- what is written ------------------------------------------------------------------------------------------


def test_strip_drops_old_marks_and_spaces_but_keeps_quotes_in_place():
    assert render("天地玄黃，宇宙 洪荒。") == ["天地玄黃，宇宙洪荒。"]
    assert render("子曰「天地玄黃宇宙洪荒」") == ["子曰「天地，玄黃宇宙，洪荒。」"]
    # half-width and variant marks are marks too; Latin letters and digits are content
    assert render("天地,玄黃...AB12") == ["天地玄黃，AB12。"]


def test_keep_keeps_every_character_and_adds_marks_only_where_none_is():
    text = "天地玄黃；宇宙 洪荒日月盈昃"
    out = render(text, existing="keep")[0]
    assert out == "天地玄黃；宇宙 洪荒，日月盈昃。"
    removed = out.replace("洪荒，", "洪荒").removesuffix("。")
    assert removed == text


def test_unsure_marks_are_flagged_in_the_chosen_style():
    text = "天地玄黃宇宙洪荒日月盈昃"
    assert render(text, flag_below=0.5)[0] == "天地玄黃，宇宙洪荒[，]日月盈昃。"
    assert render(text, flag_below=0.5, flag_style="markdown")[0] == "天地玄黃，宇宙洪荒==，==日月盈昃。"
    assert render(text, flag_below=0.5, flag_style="html")[0] == '天地玄黃，宇宙洪荒<mark title="0.40">，</mark>日月盈昃。'
    assert render(text)[0] == "天地玄黃，宇宙洪荒，日月盈昃。"  # no threshold, no flags


def test_jsonl_output_gives_every_mark_with_its_position_and_confidence():
    data = bulk.render_chunk(EveryFourth(), [("子曰「天地玄黃」", {"text": "子曰「天地玄黃」", "id": 7})],
                             bulk.Settings("punctuation", output="jsonl", flag_below=0.5))
    row = json.loads(data)
    assert row["id"] == 7 and row["text"] == "子曰「天地玄黃」"
    assert row["output"] == "子曰「天地，玄黃。」"  # JSONL output is never decorated with flags
    assert row["marks"] == [{"after": 4, "mark": "，", "confidence": 0.9}, {"after": 6, "mark": "。", "confidence": 0.9}]
    assert all(bulk.is_content(row["text"][m["after"]]) for m in row["marks"])


def test_segmentation_keeps_closing_quotes_with_their_sentence():
    assert render("子曰「天地玄黃宇宙」洪荒", "segmentation") == ["子曰「天地 | 玄黃宇宙」 | 洪荒"]
    assert render("天地玄黃宇宙洪荒日月", "segmentation", sentence_lines=True) == ["天地玄黃", "宇宙洪荒", "日月", ""]
    assert render("天地玄黃宇宙洪荒日月", "segmentation", flag_below=0.5) == ["天地玄黃 | 宇宙洪荒[?] | 日月"]
    row = json.loads(bulk.render_chunk(EndsEveryFourth(), [("天地玄黃，宇宙", None)],
                                       bulk.Settings("segmentation", output="jsonl")))
    assert row["sentences"] == ["天地玄黃", "宇宙"] and row["boundaries"] == [{"after": 3, "confidence": 0.9}]


def test_paragraphs_without_content_are_copied_through():
    assert render("") == [""]
    assert render("「」", existing="keep") == ["「」"]
    assert render("", "segmentation", sentence_lines=True) == [""]


# --- input checks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, message", [
    ("bad.txt", "天地玄黃\n".encode() + b"\xff\xfe\n", "bad.txt:2: not UTF-8"),
    ("bad.jsonl", b'{"text": "a"}\n{"txt": "b"}\n', "bad.jsonl:2: no 'text' field (fields: txt)"),
    ("bad.jsonl", b'{"text": "a"}\n\n{"text": 3}\n', "bad.jsonl:3: 'text' must be a string, got int"),
    ("bad.jsonl", b'["text"]\n', "bad.jsonl:1: expected a JSON object"),
    ("bad.jsonl", b'{"text": "a"\n', "bad.jsonl:1: not JSON"),
    ("empty.txt", b"", "empty.txt: empty file"),
    ("blank.txt", b"\n\n", "blank.txt: empty file"),
])
def test_bad_input_is_refused_naming_the_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(bulk.BulkError) as error:
        bulk.scan(path)
    assert message in str(error.value)


def test_scan_counts_characters_per_line_without_bom_or_crlf(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeff天地\r\n\n玄黃宇宙".encode())
    source = bulk.scan(path)
    assert list(source.chars) == [2, 0, 4] and list(source.starts)[-1] == path.stat().st_size
    assert [text for _, text, _ in source.read(0, 3)] == ["天地", "", "玄黃宇宙"]
    assert [text for _, text, _ in source.read(2, 3)] == ["玄黃宇宙"]


def test_shards_cover_every_line_once_with_balanced_characters():
    chars = [random.Random(3).randint(0, 400) for _ in range(1000)]
    for n in (1, 2, 3, 7):
        blocks = bulk.line_blocks(chars, n)
        assert blocks[0][0] == 0 and blocks[-1][1] == len(chars)
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        sizes = [sum(chars[a:b]) for a, b in blocks]
        assert max(sizes) - min(sizes) <= 2 * max(chars)
    assert bulk.line_blocks([5], 3) == [(0, 0), (0, 1), (1, 1)]  # more shards than lines: some are empty


def test_folder_files_are_assigned_to_shards_by_size(tmp_path):
    sizes = [900, 100, 500, 400, 300]
    files = []
    for i, size in enumerate(sizes):
        files.append(tmp_path / f"{i}.txt")
        files[-1].write_bytes(b"a" * size)
    shards = bulk.assign_files(files, 2)
    assert shards == bulk.assign_files(files, 2)  # deterministic
    loads = [sum(s for s, k in zip(sizes, shards) if k == shard) for shard in (0, 1)]
    assert sorted(loads) == [1000, 1200]


# --- the CLI on a real package --------------------------------------------------------------------------------


def cli(*args, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tagsmith.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          timeout=timeout, env=quiet_env(TAGSMITH_THREADS="1"), **kwargs)
    if check:
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done


@pytest.fixture(scope="module")
def book300k(tmp_path_factory, serving_models):
    """A 300k-character book and its uninterrupted punctuation: for the stop / resume / shard tests."""
    folder = tmp_path_factory.mktemp("bulk300k")
    source = book(folder / "book.txt", 300_000, seed=1)
    out = folder / "book.punctuated.txt"
    cli("punctuate", source, "-o", out, "--package", serving_models / "punctuation", "--chunk-chars", 20000)
    return source, out, serving_models / "punctuation"


@pytest.mark.slow
def test_a_million_characters_keep_every_character_and_order(million_book):
    source, out, _ = million_book
    lines_in = source.read_text(encoding="utf-8").split("\n")[:-1]
    lines_out = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert sum(map(len, lines_in)) >= 1_000_000
    assert len(lines_out) == len(lines_in)
    assert all(without_marks(a) == without_marks(b) for a, b in zip(lines_in, lines_out))
    added = sum(1 for line in lines_out for c in line if c in "，。：、；？！")
    assert added > 10_000  # the model did mark the text
    record = json.loads(out.with_name(out.name + ".tagsmith.json").read_text())
    assert record["complete"] and record["done"]["paragraphs"] == len(lines_in)
    assert record["done"]["output_sha256"] == bulk.sha256_file(out) and record["chars_per_second"] > 0


def _progress(out: Path) -> int:
    try:
        return json.loads(out.with_name(out.name + ".tagsmith.json").read_text())["done"]["paragraphs"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def _start(source: Path, out: Path, package: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tagsmith.cli", "punctuate", str(source), "-o", str(out),
                             "--package", str(package), "--chunk-chars", "20000", *extra], cwd=ROOT,
                            env=quiet_env(TAGSMITH_THREADS="1"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _running(source: Path, out: Path, package: Path, chunks: int = 1) -> subprocess.Popen:
    """``tagsmith punctuate`` started in the background, once its record shows ``chunks`` chunks done."""
    process = _start(source, out, package)
    deadline = time.monotonic() + 300
    while _progress(out) < chunks:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no progress after 300 s"
        time.sleep(0.05)
    return process


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_output(book300k, tmp_path):
    source, reference, package = book300k
    out = tmp_path / "book.txt"
    process = _running(source, out, package, chunks=3)
    process.kill()  # SIGKILL: no chance to tidy up, maybe in the middle of a chunk
    process.wait()
    done = _progress(out)
    lines = source.read_text(encoding="utf-8").count("\n")
    assert 0 < done < lines
    resumed = cli("punctuate", source, "-o", out, "--package", package, "--chunk-chars", 20000)
    assert f"resuming after paragraph {done}" in resumed.stderr.decode()
    assert out.read_bytes() == reference.read_bytes()
    # a finished output is left alone: a third run writes nothing
    before = out.stat().st_mtime_ns
    again = cli("punctuate", source, "-o", out, "--package", package, "--chunk-chars", 20000)
    assert out.stat().st_mtime_ns == before and "already complete" in again.stderr.decode()


@pytest.mark.slow
def test_sigterm_stops_after_a_chunk_with_exit_75_then_resumes(book300k, tmp_path):
    source, reference, package = book300k
    out = tmp_path / "book.txt"
    process = _running(source, out, package)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 75, err.decode()[-2000:]
    assert "stopped by SIGTERM after" in err.decode() and "run the same command again to resume" in err.decode()
    # another command on the same output is refused: it would mix two settings in one file
    other = cli("punctuate", source, "-o", out, "--package", package, "--existing", "keep", check=False)
    assert other.returncode == 1 and b"other options" in other.stderr
    cli("punctuate", source, "-o", out, "--package", package, "--chunk-chars", 20000)
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.slow
def test_a_modified_partial_output_is_refused_not_overwritten(book300k, tmp_path):
    source, _, package = book300k
    out = tmp_path / "book.txt"
    process = _running(source, out, package)
    process.kill()
    process.wait()
    with open(out, "r+b") as handle:
        handle.write("改".encode())
    refused = cli("punctuate", source, "-o", out, "--package", package, "--chunk-chars", 20000, check=False)
    assert refused.returncode == 1 and b"the output changed since the run stopped" in refused.stderr
    exists = tmp_path / "mine.txt"
    exists.write_text("my notes\n")
    refused = cli("punctuate", source, "-o", exists, "--package", package, check=False)
    assert refused.returncode == 2 and b"--overwrite replaces it" in refused.stderr
    assert exists.read_text() == "my notes\n"


@pytest.mark.slow
def test_shards_merged_equal_one_run_and_a_missing_shard_is_named(book300k, tmp_path):
    source, reference, package = book300k
    common = ["--package", package, "--chunk-chars", 20000, "-o", tmp_path]
    for k in (0, 2):
        cli("punctuate", source, "--shard", f"{k}/3", *common)
    missing = cli("punctuate", source, "--merge", 3, *common, check=False)
    assert missing.returncode == 1 and b"shard 1 (paragraphs" in missing.stderr and b"not started" in missing.stderr
    cli("punctuate", source, "--shard", "1/3", *common)
    merged = cli("punctuate", source, "--merge", 3, *common)
    assert (tmp_path / "book.txt").read_bytes() == reference.read_bytes()
    assert json.loads(merged.stdout)["paragraphs"] == source.read_text(encoding="utf-8").count("\n")
    summaries = sorted((tmp_path / "shards").glob("*.json"))
    assert [p.name for p in summaries] == ["00000-of-00003.json", "00001-of-00003.json", "00002-of-00003.json"]


@pytest.mark.slow
def test_a_folder_in_shards_then_checked(serving_models, tmp_path):
    package = serving_models / "punctuation"
    library = tmp_path / "library"
    (library / "vol2").mkdir(parents=True)
    for i, size in enumerate((3000, 800, 1500)):
        book(library / ("vol2" if i == 2 else ".") / f"juan{i}.txt", size, seed=i)
    (library / "notes.md").write_text("not an input")
    (library / "extra.jsonl").write_text(json.dumps({"text": "天地玄黃宇宙洪荒", "id": "x"}, ensure_ascii=False) + "\n")
    out = tmp_path / "out"
    common = ["--package", package, "-o", out]
    cli("punctuate", library, "--shard", "0/2", *common)
    missing = cli("punctuate", library, "--merge", 2, *common, check=False)
    assert missing.returncode == 1 and b"(shard 1): not started" in missing.stderr
    cli("punctuate", library, "--shard", "1/2", *common)
    cli("punctuate", library, "--merge", 2, *common)
    done = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "shards" not in p.parts)
    assert [name for name in done if not name.endswith(".tagsmith.json")] == [
        "extra.txt", "juan0.txt", "juan1.txt", "vol2/juan2.txt"]  # text output of a JSONL input is text
    single = tmp_path / "single"
    cli("punctuate", library, *common[:2], "-o", single)
    for name in ("juan0.txt", "juan1.txt", "vol2/juan2.txt", "extra.txt"):
        assert (out / name).read_bytes() == (single / name).read_bytes(), name
    assert without_marks((out / "extra.txt").read_text(encoding="utf-8")) == "天地玄黃宇宙洪荒"
    cli("punctuate", library, *common[:2], "-o", single, "--output-format", "jsonl")
    assert json.loads((single / "extra.jsonl").read_text(encoding="utf-8"))["id"] == "x"  # other fields kept


@pytest.mark.slow
def test_cli_errors_name_the_file_and_line(serving_models, tmp_path):
    package = serving_models / "punctuation"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "天地"}\n{"id": 2}\n', encoding="utf-8")
    done = cli("punctuate", bad, "--package", package, check=False)
    assert done.returncode == 1 and f"{bad}:2: no 'text' field".encode() in done.stderr
    done = cli("segment", tmp_path / "nope.txt", check=False)
    assert done.returncode == 2 and b"no such file or folder" in done.stderr
    good = tmp_path / "good.txt"
    good.write_text("天地玄黃\n", encoding="utf-8")
    done = cli("punctuate", good, "--package", package, "--shard", "3/2", "-o", tmp_path / "x", check=False)
    assert done.returncode == 2 and b"K must be in 0..N-1" in done.stderr
    done = cli("segment", good, "--package", serving_models / "toxicity", check=False)
    assert done.returncode == 1 and b"segment needs a segmentation or punctuation package" in done.stderr


@pytest.mark.slow
def test_the_shipped_package_punctuates_stdin_without_torch(tmp_path):
    """No --package: the shipped model; the command never imports torch (it runs where only the serve extra is)."""
    code = ("import sys, atexit\n"
            "atexit.register(lambda: print('HEAVY', sorted(m for m in ('torch', 'transformers', 'optimum') "
            "if m in sys.modules), file=sys.stderr))\n"
            "sys.argv = ['tagsmith'] + sys.argv[1:]\nfrom tagsmith.cli import main\nmain()\n")
    passage = "學而時習之不亦說乎有朋自遠方來不亦樂乎人不知而不慍不亦君子乎"
    done = subprocess.run([sys.executable, "-c", code, "punctuate", "-", "--output-format", "jsonl"],
                          input=(passage + "\n").encode(), cwd=ROOT, capture_output=True, timeout=300,
                          env=quiet_env(TAGSMITH_SHIPPED="1"))
    err = done.stderr.decode()
    assert done.returncode == 0, err[-3000:]
    assert "HEAVY []" in err and "serving/shipped/punctuation" in err
    row = json.loads(done.stdout)
    assert without_marks(row["output"]) == passage and row["output"][-1] in "。？！"
    assert all(0.0 < m["confidence"] <= 1.0 for m in row["marks"]) and len(row["marks"]) >= 4
    segmented = subprocess.run([sys.executable, "-m", "tagsmith.cli", "segment", "-", "-q"], input=(passage + "\n").encode(),
                               cwd=ROOT, capture_output=True, timeout=300, env=quiet_env(TAGSMITH_SHIPPED="1"))
    inside = [m for m in row["marks"] if m["after"] < len(passage) - 1]  # a mark ends a sentence, the last one the text
    assert segmented.returncode == 0 and segmented.stdout.decode().count(" | ") == len(inside)
