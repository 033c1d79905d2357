"""BertModel against transformers' BertModel (torch, CPU): every output within 1e-4 at every real
position, for real and random weights, odd shapes, padding on either side, every activation,
storage dtype, checkpoint layout and kernel path; plus the input checks, threading and memory."""
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import safetensors.numpy

import bertcpu
from bertcpu import BertModel
from bertcpu.config import BertConfig
from bertcpu.model import BertOutput
from conftest import (ODD_CONFIG, TOLERANCE, assert_matches_reference, load_reference,
                      random_batch, reference_outputs)

AVAILABLE_ISAS = bertcpu.cpu_info()["available_isas"]


def compare(model, reference, ids, mask=None, types=None, compare_pooler=True):
    """Run both with hidden states and attentions and assert they match; returns ours."""
    ours = model(ids, mask, types, output_hidden_states=True, output_attentions=True)
    theirs = reference_outputs(reference, ids, mask, types)
    assert ours.last_hidden_state.shape == theirs["last_hidden_state"].shape
    assert_matches_reference(ours, theirs, np.ones_like(ids) if mask is None else mask,
                             compare_pooler)
    return ours


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return BertModel.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def minilm_reference(minilm_dir):
    return load_reference(minilm_dir)


@pytest.fixture(scope="module")
def odd(odd_bert_dir):
    return BertModel.from_pretrained(odd_bert_dir)


@pytest.fixture(scope="module")
def odd_reference(odd_bert_dir):
    return load_reference(odd_bert_dir)


def odd_batch(seed=0, lengths=(17, 3, 40, 1), left_padding=False):
    return random_batch(np.random.default_rng(seed), ODD_CONFIG["vocab_size"], lengths,
                        left_padding=left_padding, type_vocab_size=ODD_CONFIG["type_vocab_size"])


# --- correctness against transformers ---

@pytest.mark.parametrize("left_padding", [False, True], ids=["right-padding", "left-padding"])
def test_minilm_mixed_lengths(minilm, minilm_reference, left_padding):
    ids, mask, types = random_batch(np.random.default_rng(1), 30522, [12, 5, 33, 1, 20],
                                    left_padding=left_padding)
    out = compare(minilm, minilm_reference, ids, mask, types)
    # Padded positions are documented as zeros.
    assert not out.last_hidden_state[mask == 0].any()


def test_minilm_seq_512(minilm, minilm_reference):
    ids, mask, types = random_batch(np.random.default_rng(2), 30522, [512, 230])
    compare(minilm, minilm_reference, ids, mask, types)


def test_minilm_seq_1(minilm, minilm_reference):
    ids = np.array([[101], [2023], [0]])
    compare(minilm, minilm_reference, ids)


def test_bert_base(bert_dir_factory):
    folder = bert_dir_factory()  # transformers' BertConfig defaults: BERT-base
    model = BertModel.from_pretrained(folder)
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (12, 768)
    reference = load_reference(folder)
    assert model.num_parameters == sum(p.numel() for p in reference.parameters()) == 109482240
    ids, mask, types = random_batch(np.random.default_rng(3), 30522, [21, 7])
    compare(model, reference, ids, mask, types)


@pytest.mark.parametrize("left_padding", [False, True], ids=["right-padding", "left-padding"])
def test_odd_shapes(odd, odd_reference, left_padding):
    ids, mask, types = odd_batch(left_padding=left_padding)
    compare(odd, odd_reference, ids, mask, types)


ACTIVATIONS = ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"]


def activation_dir(bert_dir_factory, activation):
    # Same seed, same weights: the models differ by their activation only. Weights of std 0.2 put
    # the intermediate pre-activations around +-2, where erf and tanh GELU differ most.
    return bert_dir_factory(weight_std=0.2, **dict(ODD_CONFIG, hidden_act=activation))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_activation(bert_dir_factory, activation):
    folder = activation_dir(bert_dir_factory, activation)
    model = BertModel.from_pretrained(folder)
    assert model.config.hidden_act == activation
    ids, mask, types = odd_batch(seed=4)
    compare(model, load_reference(folder), ids, mask, types)


