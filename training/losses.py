"""Class weights and the one class-weighted loss of every task (tagging, classification, distillation's hard part):
the Trainer's ``compute_loss_func``, a sum over the labelled items divided by the global batch's item count."""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import torch

WEIGHT_SCHEMES = ("balanced", "sqrt", "none")


def class_weights(labels: Sequence[str], label_names: Sequence[str], scheme: str = "balanced") -> list[float]:
    """Per-class loss weights, in ``label_names`` order.

    * ``"balanced"``: ``n_samples / (n_classes * count_c)`` (= sklearn ``compute_class_weight``)
    * ``"sqrt"``: the square root of the balanced weight (a milder correction)
    * ``"none"``: all 1.0

    A label not in ``label_names`` is a ValueError naming it; so is a class with no examples
    (whatever the scheme: it means the label set and the data disagree).
    """
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"unknown class-weight scheme {scheme!r}; expected one of {list(WEIGHT_SCHEMES)}")
    names = list(label_names)
    if not names:
        raise ValueError("label_names is empty")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"label_names has duplicates: {dup}")
    counts = Counter(labels)
    unknown = sorted((str(k) for k in counts if k not in set(names)))
    if unknown:
        shown = unknown[:10]
        more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise ValueError(f"labels not in label_names {names}: {shown}{more}")
    empty = [n for n in names if counts.get(n, 0) == 0]
    if empty:
        raise ValueError(
            f"class(es) {empty} have no examples among {sum(counts.values())} labels; "
            "cannot weight a class that never occurs - check the label set or the data split"
        )
    if scheme == "none":
        return [1.0] * len(names)
    n, k = sum(counts.values()), len(names)
    balanced = [n / (k * counts[c]) for c in names]
    if scheme == "sqrt":
        return [float(math.sqrt(w)) for w in balanced]
    return [float(w) for w in balanced]


def mean_one_weights(weights, counts) -> torch.Tensor:
    """Class ``weights`` rescaled so that the training items' mean weight is 1 (``counts[i]`` items of class ``i``).

    Balanced weights (``n / (k * n_c)``) already are when every class occurs; square-root weights, or balanced ones
    with a class absent from the training data, are not. With mean 1 the sum of the weights of a randomly drawn batch
    is, on average, its number of items: the normaliser :func:`weighted_loss` divides by."""
    weights = torch.as_tensor(weights, dtype=torch.float32)
    counts = torch.as_tensor(counts, dtype=torch.float64)
    mean = float((counts * weights.double()).sum() / counts.sum().clamp(min=1))
    return weights / mean if mean > 0 else weights


def labelled_items(labels: torch.Tensor, num_items_in_batch=None, expected_items: float | None = None):
    """The normaliser of a summed loss: see :func:`weighted_loss`."""
    if expected_items is not None and torch.is_grad_enabled():
        return expected_items
    if num_items_in_batch is None:
        return (labels != -100).sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        return num_items_in_batch.to(labels.device).clamp(min=1)
    return max(num_items_in_batch, 1)


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Class-weighted cross-entropy summed over the labelled items (``-100`` = no label), in fp32."""
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
        weight=weights.to(logits.device) if weights is not None else None, ignore_index=-100, reduction="sum")


def weighted_loss(weights: torch.Tensor | None = None, expected_items: float | None = None):
    """The Trainer's ``compute_loss_func`` for every classifier and tagger: cross-entropy of sequence logits
    ``(batch, labels)`` or token logits ``(batch, tokens, labels)``, class-weighted when ``weights`` is given,
    summed over the labelled items and divided by the number of labelled items of the whole global batch.

    **Why that normaliser.** transformers 4.57 treats a ``compute_loss_func`` as a loss already divided by the items of
    the global batch: it passes ``num_items_in_batch`` (the labelled items of all gradient-accumulation micro-batches,
    summed over the processes when ``average_tokens_across_devices``, the default), does not divide the step's loss by
    the accumulation steps, and multiplies it by the process count (DDP then averages the gradients). A per-batch mean
    is therefore counted once per micro-batch and once per process: its scale, and with it what gradient clipping
    does, changed with the cluster layout. Summed and divided by ``num_items_in_batch``, every item weighs the same in
    batch 32, 16 x accumulation 2, or 2 processes x 16 (``tests/test_loss_scale.py``).

    **The class weights.** torch's weighted mean (``cross_entropy(weight=...)``) divides by the sum of the weights of
    the batch's items. Its global counterpart, the weights' sum over the global batch, would take a pass over every
    micro-batch's labels and a gather before the first backward; more to the point, dividing by any batch's own weight
    sum makes an item's gradient depend on its batch-mates: with 1% positives and balanced weights (50 and 0.5), one
    positive in a batch of 32 multiplies the normaliser by four, so it shrinks its own gradient and that of the 31
    others, which undoes much of the weighting (and the step is a ratio of sums, a biased estimate of the weighted
    mean over the data). Here the weights are rescaled to a mean of 1 over the training items
    (:func:`mean_one_weights`), so the item count is the expected weight sum of a randomly drawn batch: the loss is on
    the scale of the weighted mean, each item's weight is ``w_class / items`` whatever else is in its batch, and a step
    is an unbiased estimate of the weighted mean over the training data. It needs no communication beyond the count
    the Trainer gathers anyway.

    ``expected_items`` (tagging with length-grouped batches, ``trainer.group_by_length``): a training step divides by
    this constant instead, the labelled tokens a randomly drawn batch holds on average, in ``num_items_in_batch``'s
    units (:func:`training.tagging.expected_batch_items`). A batch of short windows holds a tenth of the tokens of a
    batch of long ones; dividing each batch by its own count would weigh every token of a short window (mostly verse
    lines) ten times as much as a token of a long one (mostly prose). With the constant each token weighs what it
    weighs in random batches. Evaluation (no gradient) keeps the batch's count, so eval_loss stays a mean; a direct call
    without ``num_items_in_batch`` divides by its own batch's labelled items.
    """

    def compute(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return summed_cross_entropy(logits, labels, weights) / labelled_items(labels, num_items_in_batch, expected_items)

    return compute
