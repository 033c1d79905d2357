"""What a served model folder is, and what each kind of model needs from the service.

A model kind is a library object (SentenceEncoder, CrossEncoder, SparseEncoder) wrapped with
three things: the routes it answers (app.py maps kind -> routes), how a request's texts become
token sequences (tokenization with TEI's truncation rules, run by the routes, off the engine
thread), and `run(options, items)`, the token-level batch call the batcher makes on the engine
thread for items of many requests at once.

Kinds: "embedding" (a sentence-transformers or plain BERT folder), "reranker" and "classifier"
(a CrossEncoder or BertForSequenceClassification folder with one label, or with several),
"sparse" (a sentence-transformers SparseEncoder folder: SPLADE).
"""
import collections

import numpy as np

from .. import __version__
from .._files import read_json
from ..heads import CrossEncoder, SparseEncoder
from ..heads._common import Tokens, encoded_to_tokens, sigmoid, softmax
from ..hub import resolve_model_path
from ..sentence import SentenceEncoder, read_modules_json
from .schemas import ServiceError

# What the items of one engine call must share; items with different options run in separate
# calls of the same batch.
EmbedOptions = collections.namedtuple(
    "EmbedOptions", "output_value normalize_embeddings prompt_length truncate_dim")
ScoreOptions = collections.namedtuple("ScoreOptions", "route raw_scores")


class _TextModel:
    """What every kind shares: a BERT tokenizer and an input length limit."""

    def __init__(self, tokenizer, max_input_length, name):
        self.tokenizer = tokenizer
        self.max_input_length = max_input_length
        self.name = name
        self._special_ids = frozenset(tokenizer.all_special_ids)

    @staticmethod
    def num_tokens(item):
        """What an item costs in the batcher's token budget."""
        return len(item)

    def token_ids(self, texts, truncate, direction):
        """Each text's token ids, [CLS] and [SEP] included; over max_input_length, cut on the
        `direction` side ("Right"/"Left", either case) when truncate, else a 422 naming the input."""
        sequences = self.tokenizer(texts)["input_ids"]
        limit = self.max_input_length
        for index, ids in enumerate(sequences):
            if len(ids) <= limit:
                continue
            if not truncate:
                raise ServiceError(422, "validation",
                                   f"input {index} has {len(ids)} tokens, more than the model's "
                                   f"maximum of {limit}; shorten it or send truncate=true")
            # The tokenizer's own rule: the special tokens stay, the text between them is cut.
            if direction in ("Right", "right"):
                sequences[index] = ids[:limit - 1] + ids[-1:]
            else:
                sequences[index] = ids[:1] + ids[len(ids) - limit + 1:]
        return sequences

    def check_token_ids(self, sequences):
        """Token-id inputs as the engine takes them: 1..max_input_length ids, each in the vocabulary."""
        vocab_size = self.tokenizer.vocab_size
        for index, ids in enumerate(sequences):
            if not ids:
                raise ServiceError(400, "empty", f"input {index} has no token ids")
            if len(ids) > self.max_input_length:
                raise ServiceError(422, "validation",
                                   f"input {index} has {len(ids)} tokens, more than the model's "
                                   f"maximum of {self.max_input_length}")
            largest = max(ids)
            if largest >= vocab_size:
                raise ServiceError(422, "validation", f"input {index}: token id {largest} is not "
                                                      f"in the vocabulary (size {vocab_size})")

    def tokens(self, texts, add_special_tokens):
        """/tokenize's answer: per text, its tokens as {id, text, special, start, stop}; a special
        token added around the text has no span (start and stop null)."""
        encoded = self.tokenizer(texts, add_special_tokens=add_special_tokens,
                                 return_offsets_mapping=True)
        answer = []
        for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
            tokens = []
            for token_id, (start, stop) in zip(ids, offsets):
                if token_id in self._special_ids and start == stop:
                    tokens.append({"id": token_id, "special": True, "start": None, "stop": None,
                                   "text": self.tokenizer.convert_ids_to_tokens(token_id)})
                else:
                    tokens.append({"id": token_id, "special": False, "start": start, "stop": stop,
                                   "text": text[start:stop]})
            answer.append(tokens)
        return answer

    def decode(self, sequences, skip_special_tokens):
        vocab_size = self.tokenizer.vocab_size
        for index, ids in enumerate(sequences):
            if ids and max(ids) >= vocab_size:
                raise ServiceError(422, "validation", f"ids {index}: token id {max(ids)} is not in "
                                                      f"the vocabulary (size {vocab_size})")
        return [self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
                for ids in sequences]