def test_activations_are_distinguishable(bert_dir_factory):
    """The test above can only catch a wrong activation if the activations change the output by
    much more than the tolerance; check that they do (gelu_new and gelu_pytorch_tanh are one
    function and must agree)."""
    ids, mask, types = odd_batch(seed=4)
    outputs = {act: BertModel.from_pretrained(activation_dir(bert_dir_factory, act))(ids, mask, types)
               .last_hidden_state[mask == 1] for act in ACTIVATIONS}
    assert np.abs(outputs["gelu"] - outputs["gelu_new"]).max() > 10 * TOLERANCE
    assert np.abs(outputs["gelu"] - outputs["relu"]).max() > 10 * TOLERANCE
    assert np.abs(outputs["gelu_new"] - outputs["gelu_pytorch_tanh"]).max() <= TOLERANCE


@pytest.mark.parametrize("dtype, stored", [("float16", "F16"), ("bfloat16", "BF16")])
def test_half_precision_checkpoints(bert_dir_factory, dtype, stored):
    folder = bert_dir_factory(dtype=dtype, **ODD_CONFIG)
    with safetensors.safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert f.get_slice("encoder.layer.0.output.dense.weight").get_dtype() == stored
    model = BertModel.from_pretrained(folder)
    ids, mask, types = odd_batch(seed=5)
    compare(model, load_reference(folder), ids, mask, types)


def test_sharded_checkpoint(bert_dir_factory):
    folder = bert_dir_factory(max_shard_size="150KB", **ODD_CONFIG)
    assert not (folder / "model.safetensors").exists()
    assert len(set(json.loads((folder / "model.safetensors.index.json").read_text())
                   ["weight_map"].values())) > 1
    model = BertModel.from_pretrained(folder)
    ids, mask, types = odd_batch(seed=6)
    compare(model, load_reference(folder), ids, mask, types)


def stored_names(folder):
    with safetensors.safe_open(str(folder / "model.safetensors"), "np") as f:
        return list(f.keys())


def test_pretraining_checkpoint_with_prefix_and_heads(bert_dir_factory):
    folder = bert_dir_factory(architecture="BertForPreTraining", **ODD_CONFIG)
    names = stored_names(folder)
    assert "bert.pooler.dense.weight" in names and any(n.startswith("cls.") for n in names)
    model = BertModel.from_pretrained(folder)
    assert model.has_pooler
    ids, mask, types = odd_batch(seed=7)
    compare(model, load_reference(folder), ids, mask, types)


def test_masked_lm_checkpoint_has_no_pooler(bert_dir_factory, caplog):
    folder = bert_dir_factory(architecture="BertForMaskedLM", **ODD_CONFIG)
    assert not any("pooler" in n for n in stored_names(folder))
    with caplog.at_level(logging.WARNING, logger="bertcpu"):
        model = BertModel.from_pretrained(folder)
    assert not model.has_pooler
    assert "no pooler weights" in caplog.text
    ids, mask, types = odd_batch(seed=8)
    # transformers gives its BertModel a freshly initialized pooler here: nothing to compare.
    out = compare(model, load_reference(folder), ids, mask, types, compare_pooler=False)
    assert out.pooler_output is None


def test_model_without_pooler(bert_dir_factory, caplog):
    folder = bert_dir_factory(pooler=False, **ODD_CONFIG)
    with caplog.at_level(logging.WARNING, logger="bertcpu"):
        model = BertModel.from_pretrained(folder)
    assert [r.getMessage() for r in caplog.records].count(
        f"{folder} has no pooler weights (pooler.dense.*): the model loads without a pooler and "
        f"its pooler_output is None") == 1
    assert not model.has_pooler
    ids, mask, types = odd_batch(seed=9)
    out = compare(model, load_reference(folder), ids, mask, types, compare_pooler=False)
    assert out.pooler_output is None
    assert model(ids, mask).pooler_output is None
    # said at load, not at every call (the reference's own transformers warnings are not counted)
    assert len([r for r in caplog.records if r.name.startswith("bertcpu")]) == 1


