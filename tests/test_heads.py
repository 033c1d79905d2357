"""Task heads against their references: BertFor* logits against transformers, CrossEncoder and
SparseEncoder against sentence-transformers, token classification and fill-mask against
transformers' pipelines. Models are random-weight ones transformers builds and saves (with the
real all-MiniLM-L6-v2 tokenizer files), plus the real all-MiniLM-L6-v2 encoder under a freshly
initialised head."""
import json
import shutil

import numpy as np
import pytest

import bertcpu
from bertcpu.heads import Tokens
from conftest import TOLERANCE

QUERY = "how do plants make food from sunlight?"
DOCUMENTS = [
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The stock market fell sharply on Monday.",
    "",
    "Plants use chlorophyll to capture sunlight, water and carbon dioxide to make sugar " * 6,
    "Ünïcödé wörds, CJK 中文字符 and an emoji 🙂",
    "short",
]
NER_TEXTS = ["John Smith lives in New York and works for Microsoft.",
             "Angela Merkel visited Paris; unbelievably, nobody noticed ☃ there.",
             "x"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC"]


def _torch():
    import torch

    torch.set_num_threads(2)
    return torch


def _batch(tokenizer, texts, pairs=None):
    enc = tokenizer(texts, pairs, padding=True, truncation=True, max_length=64, return_tensors="np")
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


def _reference_logits(folder, architecture, ids, mask, types):
    torch = _torch()
    import transformers

    model = getattr(transformers, architecture).from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                     token_type_ids=torch.as_tensor(types)).logits.numpy()


# -- BertFor* against transformers --------------------------------------------------------------------

@pytest.mark.parametrize("num_labels,problem_type", [(1, "regression"), (3, "single_label_classification"),
                                                     (5, "multi_label_classification")])
def test_sequence_classification_logits_match_transformers(head_dir_factory, num_labels, problem_type):
    folder = head_dir_factory("BertForSequenceClassification", num_labels=num_labels,
                              problem_type=problem_type, hidden_act="gelu_new")
    ours = bertcpu.BertForSequenceClassification.from_pretrained(folder)
    assert ours.num_labels == num_labels and ours.problem_type == problem_type
    ids, mask, types = _batch(ours.tokenizer, DOCUMENTS, [QUERY] * len(DOCUMENTS))
    reference = _reference_logits(folder, "BertForSequenceClassification", ids, mask, types)
    assert np.abs(ours(ids, mask, types) - reference).max() <= TOLERANCE
    # The two-stage form gives the same logits for the unpadded items.
    tokens = ours.tokenize(DOCUMENTS, [QUERY] * len(DOCUMENTS), max_length=64)
    assert np.abs(ours.logits_tokens(tokens) - reference).max() <= TOLERANCE


def test_classify_matches_the_text_classification_pipeline(head_dir_factory):
    import transformers

    folder = head_dir_factory("BertForSequenceClassification", num_labels=3,
                              id2label={0: "neg", 1: "neutral", 2: "pos"},
                              label2id={"neg": 0, "neutral": 1, "pos": 2})
    ours = bertcpu.BertForSequenceClassification.from_pretrained(folder).classify(NER_TEXTS, top_k=None)
    pipe = transformers.pipeline("text-classification", model=str(folder), device="cpu")
    reference = pipe(NER_TEXTS, top_k=None)
    for mine, theirs in zip(ours, reference):
        assert [r["label"] for r in mine] == [r["label"] for r in theirs]
        assert np.allclose([r["score"] for r in mine], [r["score"] for r in theirs], atol=1e-5)


@pytest.mark.parametrize("tied,act", [(True, "gelu"), (False, "relu")])
def test_masked_lm_logits_match_transformers(head_dir_factory, tied, act):
    folder = head_dir_factory("BertForMaskedLM", tie_word_embeddings=tied, hidden_act=act)
    ours = bertcpu.BertForMaskedLM.from_pretrained(folder)
    assert ours.tied == tied
    ids, mask, types = _batch(ours.tokenizer, DOCUMENTS)
    reference = _reference_logits(folder, "BertForMaskedLM", ids, mask, types)
    real = mask.astype(bool)
    assert np.abs(ours(ids, mask, types)[real] - reference[real]).max() <= TOLERANCE


