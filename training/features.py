"""Tagging records -> windowed model inputs, and window logits -> per-character logits.

Each character is given to the tokenizer as its own word, so ``word_ids`` map tokens back to characters;
labels go on a character's first token, -100 elsewhere (special tokens, continuation pieces). Characters
that produce no token (none do after conversion, but a user's text may hold odd code points) get zero logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from tagsmith.windows import decode, merge_windows, window_spans  # noqa: F401 (decode re-exported)


@dataclass
class Windowed:
    features: list[dict]  # input_ids, attention_mask, (token_type_ids), labels
    owners: list[tuple[int, int, int]]  # (record index, start, end) per feature
    first_tokens: list[list[int]]  # token position of each character of the window (-1 = no token)
    lengths: list[int]  # characters per record


def encode_windows(
    texts: Sequence[str],
    tokenizer,
    max_length: int,
    overlap: int,
    label_ids: Sequence[Sequence[int]] | None = None,
) -> Windowed:
    chunks, owners = [], []
    for index, text in enumerate(texts):
        for start, end in window_spans(len(text), max_length - 2, overlap):
            chunks.append(list(text[start:end]))
            owners.append((index, start, end))
    encoded = tokenizer(chunks, is_split_into_words=True, truncation=True, max_length=max_length)
    features, first_tokens = [], []
    for k, (index, start, end) in enumerate(owners):
        word_ids = encoded.word_ids(k)
        positions = [-1] * (end - start)
        for position, word in enumerate(word_ids):
            if word is not None and positions[word] == -1:
                positions[word] = position
        feature = {key: encoded[key][k] for key in encoded.keys()}
        if label_ids is not None:
            labels = [-100] * len(word_ids)
            for char, position in enumerate(positions):
                if position >= 0:
                    labels[position] = label_ids[index][start + char]
            feature["labels"] = labels
        features.append(feature)
        first_tokens.append(positions)
    return Windowed(features, owners, first_tokens, [len(t) for t in texts])


def merge_logits(windowed: Windowed, logits: np.ndarray) -> list[np.ndarray]:
    """Per-window token logits (n_windows, seq, n_labels) -> per-record character logits."""
    per_record: dict[int, list] = {}
    for k, (index, start, end) in enumerate(windowed.owners):
        positions = np.asarray(windowed.first_tokens[k], dtype=int)
        values = np.zeros((end - start, logits.shape[-1]), dtype=np.float32)
        present = positions >= 0
        values[present] = logits[k, positions[present]]
        per_record.setdefault(index, []).append(((start, end), values))
    merged = []
    for index, length in enumerate(windowed.lengths):
        parts = per_record[index]
        merged.append(merge_windows(length, [span for span, _ in parts], [v for _, v in parts]))
    return merged


class CharDropoutCollator:
    """Character dropout for training batches: each labelled character's token becomes the unknown token with
    probability ``p`` (its label stays). Word dropout (Lample et al. 2016, replacing words by UNK) in character form:
    the model cannot lean on having seen a name or a phrase, and learns to place marks from the frame around it
    (``…曰``, ``…卒``), which is what carries over to books it never saw. Special tokens and padding are never
    replaced; evaluation and prediction use the plain collator."""

    def __init__(self, base, unk_token_id: int, p: float):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"char_dropout must be in [0, 1), got {p!r}")
        self.base, self.unk_token_id, self.p = base, int(unk_token_id), float(p)

    def __call__(self, features):
        batch = self.base(features)
        if self.p > 0:
            labelled = batch["labels"] != -100
            dropped = (torch.rand(labelled.shape) < self.p) & labelled
            batch["input_ids"] = batch["input_ids"].masked_fill(dropped, self.unk_token_id)
        return batch
