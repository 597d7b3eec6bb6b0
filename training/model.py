"""Model building: any Hugging Face encoder + a linear or multi-kernel CNN token-classification head.

The CNN head follows the SikuBERT sentence-segmentation scripts: parallel 1-D convolutions with kernel
sizes 3/5/7 over the encoder's hidden states, ReLU, concatenation, dropout, then a linear classifier. It is a
``PreTrainedModel`` whose config is the encoder's own config plus ``tagsmith_head`` / ``cnn_*`` attributes,
so ``save_pretrained`` / ``from_pretrained`` round-trip it like any transformers model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput


class CheckpointError(RuntimeError):
    pass


def _encoder_from_config(config: PretrainedConfig) -> nn.Module:
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler take no such argument
        return AutoModel.from_config(config)


class EncoderCnnForTokenClassification(PreTrainedModel):
    config_class = PretrainedConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.encoder = _encoder_from_config(config)
        hidden = config.hidden_size
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, config.cnn_filters, kernel, padding=kernel // 2) for kernel in config.cnn_kernels
        )
        self.dropout = nn.Dropout(config.cnn_dropout)
        self.classifier = nn.Linear(config.cnn_filters * len(config.cnn_kernels), config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**encoder_inputs).last_hidden_state  # (batch, seq, hidden)
        if attention_mask is not None:  # keep padding out of the convolution windows
            hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
        features = hidden.transpose(1, 2)
        convolved = torch.cat([torch.relu(conv(features)) for conv in self.convs], dim=1).transpose(1, 2)
        logits = self.classifier(self.dropout(convolved))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits)


def _label_maps(labels: list[str]) -> dict:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}


def _keeps_head(saved: PretrainedConfig, labels: list[str], head) -> bool:
    """Whether a saved CNN-head model can go on training as it is: same labels, same convolutions."""
    return (head.type == "cnn" and [saved.id2label[i] for i in range(saved.num_labels)] == list(labels)
            and list(saved.cnn_kernels) == list(head.cnn_kernels) and saved.cnn_filters == head.cnn_filters)


def scratch_bert_config(config, tokenizer, **extra) -> PretrainedConfig:
    """The BERT config of a model trained from scratch (``model.scratch``), for ``tokenizer``'s vocabulary; ``extra``
    adds keys (label maps). Position embeddings cover at least ``max_length``."""
    from transformers import BertConfig

    s = config.model.scratch
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=s.hidden_size,
        num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads,
        intermediate_size=s.intermediate_size,
        max_position_embeddings=max(s.max_position_embeddings, config.max_length),
        hidden_dropout_prob=s.hidden_dropout_prob,
        attention_probs_dropout_prob=s.attention_probs_dropout_prob,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def build_tagging_model(labels: list[str], head, encoder_config: PretrainedConfig | None = None, pretrained: str | None = None):
    """A new tagging model: from a pretrained encoder (hub id / path) or from ``encoder_config`` (scratch).

    ``pretrained`` may be any encoder checkpoint, an MLM run, or a tagging run's ``best/`` (linear or CNN head). A
    tagging head is kept when its labels (and for CNN its shape) are the new model's; otherwise a new one is made."""
    # the encoder of a tagsmith CNN-head checkpoint: its weights sit under ``encoder.``, which AutoModel cannot read,
    # so that checkpoint is loaded as the tagsmith model it is
    encoder_state = None
    if pretrained is not None:
        config = AutoConfig.from_pretrained(pretrained, **_label_maps(labels))
        if getattr(config, "tagsmith_head", None) == "cnn":
            saved = load_tagging_model(pretrained)
            if _keeps_head(saved.config, labels, head):  # the whole model goes on training, with the new dropout
                saved.config.cnn_dropout = saved.dropout.p = head.cnn_dropout
                return saved
            encoder_state = saved.encoder.state_dict()
    else:
        config = encoder_config
        for key, value in _label_maps(labels).items():
            setattr(config, key, value)
    config.tagsmith_head = head.type
    if head.type == "linear":
        if pretrained is not None and encoder_state is None:
            # another task's classifier (segmentation -> punctuation) has another shape: a new one is made
            return AutoModelForTokenClassification.from_pretrained(pretrained, config=config, ignore_mismatched_sizes=True)
        model = AutoModelForTokenClassification.from_config(config)
        if encoder_state is not None:
            model.base_model.load_state_dict(encoder_state)
        return model
    config.cnn_kernels = list(head.cnn_kernels)
    config.cnn_filters = head.cnn_filters
    config.cnn_dropout = head.cnn_dropout
    config.architectures = [EncoderCnnForTokenClassification.__name__]
    model = EncoderCnnForTokenClassification(config)
    if encoder_state is None and pretrained is not None:
        try:
            encoder = AutoModel.from_pretrained(pretrained, add_pooling_layer=False)
        except TypeError:
            encoder = AutoModel.from_pretrained(pretrained)
        encoder_state = encoder.state_dict()
    if encoder_state is not None:
        model.encoder.load_state_dict(encoder_state)
    return model


def load_tagging_model(path: str | Path):
    """Load a tagging checkpoint written by ``save_pretrained`` (linear or CNN head), with clear errors."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a checkpoint directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(path)
        if getattr(config, "tagsmith_head", "linear") == "cnn":
            return EncoderCnnForTokenClassification.from_pretrained(path, config=config)
        return AutoModelForTokenClassification.from_pretrained(path, config=config)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:  # SafetensorError: corrupt weights
        raise CheckpointError(f"{path}: cannot load checkpoint: {error}") from error