def test_model_prefix(odd_bert_dir, odd, tmp_path):
    shutil.copy(odd_bert_dir / "config.json", tmp_path)
    tensors = safetensors.numpy.load_file(str(odd_bert_dir / "model.safetensors"))
    safetensors.numpy.save_file({"model." + name: t for name, t in tensors.items()},
                                str(tmp_path / "model.safetensors"))
    ids, mask, types = odd_batch(seed=10)
    expected = odd(ids, mask, types)
    got = BertModel.from_pretrained(tmp_path)(ids, mask, types)
    np.testing.assert_array_equal(got.last_hidden_state, expected.last_hidden_state)
    np.testing.assert_array_equal(got.pooler_output, expected.pooler_output)


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_every_kernel_path(odd_bert_dir, odd_reference, minilm_dir, minilm_reference, isa):
    model = BertModel.from_pretrained(odd_bert_dir, isa=isa)
    assert model.isa == isa
    ids, mask, types = odd_batch(seed=11, left_padding=True)
    compare(model, odd_reference, ids, mask, types)

    model = BertModel.from_pretrained(minilm_dir, isa=isa)
    assert model.isa == isa
    ids, mask, types = random_batch(np.random.default_rng(12), 30522, [9, 64, 2])
    compare(model, minilm_reference, ids, mask, types)


def test_default_kernel_path_is_reported(odd):
    assert odd.isa == bertcpu.cpu_info()["isa"]


def test_unknown_or_unavailable_kernel_path(odd_bert_dir):
    with pytest.raises(ValueError, match="unknown ISA 'avx9'"):
        BertModel.from_pretrained(odd_bert_dir, isa="avx9")
    with pytest.raises(TypeError, match="isa must be None or a kernel path name"):
        BertModel.from_config(BertConfig(**ODD_CONFIG), isa=2)
    if "avx512" not in AVAILABLE_ISAS:
        with pytest.raises(ValueError, match="this CPU cannot run the avx512 kernels"):
            BertModel.from_pretrained(odd_bert_dir, isa="avx512")


# --- from_config and save_pretrained ---

def test_from_config_round_trips_through_transformers(tmp_path):
    # An epsilon that matters at this initialization's scale (embedding variance ~1e-3), so that
    # it must reach both engines through the saved config.json.
    config = BertConfig(**dict(ODD_CONFIG, hidden_act="gelu_new", layer_norm_eps=1e-3))
    model = BertModel.from_config(config, seed=3)
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]

    ids, mask, types = odd_batch(seed=13, left_padding=True)
    compare(model, load_reference(tmp_path), ids, mask, types)
    reloaded = BertModel.from_pretrained(tmp_path)
    assert reloaded.config == config
    original, copy = model(ids, mask, types), reloaded(ids, mask, types)
    np.testing.assert_array_equal(copy.last_hidden_state, original.last_hidden_state)
    np.testing.assert_array_equal(copy.pooler_output, original.pooler_output)


def test_from_config_initializes_like_transformers(tmp_path):
    config = BertConfig(**ODD_CONFIG)
    BertModel.from_config(config, seed=0).save_pretrained(tmp_path)
    weights = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    assert weights["embeddings.word_embeddings.weight"].shape == (1000, 96)
    assert all(w.dtype == np.float32 for w in weights.values())
    for name, w in weights.items():
        if name.endswith("LayerNorm.weight"):
            assert (w == 1).all(), name
        elif name.endswith("bias"):
            assert (w == 0).all(), name
        else:
            assert abs(w.std() - 0.02) < 0.002 and abs(w.mean()) < 0.002, name
    assert not weights["embeddings.word_embeddings.weight"][config.pad_token_id].any()


