"""BertModel: a BERT encoder run by the C++ engine, loaded from safetensors, called with numpy.

    model = bertcpu.BertModel.from_pretrained("path/to/all-MiniLM-L6-v2")
    out = model(input_ids, attention_mask)          # numpy arrays or nested lists
    out.last_hidden_state                           # float32 [batch, seq, hidden]

Outputs match transformers' BertModel at every real (attention_mask == 1) position; see
BertModel.__call__ for what padded positions hold.
"""
import dataclasses
import logging
import math
import os
import warnings
from typing import Optional

import numpy as np

from . import _core, runtime
from .config import BertConfig
from .weights import SINGLE_FILE, Checkpoint, write_safetensors

logger = logging.getLogger("bertcpu")

CONFIG_FILE = "config.json"
_POOLER_TENSORS = ("pooler.dense.weight", "pooler.dense.bias")
_ID_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
# What the dense layers compute in; everything else (attention, LayerNorm, GELU, residuals, the
# pooler) is float32 in every mode.
DTYPES = ("float32", "bfloat16", "int8")
_MASK_DTYPES = _ID_DTYPES + (np.dtype(np.bool_),)


@dataclasses.dataclass
class BertOutput:
    """What BertModel returns; fields read as attributes or as out["name"], like transformers'.

    last_hidden_state: float32 [batch, seq, hidden]
    pooler_output: float32 [batch, hidden], or None for a model without a pooler
    hidden_states: tuple of num_hidden_layers + 1 float32 [batch, seq, hidden] (the embeddings
        output, then each layer's), or None unless output_hidden_states=True
    attentions: tuple of num_hidden_layers float32 [batch, heads, seq, seq] (softmax
        probabilities), or None unless output_attentions=True
    """

    last_hidden_state: np.ndarray
    pooler_output: Optional[np.ndarray] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None

    def __getitem__(self, key):
        if not isinstance(key, str) or key not in self.keys():
            raise KeyError(f"{key!r}: BertOutput fields are {', '.join(self.keys())}")
        return getattr(self, key)

    def keys(self):
        return [field.name for field in dataclasses.fields(self)]


