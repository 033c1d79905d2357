"""The modules of a sentence-transformers pipeline after its Transformer, in numpy: Pooling
(token embeddings -> sentence embedding), Dense (a linear layer + activation) and Normalize (L2),
each read from its folder and computed as sentence-transformers defines it. SentenceEncoder
(sentence.py) runs them in modules.json's order.
"""
import math

import numpy as np

from ._files import read_json
from .weights import SafetensorsFile

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

# Legacy 1_Pooling/config.json booleans, in the order sentence-transformers concatenates them.
_LEGACY_POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)

TOKEN_EMBEDDINGS = "token_embeddings"
SENTENCE_EMBEDDING = "sentence_embedding"
OUTPUT_VALUES = (SENTENCE_EMBEDDING, TOKEN_EMBEDDINGS)

# torch.nn.functional.normalize's default eps: vectors shorter than this are divided by eps.
_NORMALIZE_EPS = 1e-12


# ---------------------------------------------------------------------------------------------
# Pipeline modules. Each one updates a features dictionary in place:
#   token_embeddings  float32 [B, S, H]   attention_mask  int64 [B, S]
#   sentence_embedding float32 [B, D]     prompt_length   int or None (tokens of the prompt)
# ---------------------------------------------------------------------------------------------

class Pooling:
    """sentence-transformers' Pooling (padded path), one branch per mode, concatenated in order."""

    def __init__(self, modes, include_prompt, dimension):
        self.modes = modes
        self.include_prompt = include_prompt
        self.dimension = dimension

    @classmethod
    def from_config(cls, path, token_dimension):
        config = read_json(path)
        if "pooling_mode" in config:
            modes = config["pooling_mode"]
        else:
            modes = [mode for key, mode in _LEGACY_POOLING_KEYS if config.get(key, False)] or ["mean"]
        modes = check_pooling_modes(modes, source=str(path))
        dimension = config.get("embedding_dimension", config.get("word_embedding_dimension"))
        if dimension is not None and dimension != token_dimension:
            raise ValueError(f"{path}: embedding dimension {dimension} does not match the token "
                             f"embeddings it pools ({token_dimension})")
        include_prompt = config.get("include_prompt", True)
        if not isinstance(include_prompt, bool):
            raise ValueError(f"{path}: include_prompt must be true or false, got {include_prompt!r}")
        return cls(modes, include_prompt, token_dimension)

    @property
    def output_dimension(self):
        return len(self.modes) * self.dimension

    def describe(self):
        prompt = "" if self.include_prompt else ", prompt excluded"
        return f"Pooling({'+'.join(self.modes)}{prompt})"

    def __call__(self, features):
        embeddings = features[TOKEN_EMBEDDINGS]
        original_mask = features["attention_mask"]
        mask = original_mask
        prompt_length = features.get("prompt_length")
        if not self.include_prompt and prompt_length:
            # The tokenizer pads on the right, so the prompt is the first prompt_length tokens.
            mask = original_mask.copy()
            mask[:, :prompt_length] = 0
        outputs = []
        mean_sum = mean_count = None
        for mode in self.modes:
            if mode == "cls":
                # The first position the mask keeps (position 0 when it keeps none).
                first = mask.argmax(axis=1)
                outputs.append(embeddings[np.arange(len(embeddings)), first])
            elif mode == "max":
                masked = np.where(mask[:, :, None] == 0, np.float32(-np.inf), embeddings)
                outputs.append(masked.max(axis=1))
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                if mean_sum is None:
                    weights = mask[:, :, None].astype(np.float32)
                    mean_sum = (embeddings * weights).sum(axis=1)
                    mean_count = np.maximum(weights.sum(axis=1), np.float32(1e-9))
                denominator = mean_count if mode == "mean" else np.sqrt(mean_count)
                outputs.append(mean_sum / denominator)
            elif mode == "weightedmean":
                # Weight i+1 for position i, counted from the first real token of the unexcluded
                # mask (left padding shifts it; a prompt keeps its positions).
                positions = np.arange(1, mask.shape[1] + 1, dtype=np.float32)[None, :]
                first_real = original_mask.argmax(axis=1).astype(np.float32)[:, None]
                weights = (mask.astype(np.float32) * (positions - first_real))[:, :, None]
                total = np.maximum(weights.sum(axis=1), np.float32(1e-9))
                outputs.append((embeddings * weights).sum(axis=1) / total)
            else:  # lasttoken
                # The last position the mask keeps; with none kept, a zero vector (as the reference).
                keeps_any = mask.any(axis=1)
                last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
                last = np.where(keeps_any, last, 0)
                picked = embeddings[np.arange(len(embeddings)), last]
                outputs.append(picked * keeps_any[:, None].astype(np.float32))
        pooled = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=1)
        features[SENTENCE_EMBEDDING] = np.ascontiguousarray(pooled, dtype=np.float32)


