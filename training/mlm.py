"""Masked-LM continued pretraining (domain adaptation), scored before and after on held-out text.

Evaluation masks the held-out split ONCE with a fixed seed, so "before" and "after" are scored on exactly
the same masked positions: perplexity = exp(mean cross-entropy over masked tokens), and top-1 / top-5
accuracy of the original token among the model's predictions there.
"""

from __future__ import annotations

import functools
import math
import random
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, BertForMaskedLM, DataCollatorForLanguageModeling
from transformers.modeling_outputs import MaskedLMOutput

from tagsmith.config import ExperimentConfig
from tagsmith.convert import to_script
from tagsmith.records import DataValidationError, Problem, validate_file
from tagsmith.tasks import get_task
from training import runner
from training.datasets import ListDataset
from training.model import scratch_bert_config
from training.run import TaskRun
from training.tokenizer import load_tokenizer, resolve_model_path

log = runner.log


def read_texts(config: ExperimentConfig) -> tuple[list[str], list[str]]:
    """(train texts, held-out texts): data.files (+ data.train) for training, data.validation or a seeded
    fraction (options.validation_fraction) of the documents held out."""
    task = get_task("mlm")
    problems: list[Problem] = []
    texts: list[str] = []
    files = list(config.data.files) + ([config.data.train] if config.data.train else [])
    if not files:
        raise runner.RunDirError(f"{config.name}: mlm needs data.files (a list of .txt / JSONL files) or data.train")

    def load(path):
        parsed = validate_file(path, task)
        problems.extend(parsed.problems)
        return [to_script(r["text"], config.data.script) for r in parsed.records if isinstance(r, dict) and isinstance(r.get("text"), str)]

    for path in files:
        texts.extend(load(path))
    held_out = load(config.data.validation) if config.data.validation else []
    if problems:
        raise DataValidationError(problems)
    if not held_out:
        fraction = float(config.options.get("validation_fraction", 0.05))
        order = list(range(len(texts)))
        random.Random(config.seed).shuffle(order)
        cut = max(1, int(len(texts) * fraction))
        held = set(order[:cut])
        held_out = [texts[i] for i in sorted(held)]
        texts = [t for i, t in enumerate(texts) if i not in held]
    seen = set(texts)
    leaked = sum(t in seen for t in held_out)
    if leaked:
        held_out = [t for t in held_out if t not in seen]
        log.info("removed %d held-out texts that also occur in the training files", leaked)
    return texts, held_out


CHUNK_TEXTS = 5000  # documents a tokenizer call cuts into blocks


