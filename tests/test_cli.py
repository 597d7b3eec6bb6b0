"""CLI conventions: --version, fixed choices refused with exit 2, the documented exit codes, `serve --help` naming
every environment variable the service reads, and `data convert` reaching every table reader the README names."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagsmith.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_version_is_the_package_version():
    done = run("--version")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert done.exit_code == 0 and done.output.strip() == f"tagsmith {version}"


@pytest.mark.parametrize("args, named", [
    (["data", "validate", "--task", "tagging", "x.jsonl"], "'segmentation', 'punctuation'"),
    (["data", "fetch", "wikipedia"], "'chinese-poetry'"),
    (["data", "convert", "x", "--task", "toxicity", "--out", "y", "--format", "xlsx"], "'jigsaw'"),
    (["export", "run/best", "--optimize", "sometimes"], "'auto', 'always', 'never'"),
    (["punctuate", "book.txt", "--existing", "drop"], "'strip', 'keep'"),
    (["punctuate", "book.txt", "--flag-style", "bold"], "'bracket', 'markdown', 'html'"),
    (["serve", "--port", "70000"], "65535"),
])
def test_a_value_outside_the_choices_is_a_usage_error_naming_them(args, named):
    done = run(*args)
    assert done.exit_code == 2, done.output
    assert named in " ".join(re.sub(r"[│╭╮╰╯─]", " ", done.output).split()), done.output


def test_bench_refuses_an_unknown_backend_before_loading_anything(tmp_path):
    done = run("bench", tmp_path, "--backends", "onnx-int8,tensorrt")
    assert done.exit_code == 2
    assert "unknown tensorrt; choose from pytorch, onnx-fp32, onnx-int8" in done.output


def test_top_level_help_documents_the_exit_codes():
    done = run("--help")
    text = " ".join(done.output.split())
    for code in ("0 done", "1 failed", "2 usage or config error", "75 stopped by a signal"):
        assert code in text, code


def test_serve_help_lists_every_variable_the_service_reads():
    read = set()
    for path in (ROOT / "serving").glob("*.py"):
        read |= set(re.findall(r"TAGSMITH_[A-Z_]+", path.read_text(encoding="utf-8")))
    assert {"TAGSMITH_MODELS", "TAGSMITH_THREADS", "TAGSMITH_MAX_CHARS"} <= read
    for command in ("serve", "demo"):
        shown = run(command, "--help").output
        missing = sorted(name for name in read if name not in shown)
        assert not missing, f"{command} --help does not mention {missing}"


# --- data convert: the table readers of tagsmith/tabular.py from the command line ------------------------------


def test_convert_jigsaw_csv_any_of_six_columns_is_toxic(tmp_path):
    source = tmp_path / "train.csv"
    source.write_text('id,comment_text,toxic,severe_toxic,obscene,threat,insult,identity_hate\n'
                      'a1,"You are lovely, thanks",0,0,0,0,0,0\n'
                      'a2,"I will find you",0,0,0,1,0,0\n'
                      'a3,"what an idiot",1,0,0,0,1,0\n', encoding="utf-8")
    done = run("data", "convert", source, "--task", "toxicity", "--out", tmp_path / "out.jsonl")
    assert done.exit_code == 0, done.output
    got = records(tmp_path / "out.jsonl")
    assert [(r["id"], r["label"]) for r in got] == [("a1", "non-toxic"), ("a2", "toxic"), ("a3", "toxic")]
    assert got[0]["text"] == "You are lovely, thanks"
    assert '"toxic": 2' in done.output


def test_convert_civil_comments_at_a_threshold(tmp_path):
    source = tmp_path / "civil.jsonl"
    rows = [{"id": 1, "text": "nice point", "toxicity": 0.1}, {"id": 2, "text": "shut up", "toxicity": 0.6},
            {"id": 3, "text": "meh", "toxicity": 0.45}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = run("data", "convert", source, "--task", "toxicity", "--out", out, "--format", "civil-comments",
               "--threshold", "0.4")
    assert done.exit_code == 0, done.output
    assert [r["label"] for r in records(out)] == ["non-toxic", "toxic", "toxic"]


def test_convert_olid_tsv_keeps_quotes(tmp_path):
    source = tmp_path / "olid.tsv"
    source.write_text('id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\n'
                      '1\t"@USER she said ""no"" \tOFF\tTIN\tIND\n'
                      '2\tHave a nice day\tNOT\tNULL\tNULL\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = run("data", "convert", source, "--task", "toxicity", "--out", out)
    assert done.exit_code == 0, done.output
    got = records(out)
    assert [r["label"] for r in got] == ["toxic", "non-toxic"]
    assert got[0]["text"].startswith('"@USER')  # quoting=3: a quote is a character, never a delimiter


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_convert_a_generic_table_with_named_columns(tmp_path, suffix, sep):
    source = tmp_path / f"mine{suffix}"
    source.write_text(sep.join(["comment", "verdict"]) + "\n" + sep.join(["good game", "positive"]) + "\n"
                      + sep.join(["awful refereeing", "negative"]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = run("data", "convert", source, "--task", "classification", "--out", out, "--format", "table",
               "--text-column", "comment", "--label-column", "verdict")
    assert done.exit_code == 0, done.output
    assert [(r["text"], r["label"]) for r in records(out)] == [("good game", "positive"),
                                                               ("awful refereeing", "negative")]


def test_convert_refuses_labels_the_task_does_not_know_naming_the_row(tmp_path):
    source = tmp_path / "t.csv"
    source.write_text("text,label\nfine,non-toxic\nrude,offensive\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    done = run("data", "convert", source, "--task", "toxicity", "--out", out)
    assert done.exit_code == 1
    assert f"{source}: row 2: unknown label 'offensive'" in done.output
    assert not out.exists()  # nothing written, nothing dropped


def test_convert_names_a_missing_column(tmp_path):
    source = tmp_path / "t.csv"
    source.write_text("body,label\nfine,non-toxic\n", encoding="utf-8")
    done = run("data", "convert", source, "--task", "toxicity", "--out", tmp_path / "o.jsonl", "--format", "table")
    assert done.exit_code == 1
    assert "text" in done.output and "body" in done.output


def test_convert_refuses_a_table_format_for_a_tagging_task(tmp_path):
    source = tmp_path / "t.txt"
    source.write_text("學而時習之，不亦說乎。\n", encoding="utf-8")
    done = run("data", "convert", source, "--task", "punctuation", "--out", tmp_path / "o.jsonl", "--format", "jigsaw")
    assert done.exit_code == 2 and "punctuated text" in done.output
    done = run("data", "convert", source, "--task", "punctuation", "--out", tmp_path / "o.jsonl")
    assert done.exit_code == 0, done.output
    assert records(tmp_path / "o.jsonl")[0]["labels"][4] == "，"


def readme_commands() -> list[list[str]]:
    """Every `tagsmith ...` line of the README's bash blocks, split into words (comments dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            line = re.sub(r"^([A-Z_]+=\S+\s+)+", "", line)  # VAR=value prefixes
            if line.startswith("tagsmith "):
                commands.append(line.split()[1:])
    return commands


def test_every_readme_command_and_option_exists():
    commands = readme_commands()
    assert len(commands) >= 20
    groups = {"data"}
    for words in commands:
        path = words[:2] if words[0] in groups else words[:1]
        shown = " ".join(re.sub(r"[│╭╮╰╯─]", " ", run(*path, "--help").output).split())
        assert "Usage:" in shown, (path, shown[:300])
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in shown, f"README: tagsmith {' '.join(words)}: {option} is not an option of {' '.join(path)}"
