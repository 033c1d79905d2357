"""BertModel / SentenceEncoder in bfloat16 and int8 (issue 5): accuracy against bertcpu's float32
model, transformers and sentence-transformers on the real all-MiniLM-L6-v2 and a random BERT-base,
every low-precision kernel path this CPU runs, the float32 fallback, and bad arguments.

The kernels themselves are checked against their scalar references in test_kernels_lowp.py.
"""
import numpy as np
import pytest

import bertcpu
from bertcpu import BertModel, SentenceEncoder, _core
from bertcpu.benchmark import docstring_sentences, mean_row_cosine

from conftest import load_reference

INFO = bertcpu.cpu_info()
# Every low-precision path this CPU runs, except the scalar reference (a model never picks it).
BF16_PATHS = [isa for isa in INFO["bfloat16_isas"] if isa != "generic"]
INT8_PATHS = [isa for isa in INFO["int8_isas"] if isa != "generic"]
needs_bf16 = pytest.mark.skipif(not BF16_PATHS, reason="no AVX512_BF16 on this CPU")
needs_int8 = pytest.mark.skipif(not INT8_PATHS, reason="no int8 instructions on this CPU")

BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072)
# The bars.
BF16_TOKEN_COSINE = 0.9999
BF16_SENTENCE_COSINE = 0.9999
INT8_BERT_BASE_TOKEN_COSINE = 0.9995
INT8_SENTENCE_COSINE = 0.999


