"""BertConfig: the architecture of a BERT encoder, read from and written to `config.json`.

Only the fields that change the computation are kept; the rest of a transformers config (dropout
rates, tokenizer ids, `architectures`, ...) do not matter for inference and are ignored when
reading. Every kept field is validated on its own, so a broken config.json fails here with the name
of the field rather than later inside the engine.
"""
import dataclasses
import json
import math
import os

from ._files import is_int, read_json

# config.json `hidden_act` -> the engine's activation. gelu_new and gelu_pytorch_tanh are the same
# function (the tanh approximation of GELU); gelu is the exact erf form.
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}

# Only "bert" is accepted: other encoder families that look similar differ in ways that change the
# numbers (RoBERTa offsets position ids by the padding index, ELECTRA/ALBERT project embeddings,
# Megatron-BERT normalizes before each block), and running them as BERT would be silently wrong.
_SUPPORTED_MODEL_TYPES = ("bert",)

_POSITIVE_INT_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture of a BERT encoder. The defaults are BERT-base (uncased).

    Frozen: a config is validated once, when built, and cannot become invalid afterwards.
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    position_embedding_type: str = "absolute"
    pad_token_id: "int | None" = 0
    initializer_range: float = 0.02

    def __post_init__(self):
        for name in _POSITIVE_INT_FIELDS:
            value = getattr(self, name)
            if not is_int(value):
                raise ValueError(f"config field {name!r} must be an integer, got {value!r} "
                                 f"({type(value).__name__})")
            if value <= 0:
                raise ValueError(f"config field {name!r} must be positive, got {value}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"config field 'num_attention_heads' ({self.num_attention_heads}) must divide "
                f"'hidden_size' ({self.hidden_size})")

        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if not _is_number(value):
                raise ValueError(f"config field {name!r} must be a number, got {value!r} "
                                 f"({type(value).__name__})")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"config field {name!r} must be a positive finite number, got {value!r}")
        # Store floats as floats so to_dict() writes 1e-12, never an int that happens to be valid.
        object.__setattr__(self, "layer_norm_eps", float(self.layer_norm_eps))
        object.__setattr__(self, "initializer_range", float(self.initializer_range))

        if not isinstance(self.hidden_act, str):
            raise ValueError(f"config field 'hidden_act' must be a string, got {self.hidden_act!r} "
                             f"({type(self.hidden_act).__name__})")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"unsupported activation: config field 'hidden_act' is {self.hidden_act!r}; "
                f"supported: {', '.join(_ACTIVATIONS)}")

        if self.position_embedding_type != "absolute":
            raise ValueError(
                f"config field 'position_embedding_type' is {self.position_embedding_type!r}: "
                f"not supported, only 'absolute' position embeddings are")

        if self.pad_token_id is not None:
            if not is_int(self.pad_token_id):
                raise ValueError(f"config field 'pad_token_id' must be an integer or null, got "
                                 f"{self.pad_token_id!r} ({type(self.pad_token_id).__name__})")
            if not 0 <= self.pad_token_id < self.vocab_size:
                raise ValueError(f"config field 'pad_token_id' ({self.pad_token_id}) must be in "
                                 f"[0, vocab_size={self.vocab_size})")

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, config):
        """Build from a config.json dictionary. Fields absent from it take the BERT-base default;
        fields this engine does not use are ignored; settings it cannot run are rejected."""
        if not isinstance(config, dict):
            raise ValueError(f"a BERT config must be a JSON object (dict), got {type(config).__name__}")
        model_type = config.get("model_type", "bert")
        if model_type not in _SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"config field 'model_type' is {model_type!r}: not supported, bertcpu runs BERT "
                f"encoders (model_type 'bert')")
        # Flags that turn the encoder into something else (a causal decoder, a cross-attending
        # decoder); transformers configs carry them as false for every encoder.
        for flag in ("is_decoder", "add_cross_attention"):
            if config.get(flag, False) not in (False, None):
                raise ValueError(f"config field {flag!r} is {config[flag]!r}: not supported, "
                                 f"bertcpu runs bidirectional encoders only")
        kwargs = {}
        for field in dataclasses.fields(cls):
            if field.name in config:
                kwargs[field.name] = config[field.name]
        # Older transformers treated a null position_embedding_type as absolute.
        if kwargs.get("position_embedding_type", "absolute") is None:
            kwargs["position_embedding_type"] = "absolute"
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path):
        path = os.fspath(path)
        config = read_json(path, expected=None)  # from_dict says what a config must be
        try:
            return cls.from_dict(config)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def to_dict(self):
        """The config.json content for this config; transformers' BertModel loads it."""
        config = {"architectures": ["BertModel"], "model_type": "bert"}
        config.update(dataclasses.asdict(self))
        return config

    def to_json_file(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")

    def to_core_dict(self, with_pooler):
        """The configuration dictionary bertcpu._core.Encoder takes."""
        return {
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": _ACTIVATIONS[self.hidden_act],
            "with_pooler": bool(with_pooler),
        }
