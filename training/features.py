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

from tagsmith.windows import (decode, first_token_logits, first_token_positions,  # noqa: F401 (decode re-exported)
                              merge_record_windows, merge_windows, window_spans)


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
        positions = first_token_positions(word_ids, end - start)
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
    values = [first_token_logits(windowed.first_tokens[k], logits[k]) for k in range(len(windowed.owners))]
    return merge_record_windows(windowed.owners, windowed.lengths, values)


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


class CharIdsUnavailable(ValueError):
    """The tokenizer does not give exactly one token per character: compact windows cannot be used."""


def char_token_ids(tokenizer, chars: np.ndarray) -> np.ndarray:
    """Token id of each code point in ``chars`` (uint32), for tokenizers that give one token per character.

    Each distinct character goes through the tokenizer once, as its own word (as :func:`encode_windows` sends
    it); a character that yields no token (private-use code points, control characters) gets -1 and, as in
    :func:`encode_windows`, no position in the window; one that yields several raises :class:`CharIdsUnavailable`."""
    unique, inverse = np.unique(chars, return_inverse=True)
    words = [[chr(int(c))] for c in unique]
    encoded = tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"] if words else []
    bad = [w[0] for w, ids in zip(words, encoded) if len(ids) > 1]
    if bad:
        raise CharIdsUnavailable(f"{len(bad)} characters map to several tokens (e.g. {bad[:5]!r})")
    table = np.asarray([ids[0] if ids else -1 for ids in encoded], dtype=np.int32)
    return table[inverse.reshape(-1)] if len(chars) else np.zeros(0, dtype=np.int32)


class CompactWindows(torch.utils.data.Dataset):
    """Training windows of a :class:`tagsmith.compact.TaggingCorpus`, built on demand.

    Item ``k`` is exactly what :func:`encode_windows` gives for the same window when the tokenizer maps each
    character to one token (:func:`char_token_ids`): ``[CLS] chars [SEP]``, the label on each character,
    -100 on the special tokens. ``records`` lists the record indices to window (with repeats for oversampling);
    windows are kept as three int arrays, so a corpus of tens of millions of characters stays small in memory.
    """

    def __init__(self, corpus, records: np.ndarray, tokenizer, max_length: int, overlap: int):
        self.ids = char_token_ids(tokenizer, corpus.chars)
        self.labels = corpus.labels
        owners, starts, ends = [], [], []
        offsets = corpus.offsets
        for index in records:
            base = int(offsets[index])
            for start, end in window_spans(int(offsets[index + 1]) - base, max_length - 2, overlap):
                owners.append(index)
                starts.append(base + start)
                ends.append(base + end)
        self.owner = np.asarray(owners, dtype=np.int64)
        self.start = np.asarray(starts, dtype=np.int64)
        self.end = np.asarray(ends, dtype=np.int64)
        missing = np.concatenate([[0], np.cumsum(self.ids < 0)])  # characters without a token before each position
        self.tokens = (self.end - self.start) - (missing[self.end] - missing[self.start])
        self.cls, self.sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.with_token_types = "token_type_ids" in tokenizer.model_input_names

    def __len__(self) -> int:
        return len(self.start)

    @property
    def lengths(self) -> list[int]:
        """Tokens per window (for length-grouped batches)."""
        return (self.tokens + 2).tolist()

    def labelled_per_window(self) -> float:
        return float(self.tokens.mean()) if len(self) else 0.0

    def __getitem__(self, k: int) -> dict:
        ids, labels = self.ids[self.start[k]:self.end[k]], self.labels[self.start[k]:self.end[k]]
        if self.tokens[k] != len(ids):
            present = ids >= 0
            ids, labels = ids[present], labels[present]
        n = len(ids) + 2
        item = {"input_ids": [self.cls, *ids.tolist(), self.sep]}
        if self.with_token_types:
            item["token_type_ids"] = [0] * n
        item["attention_mask"] = [1] * n
        item["labels"] = [-100, *labels.tolist(), -100]
        return item
