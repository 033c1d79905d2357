"""SentenceEncoder against sentence-transformers on the same folders.

The folders are the real all-MiniLM-L6-v2 and small random ones that sentence-transformers itself
builds and saves (its own Transformer, Pooling, Dense and Normalize modules), one per pooling mode
and per Dense/Normalize arrangement, so every file we read was written by the reference.
"""
import json
import shutil

import numpy as np
import pytest

from bertcpu import SentenceEncoder, similarity
from bertcpu.hub import ModelNotFoundError
from bertcpu.sentence import POOLING_MODES

# The bar, per vector.
MIN_COSINE = 0.99999
MAX_ABS = 1e-5

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "",
    "Hello",
    "Ünïcödé wörds, CJK 中文字符 and an emoji 🙂",
    "A sentence long enough to be truncated, " * 60,
    "   spaces   around   ",
    "ΟΔΟΣ and Σ, Greek capitals; İstanbul; STRASSE",
    "short",
    "Numbers 12345, punctuation!? (brackets) and [MASK] tokens",
    "x",
]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt")


def assert_vectors_match(ours, reference):
    reference = np.asarray(reference, dtype=np.float32)
    assert ours.dtype == np.float32
    assert ours.shape == reference.shape
    ours2, ref2 = np.atleast_2d(ours), np.atleast_2d(reference)
    max_abs = np.abs(ours2 - ref2).max(axis=1)
    norms = np.linalg.norm(ours2, axis=1) * np.linalg.norm(ref2, axis=1)
    cosine = np.where(norms > 0, (ours2 * ref2).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
    assert max_abs.max() <= MAX_ABS, f"max abs difference per vector: {max_abs}"
    assert cosine.min() >= MIN_COSINE, f"cosine per vector: {cosine}"


def reference_model(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


# ---------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return SentenceEncoder.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def minilm_reference(minilm_dir):
    return reference_model(minilm_dir)


def test_minilm_matches_sentence_transformers(minilm, minilm_reference):
    ours = minilm.encode(SENTENCES, batch_size=4)
    assert ours.shape == (len(SENTENCES), 384)
    assert_vectors_match(ours, minilm_reference.encode(SENTENCES, batch_size=4))


def test_minilm_single_sentence_gives_a_vector(minilm, minilm_reference):
    ours = minilm.encode("One sentence on its own.")
    assert ours.shape == (384,)
    assert_vectors_match(ours, minilm_reference.encode("One sentence on its own."))


def test_minilm_results_do_not_depend_on_batching(minilm):
    whole = minilm.encode(SENTENCES, batch_size=32)
    one_by_one = np.stack([minilm.encode(s) for s in SENTENCES])
    assert np.abs(whole - one_by_one).max() <= 1e-5


def test_minilm_input_order_is_kept(minilm):
    forward = minilm.encode(SENTENCES, batch_size=3)
    backward = minilm.encode(SENTENCES[::-1], batch_size=3)
    assert np.abs(forward - backward[::-1]).max() <= 1e-5


def test_minilm_truncates_like_sentence_transformers(minilm, minilm_reference):
    long_text = "word " * 1000
    assert minilm.max_seq_length == minilm_reference.max_seq_length == 256
    tokens = minilm.encode(long_text, output_value="token_embeddings")
    assert tokens.shape == (256, 384)
    assert_vectors_match(minilm.encode(long_text), minilm_reference.encode(long_text))


def test_minilm_token_embeddings(minilm, minilm_reference):
    ours = minilm.encode(SENTENCES, output_value="token_embeddings", batch_size=4)
    reference = minilm_reference.encode(SENTENCES, output_value="token_embeddings", batch_size=4)
    assert isinstance(ours, list) and len(ours) == len(SENTENCES)
    for mine, theirs in zip(ours, reference):
        assert_vectors_match(mine, theirs.numpy())


def test_encode_tokens_matches_sentence_transformers(minilm, minilm_reference):
    """The token-level entry point (one engine call for inputs of any lengths) gives
    sentence-transformers' vectors for the ids the tokenizer gives encode()."""
    ids = minilm.tokenizer(SENTENCES, truncation=True, max_length=minilm.max_seq_length)["input_ids"]
    reference = minilm_reference.encode(SENTENCES)
    assert_vectors_match(minilm.encode_tokens(ids), reference)
    assert_vectors_match(minilm.encode_tokens([np.array(i) for i in ids[:3]]), reference[:3])
    unnormalized = minilm_reference.encode(SENTENCES, normalize_embeddings=False, truncate_dim=100)
    ours = minilm.encode_tokens(ids, normalize_embeddings=True, truncate_dim=100)
    assert_vectors_match(ours, unnormalized / np.linalg.norm(unnormalized, axis=1, keepdims=True))
    tokens = minilm.encode_tokens(ids[:4], output_value="token_embeddings")
    for mine, theirs in zip(tokens, minilm_reference.encode(SENTENCES[:4], output_value="token_embeddings")):
        assert_vectors_match(mine, theirs.numpy())


def test_encode_tokens_errors(minilm):
    with pytest.raises(TypeError, match="list of token id lists"):
        minilm.encode_tokens("hello")
    with pytest.raises(ValueError, match="empty"):
        minilm.encode_tokens([])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        minilm.encode_tokens([[101, 10 ** 6, 102]])
    with pytest.raises(ValueError, match="all zeros"):
        minilm.encode_tokens([[101, 102], []])
    with pytest.raises(ValueError, match="truncate_dim"):
        minilm.encode_tokens([[101, 102]], truncate_dim=0)


def test_minilm_prompt(minilm, minilm_reference):
    ours = minilm.encode(SENTENCES[:4], prompt="query: ")
    assert_vectors_match(ours, minilm_reference.encode(SENTENCES[:4], prompt="query: "))
    assert np.abs(ours - minilm.encode(SENTENCES[:4])).max() > 1e-3


def test_minilm_max_seq_length_override(minilm_dir, minilm_reference):
    short = SentenceEncoder.from_pretrained(minilm_dir, max_seq_length=8)
    minilm_reference.max_seq_length = 8
    try:
        reference = minilm_reference.encode(SENTENCES)
    finally:
        minilm_reference.max_seq_length = 256
    assert_vectors_match(short.encode(SENTENCES), reference)


def test_minilm_truncate_dim(minilm, minilm_reference):
    ours = minilm.encode(SENTENCES[:3], truncate_dim=100)
    assert ours.shape == (3, 100)
    assert_vectors_match(ours, minilm_reference.encode(SENTENCES[:3], truncate_dim=100))


def test_normalize_embeddings_modes(minilm):
    default = minilm.encode(SENTENCES)          # the model's own Normalize module
    forced = minilm.encode(SENTENCES, normalize_embeddings=True)
    raw = minilm.encode(SENTENCES, normalize_embeddings=False)
    np.testing.assert_allclose(np.linalg.norm(default, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(forced, default, atol=1e-6)
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 1e-3), "False must skip the model's Normalize module"
    np.testing.assert_allclose(raw / norms[:, None], default, atol=1e-6)


def test_empty_list_gives_an_empty_matrix(minilm):
    empty = minilm.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert minilm.encode([], output_value="token_embeddings") == []


def test_encode_accepts_tuples_generators_and_numpy_strings(minilm):
    expected = minilm.encode(["a", "b c"])
    for sentences in (("a", "b c"), (s for s in ["a", "b c"]), np.array(["a", "b c"])):
        np.testing.assert_allclose(minilm.encode(sentences), expected, atol=1e-6)


def test_encode_argument_errors(minilm):
    with pytest.raises(ValueError, match="batch_size"):
        minilm.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match="output_value"):
        minilm.encode(["a"], output_value="pooler")
    with pytest.raises(TypeError, match=r"sentences\[1\] is int"):
        minilm.encode(["a", 3])
    with pytest.raises(TypeError, match="string or a list"):
        minilm.encode(42)
    with pytest.raises(ValueError, match="prompt_name"):
        minilm.encode(["a"], prompt_name="query")
    with pytest.raises(ValueError, match="normalize_embeddings"):
        minilm.encode(["a"], normalize_embeddings="yes")
    with pytest.raises(ValueError, match="max_seq_length"):
        minilm.max_seq_length = 10_000


def test_inputs_are_not_modified(minilm):
    sentences = ["b", "a longer one", ""]
    copy = list(sentences)
    minilm.encode(sentences, prompt="p: ")
    assert sentences == copy


def test_progress_bar_goes_to_stderr(minilm, capsys):
    minilm.encode(SENTENCES, batch_size=2, show_progress_bar=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{len(SENTENCES)}/{len(SENTENCES)}" in captured.err


def test_similarity_matches_sentence_transformers(minilm):
    from sentence_transformers.util import cos_sim

    a = minilm.encode(SENTENCES[:4], normalize_embeddings=False)
    b = minilm.encode(SENTENCES[4:], normalize_embeddings=False)
    ours = similarity(a, b)
    assert ours.shape == (4, len(SENTENCES) - 4) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, cos_sim(a, b).numpy(), atol=1e-6)
    assert similarity(a[0], b).shape == (1, len(SENTENCES) - 4)
    np.testing.assert_allclose(similarity(a, a).diagonal(), 1.0, atol=1e-6)


def test_similarity_checks_shapes():
    with pytest.raises(ValueError, match="same vector length"):
        similarity(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="shape"):
        similarity(np.ones((2, 3, 4)), np.ones((2, 4)))
    with pytest.raises(TypeError, match="numbers"):
        similarity(np.array(["a"]), np.ones((1, 1)))
    assert similarity(np.zeros((1, 3)), np.ones((1, 3)))[0, 0] == 0.0


def test_missing_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        SentenceEncoder.from_pretrained(str(tmp_path / "nothing-here"))


def test_repr_and_modules(minilm):
    assert minilm.modules == ["Pooling(mean)", "Normalize"]
    assert "max_seq_length=256" in repr(minilm)
    assert minilm.get_embedding_dimension() == minilm.get_sentence_embedding_dimension() == 384


# ---------------------------------------------------------------------------------------------
# Small random models, built and saved by sentence-transformers
# ---------------------------------------------------------------------------------------------

SMALL_BERT = dict(hidden_size=32, num_attention_heads=2, intermediate_size=37, num_hidden_layers=2,
                  vocab_size=30522, max_position_embeddings=64)


@pytest.fixture(scope="module")
def small_bert(bert_dir_factory, minilm_dir, tmp_path_factory):
    """A random 2-layer BERT (hidden 32, 64 positions, so long inputs truncate) with the MiniLM
    vocabulary."""
    folder = tmp_path_factory.mktemp("small_bert")
    shutil.copytree(bert_dir_factory(**SMALL_BERT), folder, dirs_exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def cased_small_bert(small_bert, tmp_path_factory):
    """The same model with a cased tokenizer (no lowercasing, no accent stripping)."""
    folder = tmp_path_factory.mktemp("cased_small_bert")
    shutil.copytree(small_bert, folder, dirs_exist_ok=True)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["normalizer"]["lowercase"] = False
    tokenizer["normalizer"]["strip_accents"] = False
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["do_lower_case"] = False
    config["strip_accents"] = False
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def save_st_model(folder, modules, **kwargs):
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(modules=modules, device="cpu", **kwargs).save(str(folder))
    return folder


def build_pipeline(bert_folder, pooling_mode, include_prompt=True, dense=(), normalize=False,
                   token_modules=()):
    """sentence-transformers modules: Transformer, [token-level modules], Pooling, [Dense...],
    [Normalize]. dense: (out_features, activation class name, bias, use_residual) tuples."""
    import torch
    from sentence_transformers import models

    torch.manual_seed(0)
    transformer = models.Transformer(str(bert_folder))
    modules = [transformer]
    dimension = transformer.get_embedding_dimension()
    for kind, argument in token_modules:
        if kind == "dense":
            modules.append(models.Dense(dimension, argument, activation_function=torch.nn.Tanh(),
                                        module_input_name="token_embeddings"))
            dimension = argument
        else:
            modules.append(models.Normalize(module_input_name="token_embeddings"))
    pooling = models.Pooling(dimension, pooling_mode=pooling_mode, include_prompt=include_prompt)
    modules.append(pooling)
    dimension = pooling.get_embedding_dimension()
    for out_features, activation, bias, use_residual in dense:
        layer = models.Dense(dimension, out_features, bias=bias,
                             activation_function=getattr(torch.nn, activation)(),
                             use_residual=use_residual)
        with torch.no_grad():  # make the bias visible (its default init is small)
            if bias:
                layer.linear.bias.normal_(0, 0.5)
        modules.append(layer)
        dimension = out_features
    if normalize:
        modules.append(models.Normalize())
    return modules


PIPELINES = {
    **{mode: dict(pooling_mode=mode) for mode in POOLING_MODES},
    "cls+max+mean": dict(pooling_mode=("cls", "max", "mean")),
    "mean+dense_tanh+normalize": dict(pooling_mode="mean", dense=[(16, "Tanh", True, False)],
                                      normalize=True),
    "cls+dense_gelu_nobias": dict(pooling_mode="cls", dense=[(24, "GELU", False, False)]),
    "max+two_dense": dict(pooling_mode="max", dense=[(20, "ReLU", True, False),
                                                     (8, "Identity", True, False)]),
    "mean+dense_residual": dict(pooling_mode="mean", dense=[(32, "Sigmoid", True, True),
                                                            (12, "SiLU", True, True)]),
    "cls+dense_leakyrelu_elu_softplus": dict(pooling_mode="cls", dense=[
        (20, "LeakyReLU", True, False), (16, "ELU", True, False), (8, "Softplus", True, False)]),
    "weightedmean+normalize": dict(pooling_mode="weightedmean", normalize=True),
    "token_dense+mean": dict(pooling_mode="mean", token_modules=[("dense", 16)]),
    "token_normalize+lasttoken": dict(pooling_mode="lasttoken", token_modules=[("normalize", None)]),
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_pipeline_matches_sentence_transformers(name, small_bert, tmp_path):
    folder = save_st_model(tmp_path / name, build_pipeline(small_bert, **PIPELINES[name]))
    reference = reference_model(folder)
    ours = SentenceEncoder.from_pretrained(folder)
    assert ours.get_embedding_dimension() == reference.get_embedding_dimension()
    assert_vectors_match(ours.encode(SENTENCES, batch_size=3),
                         reference.encode(SENTENCES, batch_size=3))
    ours_tokens = ours.encode(SENTENCES, output_value="token_embeddings")
    reference_tokens = reference.encode(SENTENCES, output_value="token_embeddings")
    for mine, theirs in zip(ours_tokens, reference_tokens):
        assert_vectors_match(mine, theirs.numpy())


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_prompt_excluded_from_pooling(mode, small_bert, tmp_path):
    folder = save_st_model(tmp_path / mode,
                           build_pipeline(small_bert, pooling_mode=mode, include_prompt=False))
    reference = reference_model(folder)
    ours = SentenceEncoder.from_pretrained(folder)
    for prompt in ("query: ", "a much longer instruction prompt: "):
        expected = reference.encode(SENTENCES, prompt=prompt)
        assert_vectors_match(ours.encode(SENTENCES, prompt=prompt), expected)
        ids = ours.tokenizer([prompt + s for s in SENTENCES], truncation=True,
                             max_length=ours.max_seq_length)["input_ids"]
        assert_vectors_match(ours.encode_tokens(ids, prompt_length=ours.prompt_length(prompt)),
                             expected)


def test_configured_prompts_and_default_prompt(small_bert, tmp_path):
    prompts = {"query": "query: ", "passage": "passage: "}
    folder = save_st_model(tmp_path / "prompts", build_pipeline(small_bert, "mean"),
                           prompts=prompts, default_prompt_name="query")
    reference = reference_model(folder)
    ours = SentenceEncoder.from_pretrained(folder)
    assert_vectors_match(ours.encode(SENTENCES), reference.encode(SENTENCES))
    assert_vectors_match(ours.encode(SENTENCES, prompt_name="passage"),
                         reference.encode(SENTENCES, prompt_name="passage"))
    np.testing.assert_allclose(ours.encode(SENTENCES), ours.encode(SENTENCES, prompt="query: "),
                               atol=1e-6)


def test_plain_bert_folder_uses_mean_pooling(small_bert):
    reference = reference_model(small_bert)  # sentence-transformers builds Transformer + mean
    ours = SentenceEncoder.from_pretrained(small_bert)
    assert ours.modules == ["Pooling(mean)"]
    assert ours.max_seq_length == 64
    assert_vectors_match(ours.encode(SENTENCES), reference.encode(SENTENCES))


@pytest.mark.parametrize("pooling", ["cls", ("max", "lasttoken")])
def test_plain_bert_folder_pooling_is_configurable(small_bert, pooling):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(modules=build_pipeline(small_bert, pooling), device="cpu")
    ours = SentenceEncoder.from_pretrained(small_bert, pooling=pooling)
    assert_vectors_match(ours.encode(SENTENCES), reference.encode(SENTENCES))


def test_legacy_layout_subfolder_lowercase_and_max_seq_length(cased_small_bert, tmp_path):
    """The layout older sentence-transformers versions wrote: the Transformer in 0_Transformer
    with its own sentence_bert_config.json (max_seq_length, do_lower_case), legacy pooling
    booleans, a Normalize without config."""
    folder = tmp_path / "legacy"
    shutil.copytree(cased_small_bert, folder / "0_Transformer")
    (folder / "0_Transformer" / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 20, "do_lower_case": True}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True,
        "pooling_mode_mean_sqrt_len_tokens": True}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer",
         "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]))
    reference = reference_model(folder)
    ours = SentenceEncoder.from_pretrained(folder)
    assert ours.max_seq_length == reference.max_seq_length == 20
    assert ours.modules == ["Pooling(cls+max+mean_sqrt_len_tokens)", "Normalize"]
    cased = ["ÜBER Café ΟΔΟΣ", "MiXeD CaSe words", "İstanbul"]
    assert_vectors_match(ours.encode(SENTENCES + cased), reference.encode(SENTENCES + cased))


def test_lowercase_matters_for_a_cased_tokenizer(cased_small_bert, tmp_path):
    """Without do_lower_case the cased tokenizer sees capitals: the vectors must differ, and still
    match sentence-transformers."""
    reference = reference_model(cased_small_bert)
    ours = SentenceEncoder.from_pretrained(cased_small_bert)
    texts = ["HELLO WORLD", "hello world"]
    vectors = ours.encode(texts)
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3
    assert_vectors_match(vectors, reference.encode(texts))


def _single_dense_folder(small_bert, tmp_path):
    return save_st_model(tmp_path / "dense", build_pipeline(
        small_bert, "mean", dense=[(16, "Tanh", True, False)]))


def test_dense_weights_in_pytorch_bin_are_refused(small_bert, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = _single_dense_folder(small_bert, tmp_path)
    dense = folder / "2_Dense"
    torch.save(load_file(dense / "model.safetensors"), dense / "pytorch_model.bin")
    (dense / "model.safetensors").unlink()
    reference_model(folder)  # sentence-transformers still loads it
    with pytest.raises(ValueError, match="pytorch_model.bin.*safetensors only"):
        SentenceEncoder.from_pretrained(folder)


def test_dense_activation_by_torch_class_name(small_bert, tmp_path):
    folder = _single_dense_folder(small_bert, tmp_path)
    config_file = folder / "2_Dense" / "config.json"
    config = json.loads(config_file.read_text())
    assert config["activation_function"] == "torch.nn.modules.activation.Tanh"
    config["activation_function"] = "torch.nn.modules.linear.Identity"
    config_file.write_text(json.dumps(config))
    assert_vectors_match(SentenceEncoder.from_pretrained(folder).encode(SENTENCES),
                         reference_model(folder).encode(SENTENCES))
    config["activation_function"] = "mypackage.Swish"
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="activation function 'mypackage.Swish' is not supported"):
        SentenceEncoder.from_pretrained(folder)


def test_dense_shape_mismatch_is_reported(small_bert, tmp_path):
    folder = _single_dense_folder(small_bert, tmp_path)
    config_file = folder / "2_Dense" / "config.json"
    config = json.loads(config_file.read_text())
    config["out_features"] = 17
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"linear.weight' has shape \[16, 32\], expected \[17, 32\]"):
        SentenceEncoder.from_pretrained(folder)


def test_unknown_module_type_is_reported(small_bert, tmp_path):
    folder = _single_dense_folder(small_bert, tmp_path)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_LayerNorm",
                    "type": "sentence_transformers.models.LayerNorm"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="LayerNorm' is not supported"):
        SentenceEncoder.from_pretrained(folder)
    modules[0]["type"] = "my_package.CustomTransformer"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="first module must be a sentence_transformers Transformer"):
        SentenceEncoder.from_pretrained(folder)


def test_module_path_may_not_leave_the_folder(small_bert, tmp_path):
    folder = _single_dense_folder(small_bert, tmp_path)
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["path"] = "../../elsewhere"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="leaves the model folder"):
        SentenceEncoder.from_pretrained(folder)


def test_bad_pooling_config_is_reported(small_bert, tmp_path):
    folder = _single_dense_folder(small_bert, tmp_path)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "median"}))
    with pytest.raises(ValueError, match="unknown pooling mode 'median'"):
        SentenceEncoder.from_pretrained(folder)
    (folder / "1_Pooling" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SentenceEncoder.from_pretrained(folder)
    with pytest.raises(ValueError, match="pooling= applies to plain BERT folders"):
        SentenceEncoder.from_pretrained(folder, pooling="cls")
    with pytest.raises(ValueError, match="unknown pooling mode 'sum'"):
        SentenceEncoder.from_pretrained(small_bert, pooling="sum")