def test_from_config_is_seeded():
    config = dict(ODD_CONFIG)  # a config.json-style dict is accepted too
    ids = np.arange(1, 11)[None]
    first = BertModel.from_config(config, seed=1)(ids).last_hidden_state
    again = BertModel.from_config(config, seed=1)(ids).last_hidden_state
    other = BertModel.from_config(config, seed=2)(ids).last_hidden_state
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.1


def test_from_config_rejects_other_config_types():
    transformers = pytest.importorskip("transformers")
    with pytest.raises(TypeError, match="config must be a bertcpu BertConfig or a dict, got BertConfig"):
        BertModel.from_config(transformers.BertConfig())


# --- properties and output object ---

def test_properties(odd, odd_bert_dir, odd_reference):
    assert odd.config == BertConfig.from_json_file(odd_bert_dir / "config.json")
    assert odd.has_pooler
    assert odd.isa in AVAILABLE_ISAS
    assert odd.num_parameters == sum(p.numel() for p in odd_reference.parameters())
    assert repr(odd) == (f"BertModel(layers=2, hidden=96, heads=3, intermediate=200, act=gelu, "
                         f"pooler=True, isa={odd.isa!r}, dtype='float32')")


def test_output_object(odd):
    ids, mask, types = odd_batch()
    out = odd(ids, mask, types)
    assert isinstance(out, BertOutput)
    assert out["last_hidden_state"] is out.last_hidden_state
    assert out["pooler_output"] is out.pooler_output
    assert out.hidden_states is None and out.attentions is None
    assert out.keys() == ["last_hidden_state", "pooler_output", "hidden_states", "attentions"]
    with pytest.raises(KeyError, match="'logits': BertOutput fields are"):
        out["logits"]
    assert out.last_hidden_state.dtype == np.float32 and out.last_hidden_state.shape == (4, 40, 96)
    assert out.pooler_output.dtype == np.float32 and out.pooler_output.shape == (4, 96)

    full = odd(ids, mask, types, output_hidden_states=True, output_attentions=True)
    assert isinstance(full.hidden_states, tuple) and len(full.hidden_states) == 3
    assert isinstance(full.attentions, tuple) and len(full.attentions) == 2
    assert all(h.shape == (4, 40, 96) and h.dtype == np.float32 for h in full.hidden_states)
    assert all(a.shape == (4, 3, 40, 40) and a.dtype == np.float32 for a in full.attentions)
    np.testing.assert_array_equal(full.hidden_states[-1], full.last_hidden_state)


# --- accepted input forms ---

def test_input_forms_give_the_same_result(odd):
    ids, mask, types = odd_batch(seed=14)
    expected = odd(ids, mask, types).last_hidden_state
    variants = [
        (ids.tolist(), mask.tolist(), types.tolist()),
        (ids.astype(np.int32), mask.astype(np.int32), types.astype(np.int32)),
        (ids.astype(np.int32), mask.astype(bool), types),
        (np.asfortranarray(ids), np.asfortranarray(mask), np.asfortranarray(types)),
        # Non-contiguous views.
        (np.repeat(ids, 2, axis=1)[:, ::2], np.repeat(mask, 2, axis=1)[:, ::2],
         np.repeat(types, 2, axis=1)[:, ::2]),
    ]
    for variant_ids, variant_mask, variant_types in variants:
        got = odd(variant_ids, attention_mask=variant_mask, token_type_ids=variant_types)
        np.testing.assert_array_equal(got.last_hidden_state, expected)


def test_defaults_are_all_ones_mask_and_zero_types(odd):
    ids, _, _ = odd_batch(seed=15, lengths=(12, 12))
    default = odd(ids)
    explicit = odd(ids, np.ones_like(ids), np.zeros_like(ids))
    np.testing.assert_array_equal(default.last_hidden_state, explicit.last_hidden_state)
    np.testing.assert_array_equal(default.pooler_output, explicit.pooler_output)