class BertModel:
    """A BERT encoder whose weights live, packed, in the C++ engine.

    Build one with from_pretrained (a folder with config.json and safetensors weights) or
    from_config (random weights). Calling it is thread-safe: the engine releases the GIL while it
    runs, so one model may serve several Python threads; their calls take turns in the engine,
    each using all of its threads (bertcpu.set_num_threads).
    """

    def __init__(self, encoder, config, has_pooler):
        """Wraps a finalized bertcpu._core.Encoder; use from_pretrained or from_config instead."""
        self._encoder = encoder
        self._config = config
        self._has_pooler = has_pooler
        self._num_parameters = sum(math.prod(shape) for _, shape in encoder.expected_weights())

    @classmethod
    def from_pretrained(cls, path, num_threads=None, isa=None, dtype="float32"):
        """Load a model folder: config.json plus model.safetensors or a sharded
        model.safetensors.index.json. Weights may be F32, F16 or BF16 (computed in float32), with
        or without a `bert.` / `model.` name prefix; task heads (cls.*, classifier.*) are ignored.
        A checkpoint without pooler weights loads as a model whose pooler_output is None.

        num_threads: if given, sets the engine's thread count. The setting is process-wide (see
            bertcpu.set_num_threads): it applies to every model and to the tokenizer.
        isa: "generic" | "avx2" | "avx512" | "amx" (aarch64: "neon" | "dotprod" | "i8mm") to run
            a given kernel path (it must be one of
            bertcpu.cpu_info()["available_isas"]); default: the best path this CPU has.
        dtype: what the dense layers (Q/K/V, attention output, feed-forward) compute in:
            "float32" (default; the reference), "bfloat16" (weights rounded to bf16 once,
            activations at each product, fp32 accumulation) or "int8" (weights quantized per
            output channel, symmetric; activations per token, asymmetric, each token's largest
            value kept apart and multiplied exactly; int32 accumulation). Both modes run
            attention's products in bf16 where the CPU has bf16 instructions; the softmax,
            LayerNorm, GELU, residuals and the pooler stay float32. On a CPU without instructions
            for the mode (bertcpu.cpu_info()["bfloat16_isas"] / ["int8_isas"] hold only
            "generic") the model warns and runs float32.
        """
        dtype = _check_dtype(dtype)
        if num_threads is not None:
            runtime.set_num_threads(num_threads)
        folder = os.fspath(path)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"model folder not found: {folder}")
        config_path = os.path.join(folder, CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}")
        config = BertConfig.from_json_file(config_path)
        with Checkpoint(folder) as checkpoint:
            model = cls.from_checkpoint(checkpoint, config, isa=isa, dtype=dtype)
        if not model.has_pooler:
            logger.warning("%s has no pooler weights (pooler.dense.*): the model loads without a "
                           "pooler and its pooler_output is None", folder)
        return model

    @classmethod
    def from_checkpoint(cls, checkpoint, config, isa=None, dtype="float32"):
        """The encoder of an open weights.Checkpoint (for task heads, which read their own
        tensors from the same checkpoint); config: its BertConfig. isa, dtype: as in
        from_pretrained."""
        dtype = _check_dtype(dtype)
        # Either pooler tensor present means the model has a pooler; if only one is, the
        # missing one is reported like any other missing tensor.
        has_pooler = any(name in checkpoint for name in _POOLER_TENSORS)
        # Checked against the config before the engine exists: building it allocates for the
        # config's sizes, gigabytes for a config.json far larger than its checkpoint.
        checkpoint.check(_expected_weights(config, has_pooler))
        encoder = _new_encoder(config, has_pooler, isa, dtype)
        for name, array in checkpoint.iter_tensors(encoder.expected_weights()):
            encoder.set_weight(name, array)
            del array  # the engine holds its own packed copy; keep one tensor alive at most
        encoder.finalize()
        return cls(encoder, config, has_pooler)

    @classmethod
    def from_config(cls, config, seed=0, num_threads=None, isa=None, dtype="float32"):
        """A model with random weights, initialized as transformers does: Linear and embedding
        weights normal(0, initializer_range), the padding token's embedding zero, biases zero,
        LayerNorm weight 1 and bias 0. Same seed, same weights.

        config: a BertConfig or a config.json-style dict. num_threads, isa, dtype: as in
        from_pretrained.
        """
        dtype = _check_dtype(dtype)
        if isinstance(config, dict):
            config = BertConfig.from_dict(config)
        elif not isinstance(config, BertConfig):
            raise TypeError(f"config must be a bertcpu BertConfig or a dict, got {type(config).__name__}")
        if num_threads is not None:
            runtime.set_num_threads(num_threads)
        encoder = _new_encoder(config, True, isa, dtype)
        rng = np.random.default_rng(seed)
        for name, shape in encoder.expected_weights():
            encoder.set_weight(name, _initial_weight(name, shape, config, rng))
        encoder.finalize()
        return cls(encoder, config, has_pooler=True)

    def save_pretrained(self, path):
        """Write config.json and model.safetensors (float32) into folder `path` (created if
        needed); both transformers' BertModel.from_pretrained and this class's load it."""
        if self.dtype != "float32":
            raise ValueError(f"save_pretrained writes float32 weights; this model holds its dense "
                             f"weights in {self.dtype}, rounded: save the float32 model instead")
        folder = os.fspath(path)
        os.makedirs(folder, exist_ok=True)
        self._config.to_json_file(os.path.join(folder, CONFIG_FILE))
        # The "format" metadata tells transformers these are PyTorch-layout tensors.
        write_safetensors(os.path.join(folder, SINGLE_FILE), self._encoder.expected_weights(),
                          self._encoder.get_weight, metadata={"format": "pt"})

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None,
                 output_hidden_states=False, output_attentions=False):
        """Run the encoder.

        input_ids: int32 or int64, [batch, seq] or [seq], a numpy array or nested lists. A [seq]
            input is one sequence: the outputs still have a batch dimension of 1.
        attention_mask: same shape, 1 for real tokens and 0 for padding (int32, int64 or bool);
            default all ones. Padding may be on either side, and every row needs a real token.
        token_type_ids: same shape, segment ids below type_vocab_size; default all zeros.

        Returns a BertOutput. Real positions match transformers. Padded positions are not
        computed: last_hidden_state and hidden_states hold zeros there, and attentions hold zeros
        in the rows and columns of padded positions. pooler_output is computed from each
        sequence's first real token (its [CLS]); transformers pools column 0, the same token
        unless the batch is left-padded. Inputs are never modified.
        """
        ids, original_shape = self._check_ids(input_ids)
        if attention_mask is None:
            mask = np.ones_like(ids)
        else:
            mask, _ = _index_array(attention_mask, "attention_mask", _MASK_DTYPES, original_shape)
            _check_mask(mask, original_shape)
        if token_type_ids is None:
            types = np.zeros_like(ids)
        else:
            types, _ = _index_array(token_type_ids, "token_type_ids", _ID_DTYPES, original_shape)
            _check_range(types, "token_type_ids", self._config.type_vocab_size, "type_vocab_size",
                         original_shape, "outside")

        result = self._encoder.forward(ids, mask, types, bool(output_hidden_states),
                                       bool(output_attentions))
        hidden_states = result["hidden_states"]
        attentions = result["attentions"]
        return BertOutput(
            last_hidden_state=result["last_hidden_state"],
            pooler_output=result["pooler_output"],
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )

    def _check_ids(self, input_ids):
        ids, shape = _index_array(input_ids, "input_ids", _ID_DTYPES, None)
        if ids.size == 0:
            raise ValueError(f"input_ids is empty (shape {shape}): the batch needs at least one "
                             f"sequence of at least one token")
        if ids.shape[1] > self._config.max_position_embeddings:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds this model's "
                             f"max_position_embeddings ({self._config.max_position_embeddings})")
        _check_range(ids, "input_ids", self._config.vocab_size, "vocab_size", shape,
                     "outside the vocabulary")
        return ids, shape

    @property
    def config(self):
        """The model's BertConfig."""
        return self._config

    @property
    def has_pooler(self):
        """Whether the model has a pooler (dense + tanh over the first token); if not,
        pooler_output is None."""
        return self._has_pooler

    @property
    def isa(self):
        """The kernel path this model runs: "generic", "avx2", "avx512", "amx", "neon", "dotprod"
        or "i8mm"."""
        return self._encoder.isa

    @property
    def dtype(self):
        """What the dense layers compute in: "float32", "bfloat16" or "int8"."""
        return self._encoder.dtype

    @property
    def kernels(self):
        """The kernel path of the dense products (for a float32 model, isa): e.g. "avx512" for
        the AVX-512 bf16 / int8 kernels, "amx" for AMX tiles, "avx2" for the AVX2 int8 kernels.
        Within a path, bertcpu.cpu_info()["int8_kernels"] names the int8 table (on avx512
        "avx512" with AVX512-VNNI, else "avx512bw"; on avx2 "avxvnni" with AVX-VNNI)."""
        return self._encoder.dense_isa

    @property
    def num_parameters(self):
        """The number of weights (embeddings, layers and pooler)."""
        return self._num_parameters

    def __repr__(self):
        c = self._config
        return (f"BertModel(layers={c.num_hidden_layers}, hidden={c.hidden_size}, "
                f"heads={c.num_attention_heads}, intermediate={c.intermediate_size}, "
                f"act={c.hidden_act}, pooler={self._has_pooler}, isa={self.isa!r}, "
                f"dtype={self.dtype!r})")