def check_pooling_modes(modes, source):
    if isinstance(modes, str):
        modes = [modes]
    if not isinstance(modes, (list, tuple)) or not modes:
        raise ValueError(f"{source}: pooling mode must be a name or a non-empty list of names, "
                         f"got {modes!r}")
    for mode in modes:
        if mode not in POOLING_MODES:
            raise ValueError(f"{source}: unknown pooling mode {mode!r}; valid modes: "
                             f"{', '.join(POOLING_MODES)}")
    return tuple(modes)


def _gelu(x):
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return (0.5 * x * (1.0 + erf(x.astype(np.float64) / math.sqrt(2.0)))).astype(np.float32)


def _sigmoid(x):
    return np.exp(-np.logaddexp(np.float32(0), -x))


# Dense activations by their torch.nn class name, each computed as torch's default instance does.
TORCH_ACTIVATIONS = {
    "Identity": lambda x: x,
    "Tanh": np.tanh,
    "ReLU": lambda x: np.maximum(x, np.float32(0)),
    "GELU": _gelu,
    "Sigmoid": _sigmoid,
    "SiLU": lambda x: x * _sigmoid(x),
    "LeakyReLU": lambda x: np.where(x >= 0, x, np.float32(0.01) * x),
    "ELU": lambda x: np.where(x > 0, x, np.expm1(x)),
    "Softplus": lambda x: np.where(x > 20, x, np.logaddexp(np.float32(0), x)),
}


