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
