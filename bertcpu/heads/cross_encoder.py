"""CrossEncoder: sentence-transformers' CrossEncoder (predict, rank) on bertcpu's engine.

A cross-encoder reads a (query, document) pair as one sequence, [CLS] q [SEP] d [SEP], and scores
it with a sequence-classification head; rerankers (ms-marco-MiniLM, bge-reranker-style BERTs) are
such models with one label.
"""
import numpy as np

from .._files import read_json
from ..hub import resolve_model_path
from ..sentence import max_seq_length_for, module_folder, read_modules_json, transformer_settings
from ..st_modules import TORCH_ACTIVATIONS
from ._common import batches_by_length, encoded_to_tokens, softmax
from .sequence_classification import BertForSequenceClassification


def activation_by_name(name, source):
    """A torch.nn activation named by its class or dotted path ("Sigmoid",
    "torch.nn.modules.activation.Sigmoid") -> the numpy function (sentence.TORCH_ACTIVATIONS)."""
    short = name.rsplit(".", 1)[-1] if isinstance(name, str) else None
    if short not in TORCH_ACTIVATIONS or (name != short and not name.startswith("torch.")):
        raise ValueError(f"{source}: activation {name!r} is not supported; supported: "
                         f"{', '.join('torch.nn.' + n for n in TORCH_ACTIVATIONS)}")
    return short


class CrossEncoder:
    """Scores (text, text) pairs as sentence-transformers' CrossEncoder does, without torch.

    Two-stage API (what a server's batcher calls): ``tokenize(pairs)`` -> one Tokens per pair,
    truncated longest_first to max_length; ``score_tokens(tokens, activation_fn=None,
    apply_softmax=False)`` -> the scores of any list of Tokens in one engine call (float32 [n] for
    a one-label model, [n, num_labels] otherwise), exactly what predict returns for those pairs.
    predict and rank are these two stages with batching by length in between.
    """

    def __init__(self, classifier, max_length, activation_fn, name_or_path=None):
        self.classifier = classifier
        self.tokenizer = classifier.tokenizer
        self.max_length = max_length
        self.activation_fn = activation_fn
        self.name_or_path = name_or_path

    @classmethod
    def from_pretrained(cls, name_or_path, max_length=None, activation_fn=None, num_threads=None,
                        isa=None, dtype="float32", revision=None, cache_dir=None):
        """Load a cross-encoder folder (a transformers BertForSequenceClassification folder, or
        one CrossEncoder.save wrote) or a hub id from the HuggingFace cache.

        max_length: truncation length of a pair (default: the model's, as sentence-transformers
        reads it). activation_fn: applied to the logits in predict (a callable on numpy arrays or
        a torch.nn activation name); default, as sentence-transformers: the one the model's
        config names, else Sigmoid for one label and Identity otherwise. dtype: the encoder's
        precision ("float32", "bfloat16", "int8").
        """
        root = resolve_model_path(name_or_path, revision=revision, cache_dir=cache_dir)
        st_config_file = root / "config_sentence_transformers.json"
        st_config = read_json(st_config_file) if st_config_file.is_file() else {}
        model_type = st_config.get("model_type", "CrossEncoder")
        if model_type != "CrossEncoder":
            raise ValueError(f"{st_config_file}: model_type {model_type!r} is not a CrossEncoder")
        folder = _transformer_folder(root)
        settings = transformer_settings(folder, "sequence-classification", "logits")
        classifier = BertForSequenceClassification.from_pretrained(folder, num_threads=num_threads,
                                                                   isa=isa, dtype=dtype)
        if classifier.tokenizer is None:
            raise ValueError(f"{folder}: no tokenizer files (vocab.txt or tokenizer.json)")
        classifier.tokenizer = settings["tokenizer"]  # with the module's do_lower_case
        if max_length is None:
            max_length = max_seq_length_for(settings, classifier.config)
        elif isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
        max_length = min(max_length, classifier.config.max_position_embeddings)
        if activation_fn is None:
            activation_fn = _configured_activation(root, folder, st_config, classifier.num_labels)
        encoder = cls(classifier, max_length, None, name_or_path=str(name_or_path))
        encoder.activation_fn = encoder._activation(activation_fn)
        return encoder

    @property
    def num_labels(self):
        return self.classifier.num_labels

    @property
    def config(self):
        return self.classifier.config

    # -- two-stage API -----------------------------------------------------------------------------

    def tokenize(self, pairs):
        """A list of (text, text) pairs -> a list of Tokens, truncated longest_first to
        max_length."""
        firsts, seconds = _split_pairs(pairs)
        if not firsts:
            return []
        encoded = self.tokenizer(firsts, seconds, truncation="longest_first", max_length=self.max_length)
        return encoded_to_tokens(encoded)

    def score_tokens(self, tokens, activation_fn=None, apply_softmax=False):
        """Scores of tokenized pairs, one engine call: float32 [n] (one label) or [n, labels]."""
        if len(tokens) == 0:
            shape = (0,) if self.num_labels == 1 else (0, self.num_labels)
            return np.zeros(shape, dtype=np.float32)
        logits = self.classifier.logits_tokens(tokens)
        activation = self.activation_fn if activation_fn is None else self._activation(activation_fn)
        scores = np.asarray(activation(logits), dtype=np.float32)
        if self.num_labels == 1:
            scores = scores[:, 0]
        elif apply_softmax:
            scores = softmax(scores, axis=1)
        return scores

    # -- sentence-transformers' API ----------------------------------------------------------------

    def predict(self, sentences, batch_size=32, show_progress_bar=None, activation_fn=None,
                apply_softmax=False, convert_to_numpy=True, convert_to_tensor=False):
        """Scores of (text, text) pairs: float32 [n] for a one-label model, [n, labels]
        otherwise; a single pair gives a single score (row). activation_fn: overrides the model's
        activation for this call; apply_softmax: softmax over labels (models with several).
        convert_to_numpy=False gives a list of per-pair values; torch tensors are not produced."""
        if convert_to_tensor:
            raise ValueError("convert_to_tensor: bertcpu returns numpy arrays, not torch tensors")
        single = _is_single_pair(sentences)
        pairs = [sentences] if single else sentences
        tokens = self.tokenize(pairs)
        shape = (len(tokens),) if self.num_labels == 1 else (len(tokens), self.num_labels)
        scores = np.zeros(shape, dtype=np.float32)
        for batch in batches_by_length(tokens, batch_size):
            scores[batch] = self.score_tokens([tokens[i] for i in batch], activation_fn, apply_softmax)
        if single:
            return scores[0]
        return scores if convert_to_numpy else list(scores)

    def rank(self, query, documents, top_k=None, return_documents=False, batch_size=32,
             show_progress_bar=None, activation_fn=None):
        """Documents ranked by their score against query: a list of {"corpus_id", "score"} (and
        "text" with return_documents), best first (ties in input order), top_k of them."""
        if self.num_labels != 1:
            raise ValueError(f"rank() needs a one-label model; this one has {self.num_labels} labels "
                             f"(use predict on pairs)")
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if isinstance(documents, str):
            raise TypeError("documents must be a list of str, got a single str")
        documents = list(documents)
        scores = self.predict([(query, doc) for doc in documents], batch_size=batch_size,
                              activation_fn=activation_fn)
        results = [{"corpus_id": i, "score": float(score)} for i, score in enumerate(scores)]
        if return_documents:
            for result in results:
                result["text"] = documents[result["corpus_id"]]
        results.sort(key=lambda r: r["score"], reverse=True)
        return results[:top_k]

    def _activation(self, activation_fn):
        if callable(activation_fn):
            return activation_fn
        return TORCH_ACTIVATIONS[activation_by_name(activation_fn, "activation_fn")]

    def __repr__(self):
        return (f"CrossEncoder({self.name_or_path!r}, labels={self.num_labels}, "
                f"max_length={self.max_length}, dtype={self.classifier.dtype!r})")


