"""What every task head shares: reading a head's checkpoint, its label settings, and the
token-level batch form the heads' two-stage API passes around.

The two stages: `tokenize(...)` turns texts (or pairs) into a list of Tokens, one per input, with
no padding; a token-level call (e.g. CrossEncoder.score_tokens) takes any list of Tokens, pads it
into one engine call and returns one result per item. A server's batcher tokenizes each request as
it arrives and runs the items of many requests in one token-level call; predict / encode / rank
are these two stages with batching by length in between.
"""
import os
import typing

import numpy as np

from .._files import read_json
from ..config import BertConfig
from ..model import CONFIG_FILE, BertModel
from ..weights import Checkpoint


class Tokens(typing.NamedTuple):
    """One tokenized input: its token ids and segment ids (lists of ints, [CLS] ... [SEP]
    included), and for token classification the character span of every token in the text
    ((0, 0) for special tokens)."""

    input_ids: list
    token_type_ids: list
    offsets: typing.Optional[list] = None


def as_tokens(items, vocab_size, type_vocab_size, max_length):
    """items (Tokens, (ids, types) pairs, or plain id lists) -> a list of Tokens, checked: ints in
    range, matching lengths, 1..max_length tokens."""
    if isinstance(items, (Tokens, str)) or not isinstance(items, (list, tuple)):
        raise TypeError(f"expected a list of tokenized items (Tokens or lists of ids), got "
                        f"{type(items).__name__}")
    checked = []
    for index, item in enumerate(items):
        if isinstance(item, Tokens):
            ids, types = item.input_ids, item.token_type_ids
        elif isinstance(item, tuple) and len(item) == 2:
            ids, types = item
        elif isinstance(item, (list, np.ndarray)):
            ids, types = item, None
        else:
            raise TypeError(f"item {index}: expected Tokens, (input_ids, token_type_ids) or a list of "
                            f"ids, got {type(item).__name__}")
        ids = _int_list(ids, f"item {index} input_ids")
        types = [0] * len(ids) if types is None else _int_list(types, f"item {index} token_type_ids")
        if not ids:
            raise ValueError(f"item {index} has no tokens")
        if len(types) != len(ids):
            raise ValueError(f"item {index}: {len(ids)} input_ids but {len(types)} token_type_ids")
        if len(ids) > max_length:
            raise ValueError(f"item {index} has {len(ids)} tokens, more than the model's "
                             f"max_position_embeddings ({max_length})")
        if min(ids) < 0 or max(ids) >= vocab_size:
            raise ValueError(f"item {index}: token ids must be in [0, {vocab_size})")
        if min(types) < 0 or max(types) >= type_vocab_size:
            raise ValueError(f"item {index}: token type ids must be in [0, {type_vocab_size})")
        offsets = item.offsets if isinstance(item, Tokens) else None
        checked.append(Tokens(ids, types, offsets))
    return checked


