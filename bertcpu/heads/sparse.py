"""SparseEncoder: sentence-transformers' SparseEncoder for SPLADE models (a masked-LM head pooled
over the tokens) on bertcpu's engine, with sparse results as numpy index / value arrays."""
import dataclasses

import numpy as np

from .._files import read_json
from ..hub import resolve_model_path
from ..sentence import max_seq_length_for, module_folder, read_modules_json, transformer_settings
from ._common import Tokens, as_tokens, batches_by_length, pad
from .masked_lm import BertForMaskedLM

_POOLING_STRATEGIES = ("max", "sum")
# SpladePooling activation_function -> how many times log1p is applied to relu(logits).
_LOG_STEPS = {"relu": 1, "log1p_relu": 2}


@dataclasses.dataclass(frozen=True)
class SparseVector:
    """One sparse embedding: the non-zero dimensions (int32, ascending) and their values
    (float32) in a space of `dim` dimensions (the vocabulary)."""

    indices: np.ndarray
    values: np.ndarray
    dim: int

    def __len__(self):
        return int(self.indices.size)

    def to_dense(self):
        dense = np.zeros(self.dim, dtype=np.float32)
        dense[self.indices] = self.values
        return dense

    def dot(self, other):
        """The dot product with another SparseVector (SPLADE's similarity)."""
        _, mine, theirs = np.intersect1d(self.indices, other.indices, assume_unique=True,
                                         return_indices=True)
        return float(np.dot(self.values[mine].astype(np.float64), other.values[theirs]))

    @classmethod
    def from_dense(cls, dense, max_active_dims=None):
        """The non-zeros of a dense vector, keeping the max_active_dims largest in absolute value
        when given (sentence-transformers' select_max_active_dims)."""
        dense = np.asarray(dense, dtype=np.float32)
        nonzero = np.flatnonzero(dense)
        if max_active_dims is not None and nonzero.size > max_active_dims:
            keep = np.argpartition(-np.abs(dense[nonzero]), max_active_dims - 1)[:max_active_dims]
            nonzero = np.sort(nonzero[keep])
        return cls(nonzero.astype(np.int32), dense[nonzero], int(dense.size))


def to_dense(vectors):
    """A list of SparseVector -> float32 [n, dim]."""
    vectors = list(vectors)
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)
    out = np.zeros((len(vectors), vectors[0].dim), dtype=np.float32)
    for row, vector in enumerate(vectors):
        out[row, vector.indices] = vector.values
    return out