def _expected_weights(config, with_pooler):
    """Yield the (name, shape) of every weight the engine takes for config, in its order: the list
    Encoder.expected_weights() gives (a test keeps the two equal), known here without building an
    engine, which would allocate for the config's sizes."""
    H, I = config.hidden_size, config.intermediate_size
    yield "embeddings.word_embeddings.weight", (config.vocab_size, H)
    yield "embeddings.position_embeddings.weight", (config.max_position_embeddings, H)
    yield "embeddings.token_type_embeddings.weight", (config.type_vocab_size, H)
    yield "embeddings.LayerNorm.weight", (H,)
    yield "embeddings.LayerNorm.bias", (H,)
    for layer in range(config.num_hidden_layers):
        prefix = f"encoder.layer.{layer}."
        for part in ("query", "key", "value"):
            yield from _linear_weights(f"{prefix}attention.self.{part}", H, H)
        yield from _linear_weights(prefix + "attention.output.dense", H, H)
        yield prefix + "attention.output.LayerNorm.weight", (H,)
        yield prefix + "attention.output.LayerNorm.bias", (H,)
        yield from _linear_weights(prefix + "intermediate.dense", I, H)
        yield from _linear_weights(prefix + "output.dense", H, I)
        yield prefix + "output.LayerNorm.weight", (H,)
        yield prefix + "output.LayerNorm.bias", (H,)
    if with_pooler:
        yield from _linear_weights("pooler.dense", H, H)


