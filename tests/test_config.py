"""BertConfig: reading config.json field by field, the errors for what cannot run, and writing a
config.json that transformers loads."""
import dataclasses
import json

import pytest

from bertcpu.config import BertConfig

MINILM_FIELDS = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, vocab_size=30522, max_position_embeddings=512,
                     type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
                     position_embedding_type="absolute", pad_token_id=0)


def test_defaults_are_bert_base():
    config = BertConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size, config.vocab_size, config.max_position_embeddings,
            config.type_vocab_size) == (768, 12, 12, 3072, 30522, 512, 2)
    assert config.layer_norm_eps == 1e-12
    assert config.hidden_act == "gelu"
    assert config.head_size == 64


def test_reads_minilm_config_json(minilm_dir):
    config = BertConfig.from_json_file(minilm_dir / "config.json")
    for field, value in MINILM_FIELDS.items():
        assert getattr(config, field) == value, field


def test_unused_fields_are_ignored_and_missing_ones_default():
    config = BertConfig.from_dict({"model_type": "bert", "hidden_size": 96, "num_attention_heads": 3,
                                   "hidden_dropout_prob": 0.1, "architectures": ["BertModel"],
                                   "gradient_checkpointing": False})
    assert config.hidden_size == 96 and config.num_attention_heads == 3
    assert config.num_hidden_layers == 12
    # No model_type: a plain BERT config.json (older exports) is read as BERT.
    assert BertConfig.from_dict({"hidden_size": 96, "num_attention_heads": 3}).hidden_size == 96


@pytest.mark.parametrize("field", ["hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "intermediate_size", "vocab_size", "max_position_embeddings",
                                   "type_vocab_size"])
@pytest.mark.parametrize("value", [0, -4])
def test_non_positive_sizes_are_rejected(field, value):
    with pytest.raises(ValueError, match=f"'{field}' must be positive, got {value}"):
        BertConfig.from_dict({field: value})


@pytest.mark.parametrize("field", ["hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "intermediate_size", "vocab_size", "max_position_embeddings",
                                   "type_vocab_size"])
@pytest.mark.parametrize("value", ["768", 768.0, True, None, [768]])
def test_non_integer_sizes_are_rejected(field, value):
    with pytest.raises(ValueError, match=f"'{field}' must be an integer"):
        BertConfig.from_dict({field: value})


def test_heads_must_divide_hidden_size():
    with pytest.raises(ValueError, match=r"'num_attention_heads' \(5\) must divide 'hidden_size' \(96\)"):
        BertConfig.from_dict({"hidden_size": 96, "num_attention_heads": 5})


@pytest.mark.parametrize("value, message", [
    ("1e-12", "must be a number"), (None, "must be a number"), (True, "must be a number"),
    (0, "must be a positive finite"), (-1e-5, "must be a positive finite"),
    (float("nan"), "must be a positive finite"),
    (float("inf"), "must be a positive finite")])
def test_layer_norm_eps_is_validated(value, message):
    with pytest.raises(ValueError, match=f"'layer_norm_eps' {message}"):
        BertConfig.from_dict({"layer_norm_eps": value})


def test_integer_layer_norm_eps_is_kept_as_float():
    config = BertConfig.from_dict({"layer_norm_eps": 1})
    assert isinstance(config.layer_norm_eps, float)


@pytest.mark.parametrize("act, core_act", [("gelu", "gelu"), ("gelu_new", "gelu_tanh"),
                                           ("gelu_pytorch_tanh", "gelu_tanh"), ("relu", "relu")])
def test_activations_map_to_the_core(act, core_act):
    config = BertConfig.from_dict({"hidden_act": act})
    assert config.hidden_act == act
    assert config.to_core_dict(with_pooler=True)["hidden_act"] == core_act


@pytest.mark.parametrize("act", ["swish", "silu", "tanh", "GELU", "quick_gelu", ""])
def test_unsupported_activation(act):
    with pytest.raises(ValueError, match=f"unsupported activation: config field 'hidden_act' is '{act}'"):
        BertConfig.from_dict({"hidden_act": act})


def test_activation_must_be_a_string():
    with pytest.raises(ValueError, match="'hidden_act' must be a string"):
        BertConfig.from_dict({"hidden_act": {"name": "gelu"}})


@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query", "rotary"])
def test_only_absolute_positions(kind):
    with pytest.raises(ValueError, match=f"'position_embedding_type' is '{kind}': not supported"):
        BertConfig.from_dict({"position_embedding_type": kind})


def test_null_position_embedding_type_is_absolute():
    assert BertConfig.from_dict({"position_embedding_type": None}).position_embedding_type == "absolute"


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "distilbert", "electra", None])
def test_other_model_types_are_rejected(model_type):
    with pytest.raises(ValueError, match=f"'model_type' is {model_type!r}: not supported"):
        BertConfig.from_dict({"model_type": model_type})


@pytest.mark.parametrize("flag", ["is_decoder", "add_cross_attention"])
def test_decoder_configs_are_rejected(flag):
    with pytest.raises(ValueError, match=f"'{flag}' is True: not supported"):
        BertConfig.from_dict({flag: True})
    assert BertConfig.from_dict({flag: False}).hidden_size == 768


@pytest.mark.parametrize("value, message", [(30522, r"must be in \[0, vocab_size=30522\)"),
                                            (-1, r"must be in \[0, vocab_size=30522\)"),
                                            ("0", "must be an integer or null")])
def test_pad_token_id_is_validated(value, message):
    with pytest.raises(ValueError, match=f"'pad_token_id'.*{message}"):
        BertConfig.from_dict({"pad_token_id": value})


def test_null_pad_token_id_is_allowed():
    assert BertConfig.from_dict({"pad_token_id": None}).pad_token_id is None


def test_config_must_be_an_object(tmp_path):
    with pytest.raises(ValueError, match="must be a JSON object"):
        BertConfig.from_dict([1, 2])
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="config.json: a BERT config must be a JSON object"):
        BertConfig.from_json_file(path)


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 768,')
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        BertConfig.from_json_file(path)


def test_file_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "bert", "intermediate_size": -1}))
    with pytest.raises(ValueError, match="config.json: config field 'intermediate_size' must be positive"):
        BertConfig.from_json_file(path)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        BertConfig().hidden_size = 10


def test_to_core_dict():
    config = BertConfig.from_dict(dict(MINILM_FIELDS, hidden_act="gelu_new"))
    assert config.to_core_dict(with_pooler=False) == {
        "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
        "intermediate_size": 1536, "vocab_size": 30522, "max_position_embeddings": 512,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu_tanh",
        "with_pooler": False}


def test_dict_round_trip():
    config = BertConfig(hidden_size=96, num_attention_heads=3, hidden_act="relu", pad_token_id=None)
    assert BertConfig.from_dict(config.to_dict()) == config


def test_transformers_loads_the_written_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = BertConfig(hidden_size=96, num_hidden_layers=2, num_attention_heads=3,
                        intermediate_size=200, vocab_size=1000, max_position_embeddings=64,
                        type_vocab_size=3, layer_norm_eps=1e-5, hidden_act="gelu_pytorch_tanh",
                        pad_token_id=1)
    config.to_json_file(tmp_path / "config.json")
    theirs = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(theirs) is transformers.BertConfig
    for field, value in dataclasses.asdict(config).items():
        assert getattr(theirs, field) == value, field
    # ... and builds a model from it.
    model = transformers.AutoModel.from_config(theirs)
    assert type(model) is transformers.BertModel