def test_single_sequence_gets_a_batch_dimension(odd):
    ids, mask, types = odd_batch(seed=16, lengths=(9,))
    batched = odd(ids, mask, types)
    single = odd(ids[0], mask[0], types[0])
    assert single.last_hidden_state.shape == (1, 9, 96)
    assert single.pooler_output.shape == (1, 96)
    np.testing.assert_array_equal(single.last_hidden_state, batched.last_hidden_state)
    assert odd(ids[0].tolist()).last_hidden_state.shape == (1, 9, 96)


def test_inputs_are_not_modified(odd):
    ids, mask, types = odd_batch(seed=17)
    originals = [a.copy() for a in (ids, mask, types)]
    for a in (ids, mask, types):
        a.flags.writeable = False
    odd(ids, mask, types, output_hidden_states=True, output_attentions=True)
    for a, original in zip((ids, mask, types), originals):
        np.testing.assert_array_equal(a, original)
        assert a.dtype == np.int64
    as_lists = [a.tolist() for a in originals]
    odd(*as_lists)
    assert as_lists == [a.tolist() for a in originals]


# --- bad inputs: each with its message ---

@pytest.mark.parametrize("ids, error, message", [
    ([[1, 2, 1000]], ValueError, r"input_ids\[0, 2\] = 1000 is outside the vocabulary \[0, vocab_size=1000\)"),
    ([5, -1], ValueError, r"input_ids\[1\] = -1 is outside the vocabulary"),
    (np.ones((1, 129), np.int64), ValueError, r"sequence length 129 exceeds this model's max_position_embeddings \(128\)"),
    (np.zeros((0, 5), np.int64), ValueError, r"input_ids is empty \(shape \(0, 5\)\)"),
    ([], ValueError, r"input_ids is empty \(shape \(0,\)\)"),
    ([[]], ValueError, r"input_ids is empty \(shape \(1, 0\)\)"),
    ([[1, 2], [3]], ValueError, "input_ids: rows of different lengths"),
    ([[1, 2**70]], ValueError, "input_ids: rows of different lengths, or values that are not integers"),
    (np.ones((2, 3, 4), np.int64), ValueError, r"input_ids must have shape \[batch, seq\] or \[seq\], got shape \(2, 3, 4\)"),
    (7, ValueError, r"input_ids must have shape \[batch, seq\] or \[seq\], got shape \(\)"),
    (np.ones((1, 3), np.float32), TypeError, "input_ids must be an array of int32, int64, got dtype float32"),
    ([[1.0, 2.0]], TypeError, "got dtype float64"),
    (np.ones((1, 3), np.int16), TypeError, "got dtype int16"),
    (np.ones((1, 3), np.uint64), TypeError, "got dtype uint64"),
    ([[True, False]], TypeError, "got dtype bool"),
    ([["a", "b"]], TypeError, "got dtype <U1"),
])
def test_bad_input_ids(odd, ids, error, message):
    with pytest.raises(error, match=message):
        odd(ids)


@pytest.mark.parametrize("mask, error, message", [
    ([[1, 1, 0]], ValueError, r"attention_mask has shape \(1, 3\) but input_ids has shape \(2, 3\)"),
    ([[1, 1, 1, 1], [1, 1, 1, 1]], ValueError, r"attention_mask has shape \(2, 4\)"),
    ([[1, 1, 2], [1, 0, 0]], ValueError, r"attention_mask must hold only 0 and 1, found 2 at \[0, 2\]"),
    ([[1, 1, 1], [1, -1, 0]], ValueError, r"found -1 at \[1, 1\]"),
    ([[1, 1, 1], [0, 0, 0]], ValueError, "attention_mask row 1 is all zeros: every sequence needs at least one real token"),
    (np.ones((2, 3), np.float32), TypeError, "attention_mask must be an array of int32, int64, bool, got dtype float32"),
])
def test_bad_attention_mask(odd, mask, error, message):
    with pytest.raises(error, match=message):
        odd([[1, 2, 3], [4, 5, 6]], attention_mask=mask)