def _linear_weights(prefix, out_features, in_features):
    yield prefix + ".weight", (out_features, in_features)
    yield prefix + ".bias", (out_features,)


def _check_dtype(dtype):
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
    return dtype


def _new_encoder(config, with_pooler, isa, dtype):
    if isa is not None and not isinstance(isa, str):
        raise TypeError(f"isa must be None or a kernel path name such as 'avx2', got {isa!r}")
    if dtype != "float32" and _core.best_dense_isa(dtype, isa) == "generic":
        # The scalar kernels exist to check the others against; as a mode they would be many
        # times slower than float32.
        warnings.warn(f"this CPU has no {dtype} instructions bertcpu uses (see "
                      f"bertcpu.cpu_info()); the model runs in float32", RuntimeWarning,
                      stacklevel=3)
        dtype = "float32"
    if dtype != "float32":
        info = _core.cpu_info()
        cap = isa if isa is not None else info["isa"]
        # The CPU has AMX, but the OS refused its state or its kernels failed their self-test:
        # the model runs on the avx512 kernels instead (bertcpu.cpu_info()["amx_warning"]).
        if info["amx_warning"] and cap in ("avx512", "amx"):
            warnings.warn(f"AMX is not used: {info['amx_warning']}", RuntimeWarning, stacklevel=3)
    return _core.Encoder(config.to_core_dict(with_pooler=with_pooler), isa, dtype)


def _index_array(value, name, dtypes, expected_shape):
    """(value as a fresh C-contiguous int64 [batch, seq] array, value's own shape), after checking
    its dtype and shape ([seq] becomes [1, seq]).

    Always a copy: the engine then reads exactly what was validated, even if the caller's array
    changes meanwhile in another thread, and the caller's array is never touched.
    """
    try:
        array = np.asarray(value)
    except ValueError:
        raise ValueError(f"{name}: rows of different lengths; pad them to one length and pass an "
                         f"attention_mask") from None
    if array.dtype == object:
        raise ValueError(f"{name}: rows of different lengths, or values that are not integers "
                         f"numpy can hold")
    if expected_shape is not None and array.shape != expected_shape:
        raise ValueError(f"{name} has shape {array.shape} but input_ids has shape {expected_shape}")
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape [batch, seq] or [seq], got shape {array.shape}")
    if array.size == 0 and array.dtype not in dtypes:
        # np.asarray([]) is float64: an empty list is an empty batch, not a dtype error.
        array = array.astype(np.int64)
    if array.dtype not in dtypes:
        allowed = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"{name} must be an array of {allowed}, got dtype {array.dtype}")
    shape = array.shape
    if array.ndim == 1:
        array = array[np.newaxis, :]
    return np.array(array, dtype=np.int64, order="C"), shape


def _position(flat_index, shape):
    """A flat index of a [batch, seq] array as an index into the caller's original shape."""
    index = np.unravel_index(flat_index, shape)
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _check_range(array, name, limit, limit_name, original_shape, what):
    bad = (array < 0) | (array >= limit)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}{_position(first, original_shape)} = {int(array.flat[first])} is "
                         f"{what} [0, {limit_name}={limit})")


def _check_mask(mask, original_shape):
    bad = (mask != 0) & (mask != 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"attention_mask must hold only 0 and 1, found {int(mask.flat[first])} at "
                         f"{_position(first, original_shape)}")
    empty_rows = np.flatnonzero(mask.sum(axis=1) == 0)
    if empty_rows.size:
        raise ValueError(f"attention_mask row {int(empty_rows[0])} is all zeros: every sequence "
                         f"needs at least one real token")


def _initial_weight(name, shape, config, rng):
    """One tensor of a freshly initialized model (see BertModel.from_config)."""
    if name.endswith("LayerNorm.weight"):
        return np.ones(shape, dtype=np.float32)
    if name.endswith(".bias"):
        return np.zeros(shape, dtype=np.float32)
    weight = rng.standard_normal(shape, dtype=np.float32)
    weight *= np.float32(config.initializer_range)
    if name == "embeddings.word_embeddings.weight" and config.pad_token_id is not None:
        weight[config.pad_token_id] = 0.0
    return weight
