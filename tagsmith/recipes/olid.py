"""Data recipe: OLID / OffensEval 2019 subtask A as a binary toxicity dataset.

Two sources:

* a local copy of ``olid-training-v1.0.tsv`` (``local_copy=``, CLI ``--local PATH``): read with
  :func:`tagsmith.tabular.read_olid`, split stratified into train/validation/test with a fixed
  seed; texts that occur in an earlier split are removed from later ones (train > validation >
  test) so no exact duplicate crosses a split boundary;
* otherwise the hub dataset ``cardiffnlp/tweet_eval`` (config ``offensive``), whose official
  train/validation/test splits are kept as they are (label 1 = offensive -> ``"toxic"``).

Output in ``out_dir``: ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (records
``{"id"?, "text", "label"}``, UTF-8, ``ensure_ascii=False``) and ``meta.json``; every file is
written atomically (temp file + rename) and ``meta.json`` last, so its presence means the split
is complete. A second call with the same parameters (and the same source file content) reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from tagsmith.recipes import RecipeError
from tagsmith.tabular import read_olid
from tagsmith.tasks import TOXICITY

__all__ = ["RecipeError", "fetch_olid", "OLID_FILENAME", "HUB_DATASET", "HUB_CONFIG", "SPLITS"]

OLID_FILENAME = "olid-training-v1.0.tsv"
HUB_DATASET = "cardiffnlp/tweet_eval"
HUB_CONFIG = "offensive"
SPLITS = ("train", "validation", "test")
_RECIPE_VERSION = 1




def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory + os.replace (normal umask permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _resolve_local(local_copy: Path) -> Path:
    p = Path(local_copy).expanduser()
    if p.is_dir():
        f = p / OLID_FILENAME
        if not f.is_file():
            raise RecipeError(f"{p}: directory does not contain {OLID_FILENAME}")
        return f.resolve()
    if p.is_file():
        return p.resolve()
    raise RecipeError(f"{p}: no such file or directory (expected {OLID_FILENAME} or a directory holding it)")


def _check_fractions(validation_fraction: float, test_fraction: float) -> None:
    for name, v in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not (0.0 <= float(v) < 1.0):
            raise ValueError(f"{name} must be in [0, 1), got {v}")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"validation_fraction + test_fraction must be < 1, got {validation_fraction} + {test_fraction}"
        )


def _split_local(records: list[dict], validation_fraction: float, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    labels = [r["label"] for r in records]
    n = len(records)
    # integer sizes of the whole set (not float fractions of the remainder, which round up)
    n_test = int(round(test_fraction * n))
    n_val = int(round(validation_fraction * n))
    idx = list(range(n))
    test_idx: list[int] = []
    if n_test > 0:
        idx, test_idx = train_test_split(idx, test_size=n_test, stratify=labels, random_state=seed, shuffle=True)
    val_idx: list[int] = []
    if n_val > 0:
        idx, val_idx = train_test_split(
            idx, test_size=n_val, stratify=[labels[i] for i in idx], random_state=seed, shuffle=True
        )
    return {
        "train": [records[i] for i in idx],
        "validation": [records[i] for i in val_idx],
        "test": [records[i] for i in test_idx],
    }


def _drop_cross_split_duplicates(splits: dict[str, list[dict]]) -> dict[str, int]:
    """Remove from each split the texts already present in an earlier split (in SPLITS order)."""
    seen: set[str] = set()
    removed: dict[str, int] = {}
    for name in SPLITS:
        kept = [r for r in splits[name] if r["text"] not in seen]
        removed[name] = len(splits[name]) - len(kept)
        splits[name] = kept
        seen.update(r["text"] for r in kept)
    removed["total"] = sum(removed[s] for s in SPLITS)
    return removed


def _load_hub() -> dict[str, list[dict]]:
    try:
        import datasets  # lazy: only the train extra has it

        ds = datasets.load_dataset(HUB_DATASET, HUB_CONFIG)
        splits: dict[str, list[dict]] = {}
        for name in SPLITS:
            rows = []
            for i, ex in enumerate(ds[name]):
                text, label = ex["text"], int(ex["label"])
                if label not in (0, 1):
                    raise ValueError(f"{name} row {i}: label {label!r} is not 0/1")
                rows.append({"id": f"{name}-{i}", "text": text, "label": TOXICITY.labels[label]})
            splits[name] = rows
        return splits
    except Exception as exc:  # ImportError, connection errors, offline mode, schema drift...
        raise RecipeError(
            f"could not load {HUB_DATASET} ({HUB_CONFIG}) from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}). The hub is probably unreachable from this machine "
            f"(or the 'datasets' package is missing). Download OLID ({OLID_FILENAME}) yourself and "
            f"pass it as a local copy: --local PATH (the file, or a directory containing it); "
            f"from Python: fetch_olid(out_dir, local_copy=PATH)."
        ) from exc


def _counts(splits: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    out = {}
    for name in SPLITS:
        c = Counter(r["label"] for r in splits[name])
        out[name] = {lab: int(c.get(lab, 0)) for lab in TOXICITY.labels}
    return out


def fetch_olid(
    out_dir: Path,
    local_copy: Path | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
) -> dict:
    """Build the OLID toxicity dataset in ``out_dir`` and return its ``meta.json`` content.

    ``validation_fraction`` / ``test_fraction`` / ``seed`` apply to a local copy only (the hub
    dataset has official splits). Raises :class:`RecipeError` (a RuntimeError) when the hub is
    unreachable and no local copy was given, or when the local copy is missing.
    """
    out_dir = Path(out_dir)
    if local_copy is not None:
        _check_fractions(validation_fraction, test_fraction)
        src = _resolve_local(Path(local_copy))
        params: dict[str, Any] = {
            "recipe_version": _RECIPE_VERSION,
            "source": "local",
            "path": str(src),
            "sha256": _sha256(src),
            "unescape_quotes": True,
            "validation_fraction": float(validation_fraction),
            "test_fraction": float(test_fraction),
            "seed": int(seed),
        }
    else:
        params = {
            "recipe_version": _RECIPE_VERSION,
            "source": "hub",
            "dataset": HUB_DATASET,
            "config": HUB_CONFIG,
        }

    meta_path = out_dir / "meta.json"
    if meta_path.is_file() and all((out_dir / f"{s}.jsonl").is_file() for s in SPLITS):
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict) and old.get("params") == params:
            return old

    if local_copy is not None:
        records = read_olid(src, unescape_quotes=True)  # the file CSV-escapes 1,057 tweets
        try:
            splits = _split_local(records, validation_fraction, test_fraction, seed)
        except ValueError as exc:  # e.g. a split too small to hold every class
            raise RecipeError(
                f"{src}: cannot make stratified splits of {len(records)} records with "
                f"validation_fraction={validation_fraction}, test_fraction={test_fraction}: {exc}"
            ) from exc
        removed = _drop_cross_split_duplicates(splits)
        source = f"local:{src}"
        n_read = len(records)
    else:
        splits = _load_hub()
        removed = {s: 0 for s in SPLITS}
        removed["total"] = 0
        source = f"hub:{HUB_DATASET}/{HUB_CONFIG}"
        n_read = sum(len(v) for v in splits.values())

    for name in SPLITS:
        _atomic_write_text(out_dir / f"{name}.jsonl", _jsonl(splits[name]))

    meta = {
        "task": "toxicity",
        "dataset": "olid",
        "source": source,
        "labels": list(TOXICITY.labels),
        "records_read": n_read,
        "counts": _counts(splits),
        "sizes": {name: len(splits[name]) for name in SPLITS},
        "seed": int(seed) if local_copy is not None else None,
        "validation_fraction": float(validation_fraction) if local_copy is not None else None,
        "test_fraction": float(test_fraction) if local_copy is not None else None,
        "duplicates_removed": removed,
        "files": {name: f"{name}.jsonl" for name in SPLITS},
        "params": params,
    }
    _atomic_write_text(meta_path, json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
    return meta