def test_fill_mask_matches_the_pipeline(head_dir_factory):
    import transformers

    folder = head_dir_factory("BertForMaskedLM")
    texts = ["Paris is the [MASK] of France.", "The [MASK] sat on the [MASK]."]
    ours = bertcpu.BertForMaskedLM.from_pretrained(folder).fill_mask(texts, top_k=3)
    reference = transformers.pipeline("fill-mask", model=str(folder), device="cpu")(texts, top_k=3)
    for mine, theirs in zip(ours, reference):
        flat_mine = mine if isinstance(mine[0], dict) else [p for m in mine for p in m]
        flat_theirs = theirs if isinstance(theirs[0], dict) else [p for m in theirs for p in m]
        assert [(p["token"], p["token_str"], p["sequence"]) for p in flat_mine] == \
            [(p["token"], p["token_str"], p["sequence"]) for p in flat_theirs]
        assert np.allclose([p["score"] for p in flat_mine], [p["score"] for p in flat_theirs], atol=1e-5)


def test_fill_mask_targets_match_the_pipeline(head_dir_factory):
    import transformers

    folder = head_dir_factory("BertForMaskedLM")
    model = bertcpu.BertForMaskedLM.from_pretrained(folder)
    pipe = transformers.pipeline("fill-mask", model=str(folder), device="cpu")
    texts = ["Paris is the [MASK] of France.", "The [MASK] sat on the [MASK]."]
    # In-vocabulary targets (one repeated), fewer than top_k and more than top_k of them.
    for targets, top_k in [(["capital", "city", "capital"], 5), ("the", 3),
                           (["capital", "city", "town", "cat", "mat", "dog", "the"], 3)]:
        ours = model.fill_mask(texts, top_k=top_k, targets=targets)
        theirs = pipe(texts, top_k=top_k, targets=targets)
        for mine, reference in zip(ours, theirs):
            flat_mine = mine if isinstance(mine[0], dict) else [p for m in mine for p in m]
            flat_ref = reference if isinstance(reference[0], dict) else [p for m in reference for p in m]
            assert [(p["token"], p["sequence"]) for p in flat_mine] == \
                [(p["token"], p["sequence"]) for p in flat_ref]
            assert np.allclose([p["score"] for p in flat_mine], [p["score"] for p in flat_ref],
                               atol=1e-5)
    # A target outside the vocabulary is replaced by its first word piece, with a warning.
    with pytest.warns(UserWarning, match="not in the vocabulary"):
        ours = model.fill_mask(texts[0], top_k=2, targets=["capitalxyz", "city"])
    theirs = pipe(texts[0], top_k=2, targets=["capitalxyz", "city"])
    assert [p["token"] for p in ours] == [p["token"] for p in theirs]


def test_fill_mask_rejects_bad_targets(head_dir_factory):
    model = bertcpu.BertForMaskedLM.from_pretrained(head_dir_factory("BertForMaskedLM"))
    with pytest.raises(ValueError, match="targets must be"):
        model.fill_mask("a [MASK] b", targets=[3])
    with pytest.warns(UserWarning, match="makes no token"), \
            pytest.raises(ValueError, match="no usable target"):
        model.fill_mask("a [MASK] b", targets=["   "])


def test_token_classification_logits_match_transformers(head_dir_factory):
    folder = head_dir_factory("BertForTokenClassification", num_labels=len(NER_LABELS),
                              id2label=dict(enumerate(NER_LABELS)))
    ours = bertcpu.BertForTokenClassification.from_pretrained(folder)
    ids, mask, types = _batch(ours.tokenizer, NER_TEXTS)
    reference = _reference_logits(folder, "BertForTokenClassification", ids, mask, types)
    real = mask.astype(bool)
    assert np.abs(ours(ids, mask, types)[real] - reference[real]).max() <= TOLERANCE


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_matches_the_pipeline(head_dir_factory, strategy):
    import transformers

    # Larger weights than the other tests' so that the labels vary along each text.
    folder = head_dir_factory("BertForTokenClassification", num_labels=len(NER_LABELS),
                              id2label=dict(enumerate(NER_LABELS)), initializer_range=0.5)
    ours = bertcpu.BertForTokenClassification.from_pretrained(folder).predict(
        NER_TEXTS, aggregation_strategy=strategy)
    pipe = transformers.pipeline("token-classification", model=str(folder), device="cpu",
                                 aggregation_strategy=strategy)
    reference = pipe(NER_TEXTS)
    assert sum(len(r) for r in reference) > 3  # the comparison covers real entities
    for mine, theirs in zip(ours, reference):
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            assert {k: v for k, v in a.items() if k != "score"} == \
                {k: (int(v) if k in ("index", "start", "end") else v) for k, v in b.items() if k != "score"}
            assert abs(float(a["score"]) - float(b["score"])) <= 1e-5