@pytest.mark.parametrize("types, error, message", [
    ([[0, 1, 3], [0, 0, 0]], ValueError, r"token_type_ids\[0, 2\] = 3 is outside \[0, type_vocab_size=3\)"),
    ([[0, 0, 0], [0, -1, 0]], ValueError, r"token_type_ids\[1, 1\] = -1 is outside"),
    ([[0, 0], [0, 0]], ValueError, r"token_type_ids has shape \(2, 2\) but input_ids has shape \(2, 3\)"),
    (np.zeros((2, 3), bool), TypeError, "token_type_ids must be an array of int32, int64, got dtype bool"),
])
def test_bad_token_type_ids(odd, types, error, message):
    with pytest.raises(error, match=message):
        odd([[1, 2, 3], [4, 5, 6]], token_type_ids=types)


def test_single_sequence_mask_is_checked_in_its_own_shape(odd):
    with pytest.raises(ValueError, match=r"attention_mask must hold only 0 and 1, found 5 at \[1\]"):
        odd([1, 2, 3], attention_mask=[1, 5, 0])
    with pytest.raises(ValueError, match="attention_mask row 0 is all zeros"):
        odd([1, 2, 3], attention_mask=[0, 0, 0])


# --- bad folders ---

def copy_folder(source, destination):
    for name in os.listdir(source):
        shutil.copy(source / name, destination)
    return destination


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        BertModel.from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        BertModel.from_pretrained(tmp_path)