def random_batch(seed, batch, seq, vocab=30522):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, (batch, seq))
    ids[:, 0] = 101
    lengths = rng.integers(seq // 2, seq + 1, batch)
    lengths[0] = seq
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    return ids, mask


def sentence_cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def minilm_fp32(minilm_dir):
    return BertModel.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def sentences():
    return docstring_sentences(200)


@pytest.fixture(scope="module")
def sentence_reference(minilm_dir, sentences):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu").encode(sentences, batch_size=32)


@pytest.fixture(scope="module")
def bert_base_fp32():
    return BertModel.from_config(BERT_BASE, seed=1)


# ---------------------------------------------------------------------------------------------
# bfloat16
# ---------------------------------------------------------------------------------------------

@needs_bf16
@pytest.mark.parametrize("isa", BF16_PATHS)
def test_bf16_minilm_tokens(minilm_dir, minilm_fp32, isa):
    model = BertModel.from_pretrained(minilm_dir, dtype="bfloat16", isa=isa)
    assert (model.dtype, model.kernels) == ("bfloat16", isa)
    ids, mask = random_batch(0, 6, 96)
    ours = model(ids, mask).last_hidden_state
    assert mean_row_cosine(ours, minilm_fp32(ids, mask).last_hidden_state, mask) >= BF16_TOKEN_COSINE
    torch = pytest.importorskip("torch")
    reference = load_reference(minilm_dir)
    with torch.no_grad():
        expected = reference(input_ids=torch.from_numpy(ids),
                             attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    assert mean_row_cosine(ours, expected, mask) >= BF16_TOKEN_COSINE


@needs_bf16
def test_bf16_bert_base_tokens(bert_base_fp32):
    model = BertModel.from_config(BERT_BASE, seed=1, dtype="bfloat16")
    ids, mask = random_batch(1, 4, 64)
    cosine = mean_row_cosine(model(ids, mask).last_hidden_state,
                             bert_base_fp32(ids, mask).last_hidden_state, mask)
    assert cosine >= BF16_TOKEN_COSINE


@needs_bf16
def test_bf16_sentence_embeddings(minilm_dir, sentences, sentence_reference):
    encoder = SentenceEncoder.from_pretrained(minilm_dir, dtype="bfloat16")
    assert encoder.model.dtype == "bfloat16"
    cosines = sentence_cosines(encoder.encode(sentences), sentence_reference)
    assert cosines.mean() >= BF16_SENTENCE_COSINE, cosines.mean()


# ---------------------------------------------------------------------------------------------
# int8
# ---------------------------------------------------------------------------------------------

@needs_int8
@pytest.mark.parametrize("isa", INT8_PATHS)
def test_int8_bert_base_tokens(bert_base_fp32, isa):
    model = BertModel.from_config(BERT_BASE, seed=1, dtype="int8", isa=isa)
    assert (model.dtype, model.kernels) == ("int8", isa)
    ids, mask = random_batch(2, 4, 64)
    cosine = mean_row_cosine(model(ids, mask).last_hidden_state,
                             bert_base_fp32(ids, mask).last_hidden_state, mask)
    assert cosine >= INT8_BERT_BASE_TOKEN_COSINE


@needs_int8
@pytest.mark.parametrize("isa", INT8_PATHS)
def test_int8_sentence_embeddings(minilm_dir, sentences, sentence_reference, isa):
    encoder = SentenceEncoder.from_pretrained(minilm_dir, dtype="int8")
    assert encoder.model.dtype == "int8"
    if isa != encoder.model.kernels:
        encoder.model = BertModel.from_pretrained(minilm_dir, dtype="int8", isa=isa)
    cosines = sentence_cosines(encoder.encode(sentences), sentence_reference)
    assert cosines.mean() >= INT8_SENTENCE_COSINE, (cosines.mean(), cosines.min())


def int8_activation_max(isa):
    """The largest activation code of the int8 kernels a model on path isa gets: beside avx2 they
    are AVX-VNNI's where the CPU has it (255), else vpmaddubsw's (127)."""
    table = "avxvnni" if isa == "avx2" and "avx_vnni" in INFO["features"] else isa
    return _core.kernels.int8_activation_max(table)


@needs_int8
def test_int8_paths_agree():
    """The int8 products are exact integers on every path: paths that quantize activations alike
    (the same largest code) differ only in their fp32 parts (attention, LayerNorm), so their
    outputs stay within fp32 rounding of each other; AVX2's 128 levels stay within int8's error."""
    if len(INT8_PATHS) < 2:
        pytest.skip("one int8 path on this CPU")
    config = dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=200)
    ids, mask = random_batch(3, 3, 40, vocab=30522)
    outputs = [BertModel.from_config(config, seed=4, dtype="int8", isa=isa)(ids, mask)
               .last_hidden_state for isa in INT8_PATHS]
    levels = [int8_activation_max(isa) for isa in INT8_PATHS]
    fp32 = BertModel.from_config(config, seed=4)(ids, mask).last_hidden_state
    first = levels.index(255)
    for other, other_levels in zip(outputs, levels):
        if other_levels == 255:
            np.testing.assert_allclose(other, outputs[first], atol=2e-3)
        else:
            assert 0 < np.abs(other - outputs[first]).max() <= 0.02
            assert mean_row_cosine(other, fp32, mask) >= 0.99999


@pytest.mark.parametrize("dtype", ["int8", "bfloat16"])
@pytest.mark.parametrize("threads", [1, 2])
def test_sequence_alone_and_in_a_batch_agree_exactly(dtype, threads):
    """Every product is row by row, so a sequence's outputs do not depend on its batch, to the bit.
    int8 products take two routes: a batch of 128 rows runs in 32-row tasks that hand each row
    on to the LayerNorm or the next product's input copy; on 2 threads, the 20 and 8 rows alone
    (too few to share evenly) go through the fp32 output and a pass of their own. bfloat16 in
    12-row tiles takes the second route only (a task would have too few rows per weight byte)."""
    paths = BF16_PATHS if dtype == "bfloat16" else INT8_PATHS
    if not paths:
        pytest.skip(f"no {dtype} instructions on this CPU")
    config = dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=200)
    before = bertcpu.get_num_threads()
    try:
        bertcpu.set_num_threads(threads)
        model = BertModel.from_config(config, seed=7, dtype=dtype)
        ids, _ = random_batch(8, 3, 100)
        mask = np.zeros_like(ids)
        for row, length in enumerate((20, 100, 8)):
            mask[row, :length] = 1
        batch = model(ids, mask).last_hidden_state
        for row, length in enumerate((20, 100, 8)):
            alone = model(ids[row:row + 1, :length]).last_hidden_state[0]
            np.testing.assert_array_equal(alone, batch[row, :length])
        fp32 = BertModel.from_config(config, seed=7)(ids, mask).last_hidden_state
        assert mean_row_cosine(batch, fp32, mask) > 0.999
    finally:
        bertcpu.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Everything else a low-precision model does like a float32 one
# ---------------------------------------------------------------------------------------------