def _int_list(values, name):
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise TypeError(f"{name} must be a 1-D integer array")
        return values.tolist()
    if not isinstance(values, (list, tuple)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be a list of ints")
    return [int(v) for v in values]


def pad(tokens):
    """A non-empty list of Tokens -> input_ids, attention_mask, token_type_ids: int64
    [n, longest], padded on the right."""
    longest = max(len(t.input_ids) for t in tokens)
    ids = np.zeros((len(tokens), longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, t in enumerate(tokens):
        n = len(t.input_ids)
        ids[row, :n] = t.input_ids
        types[row, :n] = t.token_type_ids
        mask[row, :n] = 1
    return ids, mask, types


def batches_by_length(tokens, batch_size):
    """Index arrays of batches, longest items first (little padding per batch); results are put
    back in input order by the caller."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    order = np.argsort([-len(t.input_ids) for t in tokens], kind="stable")
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def encoded_to_tokens(encoded, with_offsets=False):
    """The lists a Tokenizer call returns (a batch, no padding) -> a list of Tokens."""
    offsets = encoded["offset_mapping"] if with_offsets else [None] * len(encoded["input_ids"])
    return [Tokens(list(ids), list(types), [tuple(o) for o in offs] if offs is not None else None)
            for ids, types, offs in zip(encoded["input_ids"], encoded["token_type_ids"], offsets)]


def read_config(folder):
    """(config.json as a dict, its BertConfig) of a model folder."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"model folder not found: {folder}")
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}")
    raw = read_json(path)
    try:
        return raw, BertConfig.from_dict(raw)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def load_with_head(folder, config, head_tensors, what, isa=None, dtype="float32"):
    """The encoder of `folder` and its head tensors: head_tensors maps canonical names to shapes
    (a name maps to a list of alternatives: the first present is read). Returns (BertModel,
    {name: float32 array}); a missing tensor raises naming the head (`what`)."""
    with Checkpoint(folder) as checkpoint:
        tensors = {}
        for name, shape in head_tensors.items():
            tensors[name] = checkpoint.read_tensor(name, shape, what)
        model = BertModel.from_checkpoint(checkpoint, config, isa=isa, dtype=dtype)
    return model, tensors


def labels_from_config(raw, path):
    """id2label of a config.json as a list of label names (index = class id), or None when the
    config names none."""
    id2label = raw.get("id2label")
    if id2label is None:
        return None
    if not isinstance(id2label, dict) or not id2label:
        raise ValueError(f"{path}: id2label must be a non-empty object mapping class ids to names")
    labels = {}
    for key, name in id2label.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: id2label key {key!r} is not a class id") from None
        if not isinstance(name, str):
            raise ValueError(f"{path}: id2label[{key!r}] must be a string, got {name!r}")
        labels[index] = name
    if sorted(labels) != list(range(len(labels))):
        raise ValueError(f"{path}: id2label keys must be 0..{len(labels) - 1}, got {sorted(labels)}")
    return [labels[i] for i in range(len(labels))]


def label_names(raw, path):
    """The class names of a classifier's config.json: id2label, or transformers' default names
    LABEL_i for num_labels classes (default 2) when it has none."""
    names = labels_from_config(raw, path)
    if names is None:
        declared = raw.get("num_labels", 2)
        if isinstance(declared, bool) or not isinstance(declared, int) or declared < 1:
            raise ValueError(f"{path}: num_labels must be a positive integer, got {declared!r}")
        names = [f"LABEL_{i}" for i in range(declared)]
    return names


def softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    x = np.asarray(x, dtype=np.float32)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def load_tokenizer(folder):
    """The folder's tokenizer, or None when it has no tokenizer files (ids can still be passed)."""
    from ..tokenizer import Tokenizer

    try:
        return Tokenizer.from_pretrained(folder)
    except FileNotFoundError:
        return None


class LinearClassifierHead:
    """What the sequence- and token-classification heads share: an encoder, a float32 linear
    classifier (classifier.weight / classifier.bias) with config.json's labels, a tokenizer."""

    WHAT = "a classification head"

    def __init__(self, model, weight, bias, labels, tokenizer, name_or_path=None):
        self.model = model
        self._weight = np.ascontiguousarray(weight.T)  # [hidden, labels]: one product per batch
        self._bias = bias
        self.id2label = dict(enumerate(labels))
        self.label2id = {name: index for index, name in enumerate(labels)}
        self.tokenizer = tokenizer
        self.name_or_path = name_or_path

    @classmethod
    def _load(cls, path, num_threads, isa, dtype):
        """(folder, config.json as a dict, BertModel, classifier weight, bias, labels)."""
        folder = os.fspath(path)
        raw, config = read_config(folder)
        labels = label_names(raw, os.path.join(folder, CONFIG_FILE))
        if num_threads is not None:
            from ..runtime import set_num_threads
            set_num_threads(num_threads)
        what = f"{cls.WHAT} with {len(labels)} label(s) per config.json"
        shapes = {"classifier.weight": (len(labels), config.hidden_size),
                  "classifier.bias": (len(labels),)}
        model, tensors = load_with_head(folder, config, shapes, what, isa=isa, dtype=dtype)
        return (folder, raw, model, tensors["classifier.weight"], tensors["classifier.bias"],
                labels)

    @property
    def config(self):
        return self.model.config

    @property
    def num_labels(self):
        return len(self.id2label)

    @property
    def dtype(self):
        return self.model.dtype