class EmbeddingModel(_TextModel):
    """A SentenceEncoder: /embed, /embed_all and /v1/embeddings."""

    kind = "embedding"

    def __init__(self, encoder, name):
        super().__init__(encoder.tokenizer, encoder.max_seq_length, name)
        self.encoder = encoder
        self.dimension = encoder.get_embedding_dimension()

    @property
    def dtype(self):
        return self.encoder.model.dtype

    def model_type(self):
        pooling = next((m[len("Pooling("):-1].split(",")[0] for m in self.encoder.modules
                        if m.startswith("Pooling(")), None)
        return {"embedding": {"pooling": pooling, "dimension": self.dimension}}

    def prompt(self, prompt_name):
        """The text put before each input: the named prompt, else the model's default, else None."""
        try:
            return self.encoder.resolve_prompt(prompt_name=prompt_name)
        except ValueError as error:
            raise ServiceError(422, "validation", str(error)) from None

    def embed_options(self, prompt, output_value, normalize, dimensions):
        """normalize: True, False, or None for the model's own pipeline."""
        if dimensions is not None and dimensions > self.dimension:
            raise ServiceError(422, "validation", f"dimensions {dimensions} is more than the "
                                                  f"model's {self.dimension}")
        prompt_length = self.encoder.prompt_length(prompt) if prompt else None
        return EmbedOptions(output_value, normalize, prompt_length, dimensions)

    def run(self, options, sequences):
        """The engine call: one row (or token matrix) per sequence."""
        return self.encoder.encode_tokens(sequences, **options._asdict())


class PairClassifierModel(_TextModel):
    """A CrossEncoder: with one label a reranker (/rerank, /predict), with several a classifier
    (/predict). Items are Tokens (a text or a pair, with segment ids)."""

    def __init__(self, cross_encoder, name):
        super().__init__(cross_encoder.tokenizer, cross_encoder.max_length, name)
        self.encoder = cross_encoder
        self.classifier = cross_encoder.classifier
        self.kind = "reranker" if cross_encoder.num_labels == 1 else "classifier"
        self.labels = [self.classifier.id2label[i] for i in range(cross_encoder.num_labels)]

    @property
    def dtype(self):
        return self.classifier.dtype

    @staticmethod
    def num_tokens(item):
        return len(item.input_ids)

    def model_type(self):
        return {self.kind: {"id2label": dict(enumerate(self.labels)),
                            "label2id": self.classifier.label2id}}

    def prompt(self, prompt_name):
        if prompt_name is not None:
            raise ServiceError(422, "validation", "prompt_name: this model has no prompts")

    def pair_tokens(self, firsts, seconds, truncate, direction):
        """Tokens of texts (seconds None) or of (first, second) pairs; over max_input_length, cut
        when truncate (pairs: the longer text first, from the right; texts: on `direction`'s
        side), else a 422 naming the input."""
        if seconds is None:
            return [Tokens(ids, [0] * len(ids)) for ids in self.token_ids(firsts, truncate, direction)]
        tokens = encoded_to_tokens(self.tokenizer(firsts, seconds))
        too_long = [i for i, item in enumerate(tokens) if len(item.input_ids) > self.max_input_length]
        if too_long and not truncate:
            raise ServiceError(422, "validation",
                               f"input {too_long[0]} has {len(tokens[too_long[0]].input_ids)} tokens, "
                               f"more than the model's maximum of {self.max_input_length}; shorten "
                               f"it or send truncate=true")
        if too_long and direction in ("Left", "left"):
            raise ServiceError(422, "validation", "truncation_direction Left is not supported for "
                                                  "pairs (they are cut longest first, from the right)")
        if too_long:
            cut = encoded_to_tokens(self.tokenizer([firsts[i] for i in too_long],
                                                   [seconds[i] for i in too_long],
                                                   truncation="longest_first",
                                                   max_length=self.max_input_length))
            for index, item in zip(too_long, cut):
                tokens[index] = item
        return tokens

    def run(self, options, tokens):
        """rerank: one score per item (the model's activation, or the logit with raw_scores);
        predict: one row of label scores per item (transformers' pipeline function, or logits)."""
        if options.route == "rerank":
            return self.encoder.score_tokens(tokens, activation_fn="Identity" if options.raw_scores
                                             else None)
        logits = self.classifier.logits_tokens(tokens)
        if options.raw_scores:
            return logits
        function = self.classifier.default_function()
        return {"softmax": softmax, "sigmoid": sigmoid, "none": np.asarray}[function](logits)


