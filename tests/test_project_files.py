"""The repository carries the license its metadata names, and a NOTICE that credits what the shipped models
were trained from."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_license_file_matches_the_package_metadata():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert declared == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole license, not a stub


def test_notice_credits_every_shipped_package_and_its_sources():
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    shipped = sorted(p.name for p in (ROOT / "serving" / "shipped").iterdir() if (p / "tagsmith.json").is_file())
    assert shipped, "no shipped packages found"
    for name in shipped:
        assert f"serving/shipped/{name}" in notice, name
    # what the cards name as data and base models, with their licenses and the citation OLID asks for
    for needle in ("NiuTrans/Classical-Modern", "MIT License", "all-MiniLM-L6-v2", "Apache License 2.0",
                   "OLID", "Zampieri", "chinese-poetry"):
        assert needle in notice, needle
