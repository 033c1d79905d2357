"""`bertcpu rerank`, `classify`, `embed --sparse` and `inspect` on task-head models, through
`python -m bertcpu` in a subprocess; outputs compared with the library (itself tested against
sentence-transformers and transformers in test_heads.py)."""
import json

import numpy as np

import bertcpu
from test_cli import assert_ok, assert_user_error, run_cli

DOCS = ["Photosynthesis turns light into sugar.", "Stocks fell on Monday.", "Plants need light.",
        "Ünïcödé wörds 🙂"]
QUERY = "how do plants make food?"


def read_jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def test_rerank(head_dir_factory, tmp_path):
    folder = head_dir_factory("BertForSequenceClassification", num_labels=1, initializer_range=0.2)
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    result = assert_ok(run_cli("rerank", folder, "--query", QUERY, "--docs", docs, "--top-k", 3))
    expected = bertcpu.CrossEncoder.from_pretrained(folder).rank(QUERY, DOCS, top_k=3, return_documents=True)
    ranked = read_jsonl(result.stdout)
    assert [(r["corpus_id"], r["text"]) for r in ranked] == [(r["corpus_id"], r["text"]) for r in expected]
    assert np.allclose([r["score"] for r in ranked], [r["score"] for r in expected], atol=1e-6)
    assert_user_error(run_cli("rerank", folder, "--query", QUERY, "--docs", tmp_path / "missing"),
                      "missing", "no such file")
    labels3 = head_dir_factory("BertForSequenceClassification", num_labels=3)
    assert_user_error(run_cli("rerank", labels3, "--query", QUERY, "--docs", docs), "one-label")
    assert_user_error(run_cli("rerank", head_dir_factory("BertModel"), "--query", QUERY, "--docs", docs),
                      "classifier.weight", "sequence-classification head")


def test_classify_sequences_and_tokens(head_dir_factory):
    folder = head_dir_factory("BertForSequenceClassification", num_labels=3)
    result = read_jsonl(assert_ok(run_cli("classify", folder, *DOCS, "--top-k", 2)).stdout)
    expected = bertcpu.BertForSequenceClassification.from_pretrained(folder).classify(DOCS, top_k=2)
    assert [r["text"] for r in result] == DOCS
    assert [[x["label"] for x in r["labels"]] for r in result] == [[x["label"] for x in e] for e in expected]
    ner = head_dir_factory("BertForTokenClassification", num_labels=6,
                           id2label=dict(enumerate(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC"])),
                           initializer_range=0.5)
    result = read_jsonl(assert_ok(run_cli("classify", ner, *DOCS, "--aggregation", "first")).stdout)
    expected = bertcpu.BertForTokenClassification.from_pretrained(ner).predict(DOCS, aggregation_strategy="first")
    for record, entities in zip(result, expected):
        assert [(e["entity_group"], e["start"], e["end"]) for e in record["entities"]] == \
            [(e["entity_group"], e["start"], e["end"]) for e in entities]
    assert_user_error(run_cli("classify", head_dir_factory("BertForMaskedLM"), "text"),
                      "BertForMaskedLM", "classify runs")


def test_embed_sparse(head_dir_factory, tmp_path):
    folder = head_dir_factory("BertForMaskedLM")
    output = tmp_path / "sparse.jsonl"
    assert_ok(run_cli("embed", "-m", folder, "--sparse", "--max-active-dims", 20, "--output", output, *DOCS))
    records = read_jsonl(output.read_text(encoding="utf-8"))
    expected = bertcpu.SparseEncoder.from_pretrained(folder).encode(DOCS, max_active_dims=20)
    for record, vector in zip(records, expected):
        assert record["indices"] == vector.indices.tolist()
        assert np.array_equal(np.asarray(record["values"], dtype=np.float32), vector.values)
    assert_user_error(run_cli("embed", "-m", folder, "--sparse", "--output", tmp_path / "x.npy", "a"),
                      "--sparse writes JSON lines")


def test_inspect_names_the_head(head_dir_factory):
    folder = head_dir_factory("BertForSequenceClassification", num_labels=3,
                              id2label={0: "neg", 1: "neutral", 2: "pos"},
                              label2id={"neg": 0, "neutral": 1, "pos": 2})
    out = assert_ok(run_cli("inspect", folder)).stdout
    assert "head: BertForSequenceClassification: 3 label(s) (neg, neutral, pos)" in out
    out = json.loads(assert_ok(run_cli("inspect", head_dir_factory("BertForMaskedLM", tie_word_embeddings=False),
                                       "--json")).stdout)
    assert out["head"] == "BertForMaskedLM: decoder untied (fill-mask, SPLADE)"
    assert "head: none (encoder only)" in assert_ok(run_cli("inspect", head_dir_factory("BertModel"))).stdout