class SparseModel(_TextModel):
    """A SparseEncoder (SPLADE): /embed_sparse."""

    kind = "sparse"

    def __init__(self, sparse_encoder, name):
        super().__init__(sparse_encoder.tokenizer, sparse_encoder.max_seq_length, name)
        self.encoder = sparse_encoder

    @property
    def dtype(self):
        return self.encoder.masked_lm.dtype

    def model_type(self):
        return {"embedding": {"pooling": "splade", "dimension": self.encoder.vocab_size}}

    def prompt(self, prompt_name):
        if prompt_name is None:
            return None
        if prompt_name not in self.encoder.prompts:
            raise ServiceError(422, "validation", f"prompt_name {prompt_name!r} is not one of this "
                                                  f"model's prompts ({', '.join(map(repr, self.encoder.prompts)) or 'none configured'})")
        return self.encoder.prompts[prompt_name]

    def run(self, options, sequences):
        return self.encoder.encode_tokens(sequences, max_active_dims=self.encoder.max_active_dims)


def model_kind(folder):
    """"embedding", "cross-encoder" or "sparse" for a model folder, from what sentence-transformers
    wrote (config_sentence_transformers.json's model_type, modules.json) or, for a plain
    transformers folder, its architecture."""
    st_file = folder / "config_sentence_transformers.json"
    model_type = (read_json(st_file) if st_file.is_file() else {}).get("model_type")
    if model_type in _ST_MODEL_TYPES:
        return _ST_MODEL_TYPES[model_type]
    if (folder / "modules.json").is_file():
        types = [str(entry.get("type", "")) for entry in read_modules_json(folder)]
        return "sparse" if any(t.endswith("SpladePooling") for t in types) else "embedding"
    architectures = (read_json(folder / "config.json").get("architectures") or []
                     if (folder / "config.json").is_file() else [])
    if "BertForSequenceClassification" in architectures:
        return "cross-encoder"
    if "BertForTokenClassification" in architectures:
        raise ValueError(f"{folder}: a token-classification model (BertForTokenClassification); "
                         f"bertcpu serve runs embedding, reranker/classifier and sparse models")
    return "embedding"


_ST_MODEL_TYPES = {"SentenceTransformer": "embedding", "CrossEncoder": "cross-encoder",
                   "SparseEncoder": "sparse"}


def load_model(name_or_path, dtype="float32", num_threads=None, served_model_name=None):
    """The served model, a folder or a hub id in the local cache, loaded as its kind (model_kind)."""
    folder = resolve_model_path(name_or_path)
    name = served_model_name or str(name_or_path)
    kind = model_kind(folder)
    if kind == "cross-encoder":
        return PairClassifierModel(CrossEncoder.from_pretrained(folder, num_threads=num_threads,
                                                                dtype=dtype), name)
    if kind == "sparse":
        return SparseModel(SparseEncoder.from_pretrained(folder, num_threads=num_threads,
                                                         dtype=dtype), name)
    return EmbeddingModel(SentenceEncoder.from_pretrained(folder, num_threads=num_threads,
                                                          dtype=dtype), name)


def info(model, settings):
    """/info's answer."""
    return {"model_id": model.name, "model_dtype": model.dtype, "model_type": model.model_type(),
            "max_input_length": model.max_input_length,
            "max_batch_tokens": settings.max_batch_tokens,
            "max_client_batch_size": settings.max_client_batch_size,
            "max_concurrent_requests": settings.max_concurrent_requests,
            "auto_truncate": settings.auto_truncate, "version": __version__}