# -- CrossEncoder against sentence-transformers --------------------------------------------------------

@pytest.mark.parametrize("max_length", [None, 24])
def test_cross_encoder_matches_sentence_transformers(head_dir_factory, max_length):
    from sentence_transformers import CrossEncoder

    folder = head_dir_factory("BertForSequenceClassification", num_labels=1, initializer_range=0.2)
    ours = bertcpu.CrossEncoder.from_pretrained(folder, max_length=max_length)
    theirs = CrossEncoder(str(folder), device="cpu", max_length=max_length)
    pairs = [(QUERY, doc) for doc in DOCUMENTS] + [(doc, QUERY) for doc in DOCUMENTS]
    scores = ours.predict(pairs, batch_size=4)
    reference = theirs.predict(pairs, batch_size=4)
    assert scores.shape == (len(pairs),) and scores.dtype == np.float32
    assert np.abs(scores - reference).max() <= 1e-5
    assert ours.rank(QUERY, DOCUMENTS, return_documents=True, top_k=4) == [
        {**r, "score": pytest.approx(r["score"], abs=1e-5)}
        for r in theirs.rank(QUERY, DOCUMENTS, return_documents=True, top_k=4)]
    assert [r["corpus_id"] for r in ours.rank(QUERY, DOCUMENTS)] == \
        [r["corpus_id"] for r in theirs.rank(QUERY, DOCUMENTS)]
    assert float(ours.predict([QUERY, DOCUMENTS[0]])) == pytest.approx(float(scores[0]), abs=1e-6)


def test_cross_encoder_labels_softmax_and_saved_activation(head_dir_factory, tmp_path):
    import torch
    from sentence_transformers import CrossEncoder

    folder = head_dir_factory("BertForSequenceClassification", num_labels=3)
    theirs = CrossEncoder(str(folder), device="cpu", activation_fn=torch.nn.Tanh())
    theirs.save(str(tmp_path))  # the activation goes into the saved configuration
    ours = bertcpu.CrossEncoder.from_pretrained(tmp_path)
    theirs = CrossEncoder(str(tmp_path), device="cpu")
    pairs = [(QUERY, doc) for doc in DOCUMENTS]
    for kwargs in ({}, {"apply_softmax": True}):
        mine, reference = ours.predict(pairs, **kwargs), theirs.predict(pairs, **kwargs)
        assert mine.shape == (len(pairs), 3)
        assert np.abs(mine - reference).max() <= 1e-5
    # Default activation of a plain folder with several labels: identity (raw logits).
    plain = bertcpu.CrossEncoder.from_pretrained(folder).predict(pairs)
    assert np.abs(plain - CrossEncoder(str(folder), device="cpu").predict(pairs)).max() <= 1e-5


def test_cross_encoder_on_real_minilm_encoder(minilm_head_factory):
    from sentence_transformers import CrossEncoder

    folder = minilm_head_factory("BertForSequenceClassification", num_labels=1)
    ours = bertcpu.CrossEncoder.from_pretrained(folder)
    theirs = CrossEncoder(str(folder), device="cpu")
    mine, reference = ours.predict([(QUERY, d) for d in DOCUMENTS]), theirs.predict([(QUERY, d) for d in DOCUMENTS])
    assert np.abs(mine - reference).max() <= 1e-5
    assert [r["corpus_id"] for r in ours.rank(QUERY, DOCUMENTS)] == \
        [r["corpus_id"] for r in theirs.rank(QUERY, DOCUMENTS)]