def chunk(texts: list[str], tokenizer, max_length: int, limit: int = 0, seed: int = 42, progress: bool = False,
          what: str = "texts") -> list[dict]:
    """Tokenize each document and cut it into blocks of at most max_length tokens (nothing is dropped).

    With a ``limit``, documents are taken in a seeded random order until that many blocks exist, so a quick
    config does not tokenize a whole 24M-character corpus first. With ``progress``, a bar on stderr counts the
    documents (none when one tokenizer call takes them all); with a ``limit`` it may stop short of the total.
    """
    from tqdm.auto import tqdm

    order = list(range(len(texts)))
    if limit:
        random.Random(seed).shuffle(order)
    blocks: list[dict] = []
    with tqdm(total=len(order), desc=f"cutting {what} into blocks of {max_length} tokens", unit=" texts",
              unit_scale=True, mininterval=2, disable=not progress or len(order) <= CHUNK_TEXTS) as bar:
        for start in range(0, len(order), CHUNK_TEXTS):
            batch = [texts[i] for i in order[start:start + CHUNK_TEXTS]]
            encoded = tokenizer(batch, truncation=True, max_length=max_length, return_overflowing_tokens=True,
                                stride=0, return_special_tokens_mask=True)
            blocks.extend({"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                           "special_tokens_mask": encoded["special_tokens_mask"][i]}
                          for i in range(len(encoded["input_ids"])))
            bar.update(len(batch))
            bar.set_postfix_str(f"{len(blocks)} blocks", refresh=False)
            if limit and len(blocks) >= limit:
                return blocks[:limit]
    return blocks


def use_whole_word_mask(config: ExperimentConfig, tokenizer, texts: list[str]) -> bool:
    """Whole-word masking where the tokenizer has words: WordPiece continuation pieces on spaced text."""
    setting = config.options.get("whole_word_mask", "auto")
    if setting != "auto":
        return bool(setting)
    has_pieces = any(token.startswith("##") for token in list(tokenizer.get_vocab())[:50000])
    sample = "".join(texts[:200])
    return has_pieces and sample.count(" ") > 0.05 * max(len(sample), 1)


@torch.inference_mode()
def masked_lm_scores(model, tokenizer, blocks: list[dict], mlm_probability: float, seed: int, batch_size: int = 32) -> dict:
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, mask_replace_prob=1.0,
                                               random_replace_prob=0.0, seed=seed)
    model.eval()
    device = next(model.parameters()).device
    total_loss, total, top1, top5 = 0.0, 0, 0, 0
    for start in range(0, len(blocks), batch_size):
        batch = collator([dict(b) for b in blocks[start:start + batch_size]])
        labels = batch.pop("labels").to(device)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        masked = labels != -100
        if not masked.any():
            continue
        picked, gold = logits[masked].float(), labels[masked]
        total_loss += torch.nn.functional.cross_entropy(picked, gold, reduction="sum").item()
        best5 = picked.topk(min(5, picked.shape[-1]), dim=-1).indices
        top1 += (best5[:, 0] == gold).sum().item()
        top5 += (best5 == gold[:, None]).any(-1).sum().item()
        total += int(masked.sum())
    loss = total_loss / max(total, 1)
    return {"perplexity": math.exp(min(loss, 50)), "loss": loss, "top1_accuracy": top1 / max(total, 1),
            "top5_accuracy": top5 / max(total, 1), "masked_tokens": total}


def training_collator(tokenizer, probability: float, whole_word: bool, seed: int):
    # Whole-word masking always replaces with [MASK]; transformers 4.57 would otherwise say so through a
    # broken warnings.warn call (a str as the category) that raises TypeError.
    replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word else {}
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, whole_word_mask=whole_word,
                                               seed=seed, **replace)
    return PadOffsets(collator) if whole_word else collator


class PadOffsets:
    """Pads ``offset_mapping`` to the longest block of the batch before the whole-word collator runs.

    transformers 4.57's whole-word masking reads character offsets, but ``tokenizer.pad`` pads only the token
    fields, so a batch of blocks of different lengths (short sentences, the last block of a text) fails to
    become a tensor. Padding positions get (0, 0) and are special tokens (``tokenizer.pad`` pads
    ``special_tokens_mask`` with 1), so they are never masked."""

    def __init__(self, collator: DataCollatorForLanguageModeling):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        longest = max(len(e["input_ids"]) for e in examples)
        padded = []
        for e in examples:
            offsets = [tuple(pair) for pair in e["offset_mapping"]]
            padded.append({**e, "offset_mapping": offsets + [(0, 0)] * (longest - len(offsets))})
        return self.collator(padded)


def build_model(config: ExperimentConfig, tokenizer) -> tuple[torch.nn.Module, list[str]]:
    """The model, and the names of the masked-LM head weights it did not find (newly initialised) in the checkpoint.

    A checkpoint without a masked-LM head (a sentence-embedding model such as all-MiniLM-L6-v2) loads with a random
    head: those weights are reported so that :func:`warm_up_head` can train them before the encoder is touched.
    """
    if config.model.name_or_path:
        model, info = AutoModelForMaskedLM.from_pretrained(resolve_model_path(config.model.name_or_path),
                                                           output_loading_info=True)
        return model, sorted(k for k in info.get("missing_keys", []) if k.split(".")[0] in ("cls", "lm_head"))
    return BertForMaskedLM(scratch_bert_config(config, tokenizer)), []


