"""`bertcpu serve` for the other model kinds: a reranker (/rerank, /predict), a classifier
(/predict) and a SPLADE sparse encoder (/embed_sparse), each started for real in a subprocess
(tests/test_serve.py's Server) and compared with sentence-transformers' CrossEncoder and
SparseEncoder and transformers' text-classification pipeline. The encoders are the real
all-MiniLM-L6-v2 under freshly initialised heads."""
import numpy as np
import pytest

from test_serve import Server, assert_close

QUERY = "how do plants make food from sunlight?"
DOCUMENTS = [
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The stock market fell sharply on Monday.",
    "Plants use chlorophyll to capture sunlight, water and carbon dioxide to make sugar " * 40,
    "Ünïcödé wörds, CJK 中文字符 and an emoji 🙂",
    "short",
]


@pytest.fixture(scope="module")
def reranker_dir(minilm_head_factory):
    return minilm_head_factory("BertForSequenceClassification", num_labels=1)


@pytest.fixture(scope="module")
def reranker(reranker_dir, tmp_path_factory):
    running = Server(reranker_dir, tmp_path_factory.mktemp("reranker"))
    yield running
    assert running.stop() == 0, running.log()


def test_rerank_matches_sentence_transformers(reranker, reranker_dir):
    import torch
    from sentence_transformers import CrossEncoder

    reference = CrossEncoder(str(reranker_dir), device="cpu")
    answer = reranker.post("/rerank", {"query": QUERY, "texts": DOCUMENTS, "return_text": True,
                                       "truncate": True}, headers={})
    assert answer.status_code == 200, answer.text
    ranked = answer.json()
    expected = reference.rank(QUERY, DOCUMENTS, return_documents=True)
    assert [r["index"] for r in ranked] == [r["corpus_id"] for r in expected]
    assert_close([r["score"] for r in ranked], [r["score"] for r in expected])
    assert [r["text"] for r in ranked] == [r["text"] for r in expected]
    raw = reranker.post("/rerank", {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True,
                                    "truncate": True}, headers={}).json()
    logits = CrossEncoder(str(reranker_dir), device="cpu", activation_fn=torch.nn.Identity()).predict(
        [(QUERY, doc) for doc in DOCUMENTS])
    assert_close([r["score"] for r in sorted(raw, key=lambda r: r["index"])], logits)
    pairs = [[QUERY, doc] for doc in DOCUMENTS[:2]]
    predicted = reranker.post("/predict", {"inputs": pairs}, headers={}).json()
    assert_close([p[0]["score"] for p in predicted], reference.predict(pairs))
    assert predicted[0][0]["label"] == "LABEL_0"
    root = reranker.post("/", {"query": QUERY, "texts": DOCUMENTS[:2]}, headers={})  # TEI's root
    assert [r["index"] for r in root.json()] == [r["index"] for r in ranked if r["index"] < 2]


def test_reranker_errors(reranker):
    too_long = reranker.post("/rerank", {"query": QUERY, "texts": DOCUMENTS}, headers={})
    assert too_long.status_code == 422 and "input 2 has" in too_long.json()["error"]
    left = reranker.post("/rerank", {"query": QUERY, "texts": DOCUMENTS, "truncate": True,
                                     "truncation_direction": "Left"}, headers={})
    assert left.status_code == 422 and "pairs" in left.json()["error"]
    assert reranker.post("/rerank", {"query": QUERY, "texts": []}, headers={}).status_code == 400
    assert reranker.post("/predict", {"inputs": [["a", "b", "c"]]}, headers={}).status_code == 422
    assert reranker.post("/embed", {"inputs": "a"}, headers={}).status_code == 404
    assert reranker.post("/v1/embeddings", {"input": "a"}, headers={}).status_code == 404


def test_classifier_matches_the_text_classification_pipeline(minilm_head_factory, tmp_path):
    from transformers import pipeline

    folder = minilm_head_factory("BertForSequenceClassification", num_labels=3)
    running = Server(folder, tmp_path)
    try:
        reference = pipeline("text-classification", model=str(folder), device="cpu", top_k=None)
        texts = DOCUMENTS[:2] + DOCUMENTS[3:]
        answer = running.post("/predict", {"inputs": [[t] for t in texts]}, headers={})
        assert answer.status_code == 200, answer.text
        for ours, theirs in zip(answer.json(), reference(texts)):
            assert [p["label"] for p in ours] == [p["label"] for p in theirs]
            assert_close([p["score"] for p in ours], [p["score"] for p in theirs])
        single = running.post("/predict", {"inputs": texts[0]}, headers={}).json()
        assert [p["label"] for p in single] == [p["label"] for p in reference([texts[0]])[0]]
        pair = running.post("/", {"inputs": ["a question", "an answer"]}, headers={}).json()
        expected = reference([{"text": "a question", "text_pair": "an answer"}])[0]
        assert_close([p["score"] for p in pair], [p["score"] for p in expected])
        info = running.post("/rerank", {"query": "q", "texts": ["a"]}, headers={})
        assert info.status_code == 404  # several labels: a classifier, not a reranker
    finally:
        assert running.stop() == 0, running.log()


def test_embed_sparse_matches_sentence_transformers(minilm_head_factory, tmp_path):
    from sentence_transformers import SparseEncoder

    reference = SparseEncoder(str(minilm_head_factory("BertForMaskedLM")), device="cpu")
    folder = tmp_path / "splade"
    reference.save(str(folder))
    running = Server(folder, tmp_path)
    try:
        texts = DOCUMENTS[:2] + DOCUMENTS[3:]
        answer = running.post("/embed_sparse", {"inputs": texts}, headers={})
        assert answer.status_code == 200, answer.text
        expected = reference.encode(texts, convert_to_tensor=True).to_dense().numpy()
        for vector, row in zip(answer.json(), expected):
            indices = [value["index"] for value in vector]
            assert indices == np.flatnonzero(row).tolist()
            assert_close([value["value"] for value in vector], row[indices], atol=1e-4)
        assert running.post("/embed", {"inputs": "a"}, headers={}).status_code == 404
        too_long = running.post("/embed_sparse", {"inputs": DOCUMENTS[2]}, headers={})
        assert too_long.status_code == 422
    finally:
        assert running.stop() == 0, running.log()