def test_two_stage_api_gives_predict_scores(head_dir_factory):
    folder = head_dir_factory("BertForSequenceClassification", num_labels=1, initializer_range=0.2)
    ours = bertcpu.CrossEncoder.from_pretrained(folder)
    pairs = [(QUERY, doc) for doc in DOCUMENTS]
    tokens = ours.tokenize(pairs)
    assert all(isinstance(t, Tokens) for t in tokens)
    # Items of different requests in one call, in any order: the same scores as predict.
    mixed = ours.score_tokens(tokens[::-1])[::-1]
    assert np.abs(mixed - ours.predict(pairs)).max() <= 1e-6
    as_lists = ours.score_tokens([(t.input_ids, t.token_type_ids) for t in tokens])
    assert np.abs(as_lists - mixed).max() <= 1e-6


# -- SparseEncoder against sentence-transformers -------------------------------------------------------

def _assert_sparse_match(mine, reference_dense):
    reference_dense = np.asarray(reference_dense, dtype=np.float32)
    for vector, row in zip(mine, reference_dense):
        assert vector.dim == row.size
        assert np.array_equal(vector.indices, np.flatnonzero(row))
        assert np.abs(vector.values - row[vector.indices]).max(initial=0.0) <= 1e-4


def _st_dense(model, texts, method="encode", **kwargs):
    out = getattr(model, method)(texts, convert_to_tensor=True, **kwargs)
    return out.to_dense().numpy()


@pytest.mark.parametrize("source", ["random", "minilm"])
def test_sparse_encoder_matches_sentence_transformers(head_dir_factory, minilm_head_factory, source):
    from sentence_transformers import SparseEncoder

    folder = (head_dir_factory("BertForMaskedLM") if source == "random"
              else minilm_head_factory("BertForMaskedLM"))
    ours = bertcpu.SparseEncoder.from_pretrained(folder)
    theirs = SparseEncoder(str(folder), device="cpu")
    texts = DOCUMENTS + NER_TEXTS
    mine = ours.encode_document(texts, batch_size=3)
    _assert_sparse_match(mine, _st_dense(theirs, texts, "encode_document", batch_size=3))
    assert 0 < len(mine[0]) < ours.vocab_size  # a real sparse vector, not all or nothing
    _assert_sparse_match([ours.encode_query(QUERY)], _st_dense(theirs, [QUERY], "encode_query"))
    pruned = ours.encode(texts, max_active_dims=16)
    _assert_sparse_match(pruned, _st_dense(theirs, texts, max_active_dims=16))
    assert all(len(v) <= 16 for v in pruned)
    reference_decoded = theirs.decode(theirs.encode(texts[0], convert_to_tensor=True), top_k=5)
    decoded = ours.decode(mine[0], top_k=5)
    assert [t for t, _ in decoded] == [t for t, _ in reference_decoded]
    assert np.allclose([w for _, w in decoded], [w for _, w in reference_decoded], atol=1e-4)


@pytest.mark.parametrize("pooling,activation", [("sum", "relu"), ("max", "log1p_relu")])
def test_sparse_encoder_pooling_variants(head_dir_factory, tmp_path, pooling, activation):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    folder = head_dir_factory("BertForMaskedLM")
    transformer = Transformer(str(folder), transformer_task="fill-mask")
    theirs = SparseEncoder(modules=[transformer, SpladePooling(pooling, activation)], device="cpu")
    theirs.save(str(tmp_path))
    ours = bertcpu.SparseEncoder.from_pretrained(tmp_path)
    assert (ours.pooling_strategy, ours.activation_function) == (pooling, activation)
    _assert_sparse_match(ours.encode(DOCUMENTS), _st_dense(theirs, DOCUMENTS))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