def head_and_base(model) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not isinstance(head, torch.nn.Module) or not isinstance(base, torch.nn.Module):
        return None, None
    return head, base


def warm_up_head(model, tokenizer, blocks: list[dict], collator, steps: int, learning_rate: float, batch_size: int,
                 seed: int, progress: bool = True, bf16: bool = False) -> dict:
    """Train only a newly initialised masked-LM head, the encoder frozen, before adaptation starts.

    Adapting an encoder through a random head sends large, meaningless gradients into the pretrained weights
    (and, with a decoder tied to the word embeddings, into the embeddings) for the first hundreds of steps:
    measured here, finance sentiment fine-tuned from such an adapted MiniLM scored lower than from the original.
    The head is fitted first on the encoder's frozen output, the standard remedy (as in linear-probe-then-
    fine-tune). The decoder matrix tied to the embeddings stays frozen; the transform and the output bias learn.
    Every process of a torchrun job runs the same seeded steps, so the heads stay identical without communication.
    It runs where the model is (the caller moves it to the training device first) and, with ``bf16``, the frozen
    encoder's forward pass runs under bf16 autocast like the Trainer's steps; the head and its loss stay fp32.
    Returns ``{"steps", "loss_first", "loss_last", "seconds"}``.
    """
    import time

    from tqdm.auto import tqdm

    head, base = head_and_base(model)
    if head is None or steps <= 0:
        return {"steps": 0}
    frozen = {id(p) for p in base.parameters()}
    trainable = [p for p in head.parameters() if id(p) not in frozen]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    order = random.Random(seed)
    model.train()
    device = next(model.parameters()).device
    started, losses = time.time(), []
    for _ in tqdm(range(steps), desc="warming up the new masked-LM head (encoder frozen)", disable=not progress):
        batch = collator([dict(blocks[order.randrange(len(blocks))]) for _ in range(batch_size)])
        labels = batch.pop("labels").to(device)
        masked = labels != -100
        if not masked.any():
            continue
        inputs = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            hidden = base(**inputs)[0][masked].float()
        loss = torch.nn.functional.cross_entropy(head(hidden).float(), labels[masked])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.zero_grad(set_to_none=True)
    return {"steps": steps, "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "seconds": round(time.time() - started, 1)}


def score_masked_positions_only(model) -> bool:
    """Make training forward passes score the vocabulary only at the masked positions.

    A masked-LM head maps every position to vocabulary logits, and the loss then ignores the ~85% that were not
    masked: for a small encoder with a big vocabulary (a char BERT with 10k characters, MiniLM with 30k
    wordpieces) that projection and its softmax cost as much as the encoder. Gathering the masked positions
    first (as fairseq and Megatron do) gives the same loss and gradients for a fraction of the work. The
    patch is on this instance's ``forward`` (DDP calls it too), only in training mode with labels; evaluation,
    saving and loading see the stock model. Models without a BERT/RoBERTa-style head are left alone (False).
    """
    head, base = head_and_base(model)
    if head is None:
        return False
    stock_forward = model.forward

    @functools.wraps(stock_forward)
    def forward(input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if labels is None or not model.training or kwargs.get("return_dict") is False:
            return stock_forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                 labels=labels, **kwargs)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = base(input_ids, attention_mask=attention_mask, **extra, **kwargs)[0]
        masked = labels != -100
        scores = head(hidden[masked])
        if masked.any():
            loss = torch.nn.functional.cross_entropy(scores.float(), labels[masked])
        else:  # nothing masked in this batch (tiny batches): no signal, but keep the graph for DDP
            loss = scores.sum() * 0.0 + hidden.sum() * 0.0
        return MaskedLMOutput(loss=loss, logits=scores)

    model.forward = forward
    return True


class MlmRun(TaskRun):
    """Masked-LM adaptation: blocks of tokens, an optional warm-up of a new head, scores before and after on the
    same masked positions of the held-out text."""

    @property
    def metric(self) -> str:
        return "loss"

    @property
    def scratch_tokenizer(self) -> str:
        return self.config.options.get("scratch_tokenizer", "char")

    def load(self) -> None:
        self.train_texts, self.held_out = read_texts(self.config)
        if not self.held_out:
            raise runner.RunDirError(f"{self.config.name}: no held-out text to evaluate on")

    def tokenizer_texts(self) -> list[str]:
        return self.train_texts

    def prepare(self) -> None:
        config, tokenizer = self.config, self.tokenizer
        if tokenizer.mask_token is None:
            raise runner.RunDirError(f"{config.model.name_or_path}: the tokenizer has no mask token")
        max_length = min(config.max_length, getattr(tokenizer, "model_max_length", config.max_length) or config.max_length)
        progress = runner.is_main_process()
        self.train_blocks = chunk(self.train_texts, tokenizer, max_length, config.data.max_train_records, config.seed,
                                  progress=progress, what="training texts")
        self.eval_blocks = chunk(self.held_out, tokenizer, max_length, config.data.max_eval_records, config.seed,
                                 progress=progress, what="held-out texts")
        log.info("run %s: %d training texts -> %d blocks, %d held-out texts -> %d blocks (max_length %d)",
                 config.name, len(self.train_texts), len(self.train_blocks), len(self.held_out), len(self.eval_blocks),
                 max_length)
        self.probability = float(config.options.get("mlm_probability", 0.15))
        self.whole_word = use_whole_word_mask(config, tokenizer, self.train_texts)

    def build_model(self):
        model, self.new_head = build_model(self.config, self.tokenizer)
        return model

    def describe_model(self, model) -> str:
        return f"{super().describe_model(model)}, whole-word masking {self.whole_word}"

    def argument_defaults(self) -> dict:
        # the collator consumes offset_mapping / special_tokens_mask (whole-word masking): the Trainer must pass them on
        return {"greater_is_better": False, "remove_unused_columns": False}

    def before_training(self, model, args) -> None:
        config, tokenizer, new_head = self.config, self.tokenizer, self.new_head
        self.collator = training_collator(tokenizer, self.probability, self.whole_word, config.seed)
        self.train_dataset = ListDataset(_with_offsets(self.train_blocks, tokenizer, self.whole_word))
        model.to(args.device)  # "before" and the head warm-up run on the training device (a GPU on a cluster)
        self.warmup = {"steps": 0}
        self.before_warmup = None
        # options.head_warmup_steps: "auto" = 200 steps when the checkpoint has no masked-LM head, else none
        steps = config.options.get("head_warmup_steps", "auto")
        steps = (200 if new_head else 0) if steps == "auto" else int(steps)
        # a resumed run warms up again (seeded: the same head, so "before" is the same); its checkpoint then replaces it
        if steps:
            if new_head:
                log.info("%s has no masked-LM head (%d weights newly initialised: %s, ...)", config.model.name_or_path,
                         len(new_head), new_head[0])
            self.before_warmup = masked_lm_scores(model, tokenizer, self.eval_blocks, self.probability, config.seed)
            log.info("before adaptation, random head: %s", self.before_warmup)
            self.warmup = warm_up_head(model, tokenizer, self.train_dataset.items, self.collator, steps,
                                       float(config.options.get("head_warmup_learning_rate", 1e-3)),
                                       config.trainer.get("per_device_train_batch_size", 16), config.seed,
                                       progress=runner.is_main_process(), bf16=bool(args.bf16))
            log.info("head warm-up: %s", self.warmup)
        self.before = masked_lm_scores(model, tokenizer, self.eval_blocks, self.probability, config.seed)
        log.info("before adaptation%s: %s", " (original encoder, warmed-up head)" if self.warmup["steps"] else "",
                 self.before)
        if config.options.get("score_masked_only", True) and score_masked_positions_only(model):
            log.info("training scores the vocabulary at masked positions only")

    def trainer_parts(self, model, args) -> dict:
        return dict(data_collator=self.collator, train_dataset=self.train_dataset,
                    eval_dataset=ListDataset(_with_offsets(self.eval_blocks, self.tokenizer, self.whole_word)))

    def predict(self, trainer):
        return None  # scored on rank 0 alone, in results()

    def results(self, trainer, predictions, train_seconds):
        config, before = self.config, self.before
        after = self.after = masked_lm_scores(trainer.model, self.tokenizer, self.eval_blocks, self.probability,
                                              config.seed)
        log.info("after adaptation: %s", after)
        tokens = sum(len(b["input_ids"]) for b in self.train_blocks) * (trainer.state.epoch or 0)
        results = {
            "task": "mlm", "run": config.name, "global_step": trainer.state.global_step,
            "train_seconds": round(train_seconds, 1),
            "train_tokens_per_second": round(tokens / max(train_seconds, 1e-9), 1), "whole_word_mask": self.whole_word,
            "mlm_probability": self.probability, "held_out_texts": len(self.held_out),
            "before": before, "after": after,
            "perplexity_change": after["perplexity"] - before["perplexity"],
            "new_head_weights": self.new_head, "head_warmup": self.warmup,
            **({"before_head_warmup": self.before_warmup} if self.before_warmup is not None else {}),
        }
        return results, dict(labels=[], mask_token=self.tokenizer.mask_token, metrics={"before": before, "after": after})

    def finished(self, best: Path, results: dict) -> None:
        before, after = self.before, self.after
        log.info("done: perplexity %.2f -> %.2f, top-5 %.3f -> %.3f; best model in %s", before["perplexity"],
                 after["perplexity"], before["top5_accuracy"], after["top5_accuracy"], best)



def _with_offsets(blocks: list[dict], tokenizer, whole_word: bool) -> list[dict]:
    if not whole_word:
        return blocks
    # whole-word masking finds word starts from character offsets; recover them per block
    out = []
    for block in blocks:
        tokens = tokenizer.convert_ids_to_tokens(block["input_ids"])
        offsets, position = [], 0
        for token, special in zip(tokens, block["special_tokens_mask"]):
            if special:
                offsets.append((0, 0))
                continue
            piece = token[2:] if token.startswith("##") else token
            start = position if token.startswith("##") else position + 1  # a gap before each new word
            offsets.append((start, start + len(piece)))
            position = start + len(piece)
        out.append({**block, "offset_mapping": offsets})
    return out


def top_k_fills(path: str | Path, text: str, k: int = 5) -> list[list[tuple[str, float]]]:
    """For each [MASK] in the text, the k most likely tokens with probabilities (PyTorch reference)."""
    from tagsmith.convert import to_script as convert
    from training.predict import read_manifest

    manifest = read_manifest(Path(path))
    tokenizer = load_tokenizer(path)
    model = AutoModelForMaskedLM.from_pretrained(str(path)).eval()
    if tokenizer.mask_token not in text:
        raise ValueError(f"the text has no {tokenizer.mask_token} to fill")
    encoded = tokenizer(convert(text, manifest.get("script", "keep")), return_tensors="pt", truncation=True,
                        max_length=manifest["max_length"])
    with torch.inference_mode():
        logits = model(**encoded).logits[0]
    fills = []
    for position in (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist():
        probs = logits[position].softmax(-1)
        values, ids = probs.topk(k)
        fills.append([(tokenizer.convert_ids_to_tokens(int(i)), round(float(v), 4)) for v, i in zip(values, ids)])
    return fills