@needs_int8
def test_low_precision_outputs_and_memory(minilm_dir, minilm_fp32):
    model = BertModel.from_pretrained(minilm_dir, dtype="int8")
    ids, mask = random_batch(5, 3, 20)
    out = model(ids, mask, output_hidden_states=True, output_attentions=True)
    reference = minilm_fp32(ids, mask, output_hidden_states=True, output_attentions=True)
    assert out.last_hidden_state.shape == reference.last_hidden_state.shape
    assert len(out.hidden_states) == 7 and len(out.attentions) == 6
    # Embeddings are float32 in every mode: the first hidden state is exact.
    np.testing.assert_array_equal(out.hidden_states[0], reference.hidden_states[0])
    rows = out.attentions[0].sum(-1).transpose(0, 2, 1)  # [batch, seq, heads]
    np.testing.assert_allclose(rows[mask.astype(bool)], 1.0, atol=1e-5)
    assert mean_row_cosine(out.pooler_output[:, None, :], reference.pooler_output[:, None, :],
                           np.ones((3, 1))) > 0.998
    # Every dense weight shrinks to a quarter of its float32 size (embeddings stay float32).
    sizes = dict(model._encoder.expected_weights())
    dense = sum(np.prod(shape) for name, shape in sizes.items() if name.startswith("encoder.")
                and name.endswith(".weight") and "LayerNorm" not in name)
    saved = minilm_fp32._encoder.packed_bytes - model._encoder.packed_bytes
    assert saved >= 0.9 * dense * 3


@needs_int8
def test_int8_dense_weights():
    """Every dense layer of an int8 model, Q/K/V included, holds int8 values times a per-channel
    scale, the feed-forward input's after moving range between the LayerNorm output and the weight
    columns (t = sqrt(column max / (|gamma| + |beta|)), weight / t quantized, times t again)."""
    config = dict(hidden_size=96, num_hidden_layers=1, num_attention_heads=3, intermediate_size=200)
    fp32_model = BertModel.from_config(config, seed=6)
    fp32 = fp32_model._encoder
    int8 = BertModel.from_config(config, seed=6, dtype="int8")._encoder
    for name in ("attention.self.query", "attention.self.value", "attention.output.dense",
                 "output.dense"):
        weight = fp32.get_weight(f"encoder.layer.0.{name}.weight")
        scale = np.abs(weight).max(axis=1, keepdims=True) / 127
        np.testing.assert_allclose(int8.get_weight(f"encoder.layer.0.{name}.weight"),
                                   np.rint(weight / scale) * scale, rtol=1e-6, atol=1e-9)
    ln = "encoder.layer.0.attention.output.LayerNorm."
    # A LayerNorm with unequal channels, so that the input scale differs per channel.
    rng = np.random.default_rng(2)
    gamma = rng.uniform(0.1, 3, 96).astype(np.float32)
    beta = rng.uniform(-1, 1, 96).astype(np.float32)
    weight = fp32.get_weight("encoder.layer.0.intermediate.dense.weight")
    t = np.sqrt(np.abs(weight).max(axis=0) / (np.abs(gamma) + np.abs(beta)))
    moved = weight / t
    scale = np.abs(moved).max(axis=1, keepdims=True) / 127
    expected = np.rint(moved / scale) * scale * t
    int8 = _core.Encoder(fp32_model._config.to_core_dict(with_pooler=True), None, "int8")
    replaced = {ln + "weight": gamma, ln + "bias": beta}
    for name, _ in fp32.expected_weights():
        int8.set_weight(name, replaced[name] if name in replaced else fp32.get_weight(name))
    int8.finalize()
    np.testing.assert_allclose(int8.get_weight("encoder.layer.0.intermediate.dense.weight"),
                               expected, rtol=1e-5, atol=1e-8)
    assert not np.allclose(expected, weight, rtol=0, atol=np.abs(weight).max() / 300)


@pytest.mark.skipif("avx2" not in INFO["available_isas"], reason="no AVX2 path to cap a model at")
def test_without_instructions_runs_float32(minilm_dir):
    # bf16 kernels need AVX-512: a model capped at the AVX2 path has none.
    with pytest.warns(RuntimeWarning, match="no bfloat16 instructions .* runs in float32"):
        model = BertModel.from_pretrained(minilm_dir, dtype="bfloat16", isa="avx2")
    assert (model.dtype, model.kernels) == ("float32", "avx2")


@pytest.mark.parametrize("dtype", ["fp16", "float16", None, 8])
def test_bad_dtype(minilm_dir, dtype):
    with pytest.raises(ValueError, match="dtype must be one of 'float32', 'bfloat16', 'int8'"):
        BertModel.from_pretrained(minilm_dir, dtype=dtype)
    with pytest.raises(ValueError, match="dtype must be one of"):
        SentenceEncoder.from_pretrained(minilm_dir, dtype=dtype)


@needs_int8
def test_low_precision_model_is_not_saved(tmp_path):
    model = BertModel.from_config(dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64), dtype="int8")
    with pytest.raises(ValueError, match="holds its dense weights in int8"):
        model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