def test_sparse_pooling_never_materializes_per_token_logits_but_equals_them(head_dir_factory,
                                                                            dtype):
    """splade() (pooled inside the projection, in the head's precision) against the full logits
    the same head gives; sequences of odd lengths, so that blocks start at any row."""
    if dtype != "float32" and bertcpu.cpu_info()[f"{dtype}_isas"] == ["generic"]:
        pytest.skip(f"no {dtype} kernels on this CPU")
    masked_lm = bertcpu.BertForMaskedLM.from_pretrained(head_dir_factory("BertForMaskedLM"),
                                                        dtype=dtype)
    ids, mask, types = _batch(masked_lm.tokenizer, DOCUMENTS + [d + " x" for d in DOCUMENTS])
    logits = masked_lm(ids, mask, types)
    for pooling in ("max", "sum"):
        act = np.log1p(np.maximum(np.where(mask[..., None] == 1, logits, -np.inf), 0))
        expected = act.max(axis=1) if pooling == "max" else act.sum(axis=1)
        pooled = masked_lm.splade(ids, mask, types, pooling=pooling)
        assert np.abs(pooled - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


# -- low precision -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_low_precision_heads_stay_close(minilm_head_factory, dtype):
    if bertcpu.cpu_info()[f"{dtype}_isas"] == ["generic"]:
        pytest.skip(f"no {dtype} kernels on this CPU")
    folder = minilm_head_factory("BertForMaskedLM")
    fp32 = bertcpu.SparseEncoder.from_pretrained(folder).encode(DOCUMENTS)
    low = bertcpu.SparseEncoder.from_pretrained(folder, dtype=dtype).encode(DOCUMENTS)
    a, b = bertcpu.heads.to_dense(fp32), bertcpu.heads.to_dense(low)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99
    ce_folder = minilm_head_factory("BertForSequenceClassification", num_labels=1)
    pairs = [(QUERY, d) for d in DOCUMENTS]
    fp32_scores = bertcpu.CrossEncoder.from_pretrained(ce_folder).predict(pairs)
    low_scores = bertcpu.CrossEncoder.from_pretrained(ce_folder, dtype=dtype).predict(pairs)
    assert np.abs(fp32_scores - low_scores).max() < 0.02


# -- errors -----------------------------------------------------------------------------------------

def test_head_asked_of_a_checkpoint_without_it(head_dir_factory, bert_dir_factory):
    encoder_only = head_dir_factory("BertModel")
    with pytest.raises(ValueError, match="classifier.weight.*sequence-classification head"):
        bertcpu.CrossEncoder.from_pretrained(encoder_only)
    with pytest.raises(ValueError, match="token-classification head"):
        bertcpu.BertForTokenClassification.from_pretrained(encoder_only)
    with pytest.raises(ValueError, match="cls.predictions.*masked-LM head"):
        bertcpu.SparseEncoder.from_pretrained(encoder_only)
    masked_lm = head_dir_factory("BertForMaskedLM")  # no pooler
    with pytest.raises(ValueError, match="no tensor 'classifier.weight'"):
        bertcpu.BertForSequenceClassification.from_pretrained(masked_lm)


def test_label_count_disagreeing_with_the_classifier(head_dir_factory, tmp_path):
    folder = head_dir_factory("BertForSequenceClassification", num_labels=3)
    shutil.copytree(folder, tmp_path / "model")
    config_path = tmp_path / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["id2label"] = {"0": "a", "1": "b"}
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"has shape \[3, 32\], expected \[2, 32\].*2 label"):
        bertcpu.BertForSequenceClassification.from_pretrained(tmp_path / "model")


def test_malformed_pairs(head_dir_factory):
    ours = bertcpu.CrossEncoder.from_pretrained(head_dir_factory("BertForSequenceClassification", num_labels=1))
    for bad, message in [([("a", "b"), ("only one",)], r"pairs\[1\] must be a \(text, text\) pair"),
                         ([("a", "b"), ("a", 3)], r"pairs\[1\]"),
                         ([["a", "b", "c"]], r"pairs\[0\].*length 3")]:
        with pytest.raises(ValueError, match=message):
            ours.predict(bad)
    with pytest.raises(TypeError, match="single str"):
        ours.predict("just a string")
    with pytest.raises(ValueError, match="one-label"):
        bertcpu.CrossEncoder.from_pretrained(
            head_dir_factory("BertForSequenceClassification", num_labels=3)).rank(QUERY, DOCUMENTS)
    with pytest.raises(ValueError, match="item 0 has no tokens"):
        ours.score_tokens([[]])
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 30522\)"):
        ours.score_tokens([[101, 40000, 102]])