class Dense:
    """sentence-transformers' Dense: activation(x @ W.T + b), plus an optional residual."""

    def __init__(self, weight, bias, activation_name, use_residual, residual_weight, input_name,
                 output_name):
        self.weight_t = np.ascontiguousarray(weight.T)
        self.bias = bias
        self.activation_name = activation_name
        self.activation = TORCH_ACTIVATIONS[activation_name]
        self.use_residual = use_residual
        # Without its own weight the residual is the input itself (in_features == out_features).
        self.residual_weight_t = (None if residual_weight is None
                                  else np.ascontiguousarray(residual_weight.T))
        self.input_name = input_name
        self.output_name = output_name

    @classmethod
    def from_folder(cls, folder, input_dimensions):
        config = read_json(folder / "config.json")
        in_features, out_features = config.get("in_features"), config.get("out_features")
        for key, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{folder / 'config.json'}: {key} must be a positive integer, "
                                 f"got {value!r}")
        input_name, output_name = _feature_names(config, folder / "config.json")
        if input_dimensions.get(input_name) != in_features:
            raise ValueError(f"{folder / 'config.json'}: in_features is {in_features} but "
                             f"{input_name} has dimension {input_dimensions.get(input_name)}")
        # sentence-transformers' default activation is Tanh when the config names none.
        activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")
        activation_name = activation.rsplit(".", 1)[-1] if isinstance(activation, str) else None
        if (not isinstance(activation, str) or not activation.startswith("torch.nn.")
                or activation_name not in TORCH_ACTIVATIONS):
            raise ValueError(f"{folder / 'config.json'}: activation function {activation!r} is not "
                             f"supported; supported: "
                             f"{', '.join('torch.nn.' + name for name in TORCH_ACTIVATIONS)}")
        has_bias = config.get("bias", True)
        use_residual = config.get("use_residual", False)

        tensors = _read_safetensors(folder)
        expected = {"linear.weight": (out_features, in_features)}
        if has_bias:
            expected["linear.bias"] = (out_features,)
        if use_residual and in_features != out_features:
            expected["residual.weight"] = (out_features, in_features)
        for name, shape in expected.items():
            if name not in tensors:
                raise ValueError(f"{folder / 'model.safetensors'}: missing tensor {name!r}")
            if tensors[name].shape != shape:
                raise ValueError(f"{folder / 'model.safetensors'}: tensor {name!r} has shape "
                                 f"{list(tensors[name].shape)}, expected {list(shape)}")
        unexpected = sorted(set(tensors) - set(expected))
        if unexpected:
            raise ValueError(f"{folder / 'model.safetensors'}: unexpected tensor(s) "
                             f"{', '.join(unexpected)} for this Dense config")
        return cls(tensors["linear.weight"], tensors.get("linear.bias"), activation_name,
                   bool(use_residual), tensors.get("residual.weight"), input_name, output_name)

    @property
    def output_dimension(self):
        return self.weight_t.shape[1]

    def describe(self):
        residual = ", residual" if self.use_residual else ""
        return (f"Dense({self.weight_t.shape[0]}->{self.weight_t.shape[1]}, "
                f"{self.activation_name}{residual})")

    def __call__(self, features):
        x = features[self.input_name]
        out = x @ self.weight_t
        if self.bias is not None:
            out += self.bias
        out = self.activation(out)
        if self.use_residual:
            out = out + (x if self.residual_weight_t is None else x @ self.residual_weight_t)
        features[self.output_name] = np.ascontiguousarray(out, dtype=np.float32)


class Normalize:
    """L2 normalization of one feature along its last axis (torch.nn.functional.normalize)."""

    def __init__(self, input_name, output_name):
        self.input_name = input_name
        self.output_name = output_name

    @classmethod
    def from_folder(cls, folder):
        # Older sentence-transformers versions save no config (often no folder) for Normalize.
        config_file = folder / "config.json"
        config = read_json(config_file) if config_file.is_file() else {}
        return cls(*_feature_names(config, config_file))

    def describe(self):
        return "Normalize"

    def __call__(self, features):
        x = features[self.input_name]
        features[self.output_name] = l2_normalize(x)


def l2_normalize(x):
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, np.float32(_NORMALIZE_EPS))).astype(np.float32)


def _feature_names(config, source):
    input_name = config.get("module_input_name", SENTENCE_EMBEDDING)
    output_name = config.get("module_output_name") or input_name
    for name in (input_name, output_name):
        if name not in OUTPUT_VALUES:
            raise ValueError(f"{source}: feature {name!r} is not supported; modules may read and "
                             f"write {SENTENCE_EMBEDDING!r} or {TOKEN_EMBEDDINGS!r}")
    return input_name, output_name


def _read_safetensors(folder):
    """All tensors of folder/model.safetensors as float32 arrays (small files: Dense layers)."""
    path = folder / "model.safetensors"
    if not path.is_file():
        if (folder / "pytorch_model.bin").is_file():
            raise ValueError(f"{folder} holds pytorch_model.bin but no model.safetensors: bertcpu reads "
                             f"safetensors only (pickle files can run arbitrary code when loaded); "
                             f"convert it once with safetensors.torch.save_file(torch.load(...), "
                             f"'model.safetensors')")
        raise FileNotFoundError(f"{folder}: no model.safetensors")
    file = SafetensorsFile(path)
    try:
        return {name: np.array(file.read(entry), dtype=np.float32)
                for name, entry in file.tensors.items()}
    finally:
        file.close()
