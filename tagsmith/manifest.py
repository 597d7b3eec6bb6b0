"""``tagsmith.json``: the manifest of a run's ``best/`` checkpoint and of a model package, read and written in one
place (training, export and serving each refuse a bad one with their own error type)."""

from __future__ import annotations

import json
from pathlib import Path

from tagsmith.files import write_json_atomic

MANIFEST = "tagsmith.json"
PACKAGE_FORMAT = "tagsmith-model-package"


class ManifestError(ValueError):
    """A manifest that is missing or cannot be read (the default error of the readers here)."""


def read_json_object(path: str | Path, error: type[Exception] = ManifestError, missing: str = "{folder}: no {name}",
                     corrupt: str = "corrupt JSON", not_object: str = "expected a JSON object") -> dict:
    """The JSON object in ``path``; ``error`` otherwise, with ``missing`` (formatted with ``folder``, ``name``,
    ``path``) when there is no file, ``PATH: corrupt: reason`` when it does not parse, ``PATH: not_object`` when
    it holds something else than an object."""
    path = Path(path)
    if not path.is_file():
        raise error(missing.format(folder=path.parent, name=path.name, path=path))
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise error(f"{path}: {corrupt}: {problem}") from None
    if not isinstance(value, dict):
        raise error(f"{path}: {not_object}")
    return value


def read_manifest(folder: str | Path, error: type[Exception] = ManifestError,
                  missing: str = "{folder}: no " + MANIFEST, not_object: str = "expected a JSON object") -> dict:
    """``FOLDER/tagsmith.json`` (see :func:`read_json_object`; a parse error reads ``corrupt manifest``)."""
    return read_json_object(Path(folder) / MANIFEST, error, missing, "corrupt manifest", not_object)


def previous_card(folder: str | Path) -> dict | None:
    """The ``card`` record of the manifest already in ``folder`` (None when there is none or it is unreadable)."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8")).get("card")
    except (OSError, ValueError, AttributeError):
        return None


def is_package(folder: str | Path) -> bool:
    """Whether ``folder`` holds a model package's manifest."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8")).get("format") == PACKAGE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_manifest(folder: str | Path, manifest: dict, default=None) -> None:
    """``FOLDER/tagsmith.json``, written atomically."""
    write_json_atomic(Path(folder) / MANIFEST, manifest, default=default)