def test_empty_inputs(head_dir_factory):
    ours = bertcpu.CrossEncoder.from_pretrained(head_dir_factory("BertForSequenceClassification", num_labels=1))
    assert ours.predict([]).shape == (0,) and ours.rank(QUERY, []) == []
    sparse = bertcpu.SparseEncoder.from_pretrained(head_dir_factory("BertForMaskedLM"))
    assert sparse.encode([]) == [] and sparse.encode_tokens([]) == []


def test_sequence_classifier_without_pooler(head_dir_factory, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = head_dir_factory("BertForSequenceClassification", num_labels=2)
    shutil.copytree(folder, tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "pooler" not in k},
              str(tmp_path / "model" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"classifies the pooler output.*no pooler weights"):
        bertcpu.BertForSequenceClassification.from_pretrained(tmp_path / "model")


@pytest.mark.parametrize("isa", bertcpu.cpu_info()["available_isas"])
def test_vocab_head_against_numpy_on_every_isa(isa):
    """The engine's masked-LM head (odd sizes, padding on both sides) against float64 numpy:
    logits, and every SPLADE pooling (max / sum, log1p once or twice)."""
    from scipy.special import erf

    from bertcpu import _core

    rng = np.random.default_rng(0)
    H, V = 40, 1003
    head = _core.VocabHead(H, V, "gelu", 1e-12, isa)
    weights = {name: (rng.standard_normal(shape) * (0.3 if len(shape) == 2 else 0.1)).astype(np.float32)
               for name, shape in head.expected_weights()}
    weights["transform.LayerNorm.weight"] += 1
    for name, array in weights.items():
        head.set_weight(name, array)
    head.finalize()

    def logits(x):
        t = x.astype(np.float64) @ weights["transform.dense.weight"].T + weights["transform.dense.bias"]
        t = 0.5 * t * (1 + erf(t / np.sqrt(2)))
        t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, keepdims=True) + 1e-12)
        t = t * weights["transform.LayerNorm.weight"] + weights["transform.LayerNorm.bias"]
        return t @ weights["decoder.weight"].T + weights["bias"]

    hidden = rng.standard_normal((3, 300, H)).astype(np.float32)
    mask = np.ones((3, 300), dtype=np.int64)
    mask[1, 10:] = 0
    mask[2, :3] = 0
    assert np.abs(head.logits(hidden[0, :7]) - logits(hidden[0, :7])).max() <= 1e-4
    for pooling in ("max", "sum"):
        for steps in (1, 2):
            expected = []
            for row in range(3):
                values = np.maximum(logits(hidden[row][mask[row] == 1]), 0)
                for _ in range(steps):
                    values = np.log1p(values)
                expected.append(values.max(0) if pooling == "max" else values.sum(0))
            got = head.pool(hidden, mask, pooling, steps)
            assert np.abs(got - np.array(expected)).max() <= (1e-4 if pooling == "max" else 1e-3)
    with pytest.raises(ValueError, match="all-zero attention_mask"):
        head.pool(hidden, np.zeros((3, 300), dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        head.set_weight("bias", np.zeros(V + 1, dtype=np.float32))


def test_concurrent_calls_give_sequential_results(head_dir_factory):
    """A batcher thread and a caller's thread may share one head: the engine releases the GIL
    and the masked-LM head keeps no per-model scratch."""
    from concurrent.futures import ThreadPoolExecutor

    sparse = bertcpu.SparseEncoder.from_pretrained(head_dir_factory("BertForMaskedLM"))
    reranker = bertcpu.CrossEncoder.from_pretrained(
        head_dir_factory("BertForSequenceClassification", num_labels=1, initializer_range=0.2))
    expected_sparse = bertcpu.heads.to_dense(sparse.encode(DOCUMENTS))
    expected_scores = reranker.predict([(QUERY, d) for d in DOCUMENTS])
    with ThreadPoolExecutor(4) as pool:
        sparse_runs = [pool.submit(sparse.encode, DOCUMENTS) for _ in range(4)]
        score_runs = [pool.submit(reranker.predict, [(QUERY, d) for d in DOCUMENTS]) for _ in range(4)]
        for run in sparse_runs:
            assert np.array_equal(bertcpu.heads.to_dense(run.result()), expected_sparse)
        for run in score_runs:
            assert np.array_equal(run.result(), expected_scores)