def test_pickle_checkpoint_is_refused(odd_bert_dir, tmp_path):
    shutil.copy(odd_bert_dir / "config.json", tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled, ever")
    with pytest.raises(ValueError, match="only safetensors weights are supported"):
        BertModel.from_pretrained(tmp_path)


def test_config_and_weights_disagree(odd_bert_dir, tmp_path):
    copy_folder(odd_bert_dir, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 256
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"tensor 'encoder.layer.0.intermediate.dense.weight' has shape "
                                         r"\[200, 96\], expected \[256, 96\] from the config"):
        BertModel.from_pretrained(tmp_path)


def test_missing_tensor(odd_bert_dir, tmp_path):
    shutil.copy(odd_bert_dir / "config.json", tmp_path)
    tensors = safetensors.numpy.load_file(str(odd_bert_dir / "model.safetensors"))
    del tensors["encoder.layer.1.attention.self.key.bias"]
    safetensors.numpy.save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing tensor\(s\) 'encoder.layer.1.attention.self.key.bias'"):
        BertModel.from_pretrained(tmp_path)


def test_half_a_pooler_is_a_missing_tensor(odd_bert_dir, tmp_path):
    shutil.copy(odd_bert_dir / "config.json", tmp_path)
    tensors = safetensors.numpy.load_file(str(odd_bert_dir / "model.safetensors"))
    del tensors["pooler.dense.bias"]
    safetensors.numpy.save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing tensor\(s\) 'pooler.dense.bias'"):
        BertModel.from_pretrained(tmp_path)


def test_unsupported_config_names_the_file(odd_bert_dir, tmp_path):
    copy_folder(odd_bert_dir, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["hidden_act"] = "silu"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json: unsupported activation: config field 'hidden_act' is 'silu'"):
        BertModel.from_pretrained(tmp_path)


def test_truncated_weights_file(odd_bert_dir, tmp_path):
    copy_folder(odd_bert_dir, tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="reach beyond the end of the file"):
        BertModel.from_pretrained(tmp_path)


# --- threads ---

def test_num_threads_argument_sets_the_process_thread_count(odd_bert_dir):
    before = bertcpu.get_num_threads()
    try:
        BertModel.from_pretrained(odd_bert_dir, num_threads=1)
        assert bertcpu.get_num_threads() == 1
        with pytest.raises(ValueError, match="num_threads must be a positive integer"):
            BertModel.from_pretrained(odd_bert_dir, num_threads=0)
    finally:
        bertcpu.set_num_threads(before)


def test_concurrent_calls_match_sequential_results(minilm):
    rng = np.random.default_rng(18)
    batches = [random_batch(rng, 30522, rng.integers(1, 60, size=int(rng.integers(1, 6))))
               for _ in range(6)]
    expected = [minilm(*batch, output_attentions=True) for batch in batches]
    results = [[] for _ in batches]
    start = threading.Barrier(len(batches))

    def work(i):
        start.wait()
        for _ in range(3):
            results[i].append(minilm(*batches[i], output_attentions=True))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for want, got_all in zip(expected, results):
        assert len(got_all) == 3
        for got in got_all:
            np.testing.assert_array_equal(got.last_hidden_state, want.last_hidden_state)
            np.testing.assert_array_equal(got.pooler_output, want.pooler_output)
            np.testing.assert_array_equal(got.attentions[-1], want.attentions[-1])


def test_forward_releases_the_gil(minilm):
    ids, mask, types = random_batch(np.random.default_rng(19), 30522, [256] * 8)
    started = time.perf_counter()
    minilm(ids, mask, types)
    duration = time.perf_counter() - started

    done = threading.Event()
    worker = threading.Thread(target=lambda: (minilm(ids, mask, types), done.set()))
    last = time.perf_counter()
    longest_pause = 0.0
    worker.start()
    # If the call held the GIL this loop would stall for the whole call.
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        longest_pause = max(longest_pause, now - last)
        last = now
    worker.join()
    assert longest_pause < duration / 2, (longest_pause, duration)


# --- memory ---

# VmHWM, the peak resident set of this process image. Not getrusage's ru_maxrss: Linux carries
# that across exec, so a child of a big pytest process would report the parent's size.
PEAK_RSS_SCRIPT = textwrap.dedent("""
    import json, sys

    def peak_kib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    import bertcpu
    before = peak_kib()
    model = bertcpu.BertModel.from_pretrained(sys.argv[1])
    print(json.dumps({"import_kib": before, "peak_kib": peak_kib()}))
""")


def measure_load_peak_rss(folder):
    """Peak resident memory (bytes) of a fresh process that imports bertcpu and loads `folder`,
    and the same before loading."""
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, str(folder)], check=True,
                            capture_output=True, text=True)
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    return numbers["peak_kib"] * 1024, numbers["import_kib"] * 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from Linux /proc")
def test_loading_bert_base_costs_about_one_copy_of_the_weights(bert_dir_factory):
    folder = bert_dir_factory()  # BERT-base, float32 file
    weight_bytes = os.path.getsize(folder / "model.safetensors")
    peak, _ = measure_load_peak_rss(folder)
    assert peak < 1.5 * weight_bytes + 150 * 2**20, (peak, weight_bytes)


def test_huge_batch_runs_in_groups_with_identical_results():
    """A batch whose scratch exceeds the engine's 256 MiB budget runs as groups of whole
    sequences; each sequence's result is independent of its neighbours, so the one big call must
    equal the same sequences run in small calls, bit for bit."""
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, vocab_size=100, max_position_embeddings=512)
    model = BertModel.from_config(config, seed=3)
    # 7 * 32 + 64 floats of scratch per token: 256 MiB hold ~233k tokens; this batch has ~250k.
    rng = np.random.default_rng(0)
    batch, seq = 520, 512
    ids = rng.integers(0, 100, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    mask[::7, 300:] = 0
    big = model(ids, attention_mask=mask)
    for start in range(0, batch, 104):
        part = model(ids[start:start + 104], attention_mask=mask[start:start + 104])
        assert np.array_equal(part.last_hidden_state, big.last_hidden_state[start:start + 104])
        assert np.array_equal(part.pooler_output, big.pooler_output[start:start + 104])