class SparseEncoder:
    """SPLADE sparse embeddings as sentence-transformers' SparseEncoder computes them: the
    masked-LM logits of every real token, log(1 + relu(x)) (twice for log1p_relu), max- (or sum-)
    pooled over the tokens. The pooling runs inside the vocabulary projection (VocabHead), so the
    [tokens, vocab] logits are never held.

    Two-stage API (what a server's batcher calls): ``tokenize(texts, prompt=None)`` -> one Tokens
    per text, truncated to max_seq_length; ``encode_tokens(tokens, max_active_dims=None)`` -> one
    SparseVector per item, one engine call. encode / encode_query / encode_document are these two
    stages with batching by length in between.
    """

    def __init__(self, masked_lm, tokenizer, max_seq_length, pooling="max",
                 activation_function="relu", prompts=None, max_active_dims=None, name_or_path=None):
        self.masked_lm = masked_lm
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.pooling_strategy = pooling
        self.activation_function = activation_function
        self.prompts = dict(prompts or {})
        self.max_active_dims = max_active_dims
        self.name_or_path = name_or_path

    @classmethod
    def from_pretrained(cls, name_or_path, max_seq_length=None, max_active_dims=None,
                        num_threads=None, isa=None, dtype="float32", revision=None, cache_dir=None):
        """Load a SparseEncoder folder (modules.json: a fill-mask Transformer and SpladePooling), a
        plain BertForMaskedLM folder (max pooling, relu, as sentence-transformers defaults), or a
        hub id from the HuggingFace cache. dtype: "float32", "bfloat16" or "int8" (encoder and
        head)."""
        root = resolve_model_path(name_or_path, revision=revision, cache_dir=cache_dir)
        st_file = root / "config_sentence_transformers.json"
        st_config = read_json(st_file) if st_file.is_file() else {}
        model_type = st_config.get("model_type", "SparseEncoder")
        if model_type != "SparseEncoder":
            raise ValueError(f"{st_file}: model_type {model_type!r} is not a SparseEncoder")
        pooling, activation = "max", "relu"
        if (root / "modules.json").is_file():
            entries = read_modules_json(root)
            kinds = [str(e.get("type", "")).rsplit(".", 1)[-1] for e in entries]
            if (len(entries) != 2 or kinds[0] not in ("Transformer", "MLMTransformer")
                    or kinds[1] != "SpladePooling"):
                raise ValueError(f"{root / 'modules.json'}: bertcpu's SparseEncoder runs SPLADE models "
                                 f"(a fill-mask Transformer then SpladePooling), found {kinds}")
            pooling_config = read_json(module_folder(root, entries[1].get("path", "")) / "config.json")
            pooling = pooling_config.get("pooling_strategy", "max")
            activation = pooling_config.get("activation_function", "relu")
            if pooling not in _POOLING_STRATEGIES or activation not in _LOG_STEPS:
                raise ValueError(f"{root / entries[1].get('path', '')}/config.json: SpladePooling "
                                 f"{pooling!r}/{activation!r} not supported (pooling_strategy max or "
                                 f"sum, activation_function relu or log1p_relu)")
            folder = module_folder(root, entries[0].get("path", ""))
        else:
            folder = root
        settings = transformer_settings(folder, "fill-mask", "logits")
        masked_lm = BertForMaskedLM.from_pretrained(folder, num_threads=num_threads, isa=isa, dtype=dtype)
        length = max_seq_length or max_seq_length_for(settings, masked_lm.config)
        prompts = st_config.get("prompts") or {}
        if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
            raise ValueError(f"{st_file}: 'prompts' must map names to strings")
        if max_active_dims is None:
            max_active_dims = st_config.get("max_active_dims")
        encoder = cls(masked_lm, settings["tokenizer"], min(length, masked_lm.config.max_position_embeddings),
                      pooling, activation, prompts, max_active_dims, name_or_path=str(name_or_path))
        _check_max_active_dims(max_active_dims)
        return encoder

    @property
    def vocab_size(self):
        return self.masked_lm.config.vocab_size

    def get_embedding_dimension(self):
        return self.vocab_size

    # -- two-stage API -----------------------------------------------------------------------------

    def tokenize(self, texts, prompt=None):
        """Texts (with `prompt` put before each) -> a list of Tokens, truncated to
        max_seq_length."""
        texts = _text_list(texts)
        if prompt:
            texts = [prompt + text for text in texts]
        if not texts:
            return []
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)
        return [Tokens(ids, types) for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"])]

    def encode_tokens(self, tokens, max_active_dims=None):
        """One SparseVector per tokenized item, all in one engine call."""
        _check_max_active_dims(max_active_dims)
        config = self.masked_lm.config
        items = as_tokens(tokens, config.vocab_size, config.type_vocab_size, config.max_position_embeddings)
        if not items:
            return []
        ids, mask, types = pad(items)
        dense = self.masked_lm.splade(ids, mask, types, self.pooling_strategy,
                                      _LOG_STEPS[self.activation_function])
        return [SparseVector.from_dense(row, max_active_dims) for row in dense]

    # -- sentence-transformers' API ----------------------------------------------------------------

    def encode(self, sentences, batch_size=32, prompt_name=None, prompt=None, max_active_dims=None,
               show_progress_bar=None):
        """Sparse embeddings: a SparseVector for one text, a list of them for a list (input
        order). max_active_dims keeps the largest values of each (default: the model's setting)."""
        single = isinstance(sentences, str)
        if prompt is None and prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(f"prompt_name {prompt_name!r} is not one of the model's prompts "
                                 f"({', '.join(self.prompts) or 'none'})")
            prompt = self.prompts[prompt_name]
        if max_active_dims is None:
            max_active_dims = self.max_active_dims
        tokens = self.tokenize([sentences] if single else sentences, prompt)
        vectors = [None] * len(tokens)
        for batch in batches_by_length(tokens, batch_size):
            for index, vector in zip(batch, self.encode_tokens([tokens[i] for i in batch], max_active_dims)):
                vectors[index] = vector
        return vectors[0] if single else vectors

    def encode_query(self, sentences, **kwargs):
        """encode with the model's "query" prompt (if it has one)."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def encode_document(self, sentences, **kwargs):
        """encode with the model's "document" prompt (if it has one)."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
            for name in ("document", "passage", "corpus"):
                if name in self.prompts:
                    kwargs["prompt_name"] = name
                    break
        return self.encode(sentences, **kwargs)

    def decode(self, embeddings, top_k=None):
        """(token, weight) pairs of a SparseVector by descending weight (top_k of them), or one
        such list per vector for a list."""
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        single = isinstance(embeddings, SparseVector)
        results = []
        for vector in [embeddings] if single else embeddings:
            if not isinstance(vector, SparseVector):
                raise TypeError(f"expected SparseVector(s), got {type(vector).__name__}")
            order = np.argsort(-vector.values, kind="stable")[:top_k]
            tokens = self.tokenizer.convert_ids_to_tokens(vector.indices[order].tolist())
            results.append(list(zip(tokens, vector.values[order].tolist())))
        return results[0] if single else results

    def similarity(self, a, b):
        """Dot products of two lists of SparseVector: float32 [len(a), len(b)]."""
        a = [a] if isinstance(a, SparseVector) else list(a)
        b = [b] if isinstance(b, SparseVector) else list(b)
        return (to_dense(a) @ to_dense(b).T).astype(np.float32)

    def __repr__(self):
        return (f"SparseEncoder({self.name_or_path!r}, max_seq_length={self.max_seq_length}, "
                f"pooling={self.pooling_strategy!r}, activation={self.activation_function!r}, "
                f"dtype={self.masked_lm.dtype!r})")


def _check_max_active_dims(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"max_active_dims must be a positive integer, got {value!r}")


def _text_list(texts):
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"expected a list of str, got {type(texts).__name__}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
    return list(texts)