def _transformer_folder(root):
    if not (root / "modules.json").is_file():
        return root
    entries = read_modules_json(root)
    if len(entries) != 1 or not str(entries[0].get("type", "")).endswith("Transformer"):
        raise ValueError(f"{root / 'modules.json'}: bertcpu's CrossEncoder runs a single Transformer "
                         f"module, found {[e.get('type') for e in entries]}")
    return module_folder(root, entries[0].get("path", ""))


def _configured_activation(root, folder, st_config, num_labels):
    """The activation sentence-transformers picks: config_sentence_transformers.json, then
    config.json's sentence_transformers.activation_fn, then the pre-v4 field, then Sigmoid for one
    label and Identity otherwise."""
    if st_config.get("activation_fn"):
        return activation_by_name(st_config["activation_fn"], root / "config_sentence_transformers.json")
    raw = read_json(folder / "config.json")
    nested = raw.get("sentence_transformers")
    if isinstance(nested, dict) and nested.get("activation_fn"):
        return activation_by_name(nested["activation_fn"], folder / "config.json")
    if raw.get("sbert_ce_default_activation_function"):
        return activation_by_name(raw["sbert_ce_default_activation_function"], folder / "config.json")
    return "Sigmoid" if num_labels == 1 else "Identity"


def _is_single_pair(inputs):
    """sentence-transformers' rule: a list whose first element is not itself a list/tuple is one
    pair."""
    if isinstance(inputs, (list, tuple)):
        return len(inputs) > 0 and not isinstance(inputs[0], (list, tuple))
    if isinstance(inputs, str):
        raise TypeError("expected (text, text) pairs, got a single str")
    raise TypeError(f"expected a list of (text, text) pairs, got {type(inputs).__name__}")


def _split_pairs(pairs):
    if isinstance(pairs, str) or not isinstance(pairs, (list, tuple)):
        raise TypeError(f"expected a list of (text, text) pairs, got {type(pairs).__name__}")
    firsts, seconds = [], []
    for index, pair in enumerate(pairs):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(text, str) for text in pair)):
            got = f"{type(pair).__name__} of length {len(pair)}" if isinstance(pair, (list, tuple)) \
                else type(pair).__name__
            raise ValueError(f"pairs[{index}] must be a (text, text) pair of two strings, got {got}")
        firsts.append(pair[0])
        seconds.append(pair[1])
    return firsts, seconds
