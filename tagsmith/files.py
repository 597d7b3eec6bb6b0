"""Writing files so that a reader never sees half of one, and the commit a result was made from."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> None:
    """``text`` to ``path`` through ``PATH.tmp`` and a rename: a reader sees the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json_atomic(path: str | Path, value, default=None) -> None:
    """``value`` as indented UTF-8 JSON, written atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(value, ensure_ascii=False, indent=2, default=default))


def current_umask() -> int:
    """The process's file-creation mask (``os.umask`` can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def git_commit() -> str | None:
    """The commit of the tagsmith checkout this code runs from; None outside git (an installed package)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
