"""SentenceEncoder: sentence-transformers models on the bertcpu engine, numpy in and out.

A sentence-transformers folder is a pipeline described by ``modules.json``: a Transformer (tokenizer
+ BERT encoder) that turns text into token embeddings, then modules that each read and write named
features: Pooling (token embeddings -> sentence embedding), Dense (a linear layer + activation) and
Normalize (L2). This module reads those files and runs the same pipeline with numpy (the modules
themselves are in st_modules.py), mirroring sentence-transformers' definitions (its pooling modes,
truncation, prompts) so that the vectors match ``SentenceTransformer.encode`` on the same folder.

A plain HuggingFace BERT folder (no ``modules.json``) is a Transformer followed by mean pooling,
as sentence-transformers builds it.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

from ._files import describe, read_json
from .hub import resolve_model_path
from .model import BertModel
from .st_modules import (OUTPUT_VALUES, POOLING_MODES, SENTENCE_EMBEDDING, TOKEN_EMBEDDINGS, Dense,
                         Normalize, Pooling, check_pooling_modes, l2_normalize)
from .tokenizer import Tokenizer

__all__ = ["POOLING_MODES", "ProgressBar", "SentenceEncoder", "find_transformer_folder",
           "read_modules_json", "similarity"]

# Names sentence-transformers has used for the Transformer module's config file.
_TRANSFORMER_CONFIG_FILES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)

def _module_kind(type_name):
    """'Transformer', 'Pooling', ... for a modules.json type such as
    'sentence_transformers.models.Pooling' or 'sentence_transformers.base.modules.dense.Dense';
    None for anything that is not a sentence-transformers class."""
    if not isinstance(type_name, str) or not type_name.startswith("sentence_transformers."):
        return None
    return type_name.rsplit(".", 1)[-1]


def module_folder(root, relative):
    """root/relative, refusing paths in modules.json that point outside the model folder."""
    if not isinstance(relative, str):
        raise ValueError(f"{root / 'modules.json'}: module path must be a string, got {relative!r}")
    normalized = os.path.normpath(relative) if relative else "."
    if os.path.isabs(normalized) or normalized == ".." or normalized.startswith(".." + os.sep):
        raise ValueError(f"{root / 'modules.json'}: module path {relative!r} leaves the model folder")
    return root / normalized


def read_modules_json(root):
    """The module entries of root/modules.json, in the order sentence-transformers runs them."""
    entries = read_json(root / "modules.json", expected=list)
    if not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{root / 'modules.json'}: expected a list of module objects")
    return entries


def find_transformer_folder(folder):
    """The folder holding config.json and the tokenizer files: the model folder itself for a plain
    HuggingFace folder, or the Transformer module's folder of a sentence-transformers pipeline."""
    root = Path(folder)
    if not (root / "modules.json").is_file():
        return root
    for entry in read_modules_json(root):
        if _module_kind(entry.get("type")) == "Transformer":
            return module_folder(root, entry.get("path", ""))
    raise ValueError(f"{root / 'modules.json'}: no sentence_transformers Transformer module")


# ---------------------------------------------------------------------------------------------
# Progress bar (stderr); the package depends on numpy and safetensors only, so no tqdm.
# ---------------------------------------------------------------------------------------------

class ProgressBar:
    """A one-line progress display that redraws itself at most ten times a second."""

    def __init__(self, total=None, unit="it", stream=None, width=30):
        self.total = total
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.count = 0
        self.start = time.monotonic()
        self._last_draw = 0.0

    def update(self, n):
        self.count += n
        now = time.monotonic()
        if now - self._last_draw >= 0.1:
            self._draw(now)

    def _draw(self, now):
        self._last_draw = now
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        if self.total:
            fraction = min(self.count / self.total, 1.0)
            filled = int(fraction * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            text = (f"\r{fraction:4.0%} |{bar}| {self.count}/{self.total} {self.unit} "
                    f"[{elapsed:.0f}s, {rate:.1f} {self.unit}/s]")
        else:
            text = f"\r{self.count} {self.unit} [{elapsed:.0f}s, {rate:.1f} {self.unit}/s]"
        self.stream.write(text)
        self.stream.flush()

    def close(self):
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------

class SentenceEncoder:
    """Sentence embeddings from a sentence-transformers (or plain BERT) folder, without torch.

    Build it with ``SentenceEncoder.from_pretrained(name_or_path)``; ``encode`` returns float32
    numpy arrays that match ``SentenceTransformer.encode`` on the same folder.
    """

    def __init__(self, tokenizer, model, modules, max_seq_length, prompts=None,
                 default_prompt_name=None, name_or_path=None):
        self.tokenizer = tokenizer
        self.model = model
        self._modules = list(modules)
        self.prompts = dict(prompts or {})
        self.default_prompt_name = default_prompt_name
        self.name_or_path = name_or_path
        self._prompt_lengths = {}
        self.max_seq_length = max_seq_length

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path, num_threads=None, pooling=None, max_seq_length=None,
                        revision=None, cache_dir=None, dtype="float32"):
        """Load a sentence-transformers folder, a plain HuggingFace BERT folder, or a hub id
        (from the local HuggingFace cache, or downloaded when huggingface_hub is installed).

        pooling: for a plain BERT folder, the pooling mode(s) to use (default "mean"); a
          sentence-transformers folder sets its own in 1_Pooling/config.json.
        max_seq_length: overrides the folder's maximum sequence length (inputs are truncated to it).
        dtype: what the transformer's dense layers compute in, "float32", "bfloat16" or "int8"
          (see BertModel.from_pretrained).
        """
        root = resolve_model_path(name_or_path, revision=revision, cache_dir=cache_dir)
        st_config_file = root / "config_sentence_transformers.json"
        st_config = read_json(st_config_file) if st_config_file.is_file() else {}
        model_type = st_config.get("model_type", "SentenceTransformer")
        if model_type != "SentenceTransformer":
            raise ValueError(f"{st_config_file}: model_type {model_type!r} is not supported; "
                             f"bertcpu runs SentenceTransformer (embedding) models")
        prompts = st_config.get("prompts") or {}
        default_prompt_name = st_config.get("default_prompt_name")
        if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
            raise ValueError(f"{st_config_file}: 'prompts' must map names to strings")
        if default_prompt_name is not None and (not isinstance(default_prompt_name, str)
                                                or default_prompt_name not in prompts):
            raise ValueError(f"{st_config_file}: default_prompt_name {describe(default_prompt_name)} is "
                             f"not one of the prompts ({', '.join(prompts) or 'none'})")

        if (root / "modules.json").is_file():
            if pooling is not None:
                raise ValueError(f"pooling= applies to plain BERT folders; {root} is a "
                                 f"sentence-transformers folder whose modules.json sets its pooling")
            entries = read_modules_json(root)
        else:
            entries = [{"type": "sentence_transformers.models.Transformer", "path": ""}]
            modes = check_pooling_modes("mean" if pooling is None else pooling, source="pooling")
            # Plain folder: mean (or the requested) pooling on the Transformer's output, nothing else.
            pooling = modes

        transformer = None
        modules = []
        dimensions = {}
        for position, entry in enumerate(entries):
            kind = _module_kind(entry.get("type"))
            folder = module_folder(root, entry.get("path", ""))
            if position == 0:
                if kind != "Transformer":
                    raise ValueError(f"{root / 'modules.json'}: the first module must be a "
                                     f"sentence_transformers Transformer, found {entry.get('type')!r}")
                transformer = _load_transformer(folder, num_threads, dtype)
                dimensions[TOKEN_EMBEDDINGS] = transformer["model"].config.hidden_size
            elif kind == "Pooling":
                module = Pooling.from_config(folder / "config.json", dimensions[TOKEN_EMBEDDINGS])
                dimensions[SENTENCE_EMBEDDING] = module.output_dimension
                modules.append(module)
            elif kind == "Dense":
                module = Dense.from_folder(folder, dimensions)
                dimensions[module.output_name] = module.output_dimension
                modules.append(module)
            elif kind == "Normalize":
                module = Normalize.from_folder(folder)
                if module.input_name not in dimensions:
                    raise ValueError(f"{root / 'modules.json'}: Normalize reads {module.input_name!r} "
                                     f"before any module produces it")
                dimensions[module.output_name] = dimensions[module.input_name]
                modules.append(module)
            else:
                raise ValueError(f"{root / 'modules.json'}: module {entry.get('type')!r} is not "
                                 f"supported; bertcpu runs Transformer, Pooling, Dense and Normalize")
        if pooling is not None:
            hidden = dimensions[TOKEN_EMBEDDINGS]
            modules.append(Pooling(pooling, include_prompt=True, dimension=hidden))
        if not any(isinstance(m, Pooling) for m in modules):
            raise ValueError(f"{root / 'modules.json'}: no Pooling module, so the pipeline produces "
                             f"no sentence embedding")

        encoder = cls(transformer["tokenizer"], transformer["model"], modules,
                      max_seq_length=transformer["max_seq_length"], prompts=prompts,
                      default_prompt_name=default_prompt_name, name_or_path=str(name_or_path))
        if max_seq_length is not None:
            encoder.max_seq_length = max_seq_length
        return encoder

    # -- properties ----------------------------------------------------------------------------

    @property
    def max_seq_length(self):
        """Inputs are truncated to this many tokens ([CLS] and [SEP] included)."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value):
        limit = self.model.config.max_position_embeddings
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"max_seq_length must be an integer >= 2, got {value!r}")
        if value > limit:
            raise ValueError(f"max_seq_length {value} exceeds the model's max_position_embeddings "
                             f"({limit})")
        self._max_seq_length = value
        self._prompt_lengths.clear()

    @property
    def modules(self):
        """The pipeline after the Transformer, as short descriptions (e.g. 'Pooling(mean)')."""
        return [module.describe() for module in self._modules]

    def get_embedding_dimension(self):
        """The length of the vectors encode() returns."""
        dimension = None
        for module in self._modules:
            if isinstance(module, Pooling):
                dimension = module.output_dimension
            elif isinstance(module, Dense) and module.output_name == SENTENCE_EMBEDDING:
                dimension = module.output_dimension
        return dimension

    # The name sentence-transformers used before 6.0, which most code still calls.
    get_sentence_embedding_dimension = get_embedding_dimension

    def __repr__(self):
        stages = ", ".join(["Transformer(max_seq_length=%d)" % self.max_seq_length] + self.modules)
        return f"SentenceEncoder({self.name_or_path!r}: {stages})"

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, sentences, batch_size=32, normalize_embeddings=None,
               output_value="sentence_embedding", show_progress_bar=None, prompt=None,
               prompt_name=None, truncate_dim=None):
        """Embed one sentence (-> float32 [dim]) or a list of them (-> float32 [n, dim]).

        show_progress_bar: True draws a progress bar on stderr; a ProgressBar is advanced instead
          (one bar over several calls).
        normalize_embeddings: None applies the model's own pipeline (its Normalize module, if any);
          True L2-normalizes the result; False skips normalization, the model's Normalize included.
        output_value: "sentence_embedding", or "token_embeddings" for a list of [tokens_i, hidden]
          arrays (one array for one sentence), each cut after its last real token.
        prompt / prompt_name: text put before every sentence (prompt_name picks one of the model's
          configured prompts; with neither, the model's default prompt applies, if it has one).
        truncate_dim: keep only the first truncate_dim dimensions (Matryoshka models), before
          normalization.
        Sentences are batched by length (longest first) and returned in input order.
        """
        single = isinstance(sentences, str)
        texts = [sentences] if single else _as_text_list(sentences)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        _check_output_options(normalize_embeddings, output_value, truncate_dim)
        prompt = self.resolve_prompt(prompt, prompt_name)
        prompt_length = self.prompt_length(prompt) if prompt else None

        dimension = self.get_embedding_dimension()
        if truncate_dim is not None:
            dimension = min(dimension, truncate_dim)
        if output_value == SENTENCE_EMBEDDING:
            results = np.empty((len(texts), dimension), dtype=np.float32)
        else:
            results = [None] * len(texts)

        # Longest first, as sentence-transformers orders them, so each batch has little padding.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        if isinstance(show_progress_bar, ProgressBar):
            progress, own_progress = show_progress_bar, False
        elif show_progress_bar:
            progress, own_progress = ProgressBar(total=len(texts), unit="sentences"), True
        else:
            progress, own_progress = None, False
        for start in range(0, len(texts), batch_size):
            indices = order[start:start + batch_size]
            batch = [texts[i] for i in indices]
            if prompt:
                batch = [prompt + text for text in batch]
            outputs = self._run(self.tokenize(batch), prompt_length, normalize_embeddings,
                                output_value, truncate_dim)
            if output_value == SENTENCE_EMBEDDING:
                results[indices] = outputs
            else:
                for row, index in enumerate(indices):
                    results[index] = outputs[row]
            if progress is not None:
                progress.update(len(batch))
        if own_progress:
            progress.close()
        return results[0] if single else results

    def encode_tokens(self, sequences, normalize_embeddings=None, output_value="sentence_embedding",
                      prompt_length=None, truncate_dim=None):
        """encode()'s second half, for inputs tokenized already: all of them in one engine call.

        For callers that batch by themselves (bertcpu serve runs the inputs of many requests
        together). sequences: lists (or 1-D int arrays) of token ids as the tokenizer returns them
        for one text, [CLS] and [SEP] included, 1 to max_position_embeddings long; they are run as
        given (no truncation to max_seq_length). prompt_length: how many leading tokens of every
        sequence are the prompt (prompt_length(prompt)), for models whose pooling leaves the prompt
        out. normalize_embeddings, output_value, truncate_dim: as in encode.
        Returns float32 [n, dim], or for token embeddings a list of [tokens_i, hidden] arrays.
        """
        _check_output_options(normalize_embeddings, output_value, truncate_dim)
        if isinstance(sequences, (str, np.ndarray)) or not isinstance(sequences, (list, tuple)):
            raise TypeError(f"sequences must be a list of token id lists, got {type(sequences).__name__}")
        if not sequences:
            raise ValueError("sequences is empty: give at least one token id list")
        lengths = [len(ids) for ids in sequences]
        input_ids = np.zeros((len(sequences), max(lengths)), dtype=np.int64)
        attention_mask = np.zeros_like(input_ids)
        for row, (ids, length) in enumerate(zip(sequences, lengths)):
            input_ids[row, :length] = ids
            attention_mask[row, :length] = 1
        encoded = {"input_ids": input_ids, "attention_mask": attention_mask,
                   "token_type_ids": np.zeros_like(input_ids)}
        return self._run(encoded, prompt_length, normalize_embeddings, output_value, truncate_dim)

    def resolve_prompt(self, prompt=None, prompt_name=None):
        """The text encode() puts before each sentence for these arguments (see encode), or None."""
        if prompt is not None:
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(f"prompt_name {prompt_name!r} is not one of this model's prompts "
                                 f"({', '.join(map(repr, self.prompts)) or 'none configured'})")
            return self.prompts[prompt_name]
        if self.default_prompt_name is not None:
            return self.prompts[self.default_prompt_name]
        return None

    def prompt_length(self, prompt):
        """Tokens the prompt occupies at the start of each input: its own tokenization without the
        trailing special token (sentence-transformers' rule), so [CLS] counts as part of it."""
        if prompt not in self._prompt_lengths:
            ids = self.tokenize([prompt])["input_ids"][0]
            length = len(ids)
            if length and int(ids[-1]) in self.tokenizer.all_special_ids:
                length -= 1
            self._prompt_lengths[prompt] = length
        return self._prompt_lengths[prompt]

    def tokenize(self, texts):
        """The token ids encode() feeds the model for these texts (lowercased if the model says so,
        truncated to max_seq_length, padded to the longest): a mapping of int64 arrays."""
        return self.tokenizer(_as_text_list(texts), padding=True, truncation=True,
                              max_length=self.max_seq_length, return_tensors="np")

    def _run(self, encoded, prompt_length, normalize_embeddings, output_value, truncate_dim):
        """The model and the module pipeline on one padded batch -> what encode returns for it."""
        attention_mask = encoded["attention_mask"]
        output = self.model(encoded["input_ids"], attention_mask, encoded["token_type_ids"])
        features = {TOKEN_EMBEDDINGS: output.last_hidden_state, "attention_mask": attention_mask,
                    "prompt_length": prompt_length}
        for module in self._modules:
            if normalize_embeddings is False and isinstance(module, Normalize):
                continue
            module(features)
        if output_value == TOKEN_EMBEDDINGS:
            tokens = features[TOKEN_EMBEDDINGS]
            lengths = attention_mask.sum(axis=1)
            return [np.array(tokens[row, :max(int(lengths[row]), 1)]) for row in range(len(tokens))]
        embeddings = features[SENTENCE_EMBEDDING]
        if truncate_dim is not None:
            embeddings = embeddings[:, :truncate_dim]
        if normalize_embeddings:
            embeddings = l2_normalize(embeddings)
        return embeddings


def _check_output_options(normalize_embeddings, output_value, truncate_dim):
    if output_value not in OUTPUT_VALUES:
        raise ValueError(f"output_value must be one of {', '.join(map(repr, OUTPUT_VALUES))}, "
                         f"got {output_value!r}")
    if normalize_embeddings not in (None, True, False):
        raise ValueError(f"normalize_embeddings must be None, True or False, "
                         f"got {normalize_embeddings!r}")
    if truncate_dim is not None and (isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int)
                                     or truncate_dim < 1):
        raise ValueError(f"truncate_dim must be a positive integer, got {truncate_dim!r}")


def _as_text_list(sentences):
    if isinstance(sentences, np.ndarray):
        sentences = sentences.tolist()
    try:
        texts = list(sentences)
    except TypeError:
        raise TypeError(f"sentences must be a string or a list of strings, got "
                        f"{type(sentences).__name__}") from None
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"sentences[{index}] is {type(text).__name__}, expected str")
    return texts


def _load_transformer(folder, num_threads, dtype):
    """The tokenizer, encoder and text settings of a Transformer module folder."""
    settings = transformer_settings(folder, "feature-extraction", "last_hidden_state")
    model = BertModel.from_pretrained(folder, num_threads=num_threads, dtype=dtype)
    return {"tokenizer": settings["tokenizer"], "model": model,
            "max_seq_length": max_seq_length_for(settings, model.config)}


def transformer_settings(folder, task, output):
    """What a sentence-transformers Transformer module folder says about its text: the tokenizer
    (lowercasing the input first when the module says do_lower_case) and the configured
    max_seq_length (None when unset). task: the transformer_task the caller runs ("feature-extraction",
    "sequence-classification", "fill-mask"); output: the model output it reads ("last_hidden_state",
    "logits")."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json (not a BERT model folder)")
    settings, settings_file = {}, None
    for name in _TRANSFORMER_CONFIG_FILES:
        if (folder / name).is_file():
            settings_file = folder / name
            settings = read_json(settings_file)
            break
    found_task = settings.get("transformer_task", task)
    if found_task != task:
        raise ValueError(f"{settings_file}: transformer_task {describe(found_task)} is not supported "
                         f"here; this loader runs {task!r} models")
    modality = _object_field(settings, "modality_config", settings_file)
    found_output = _object_field(modality, "text", settings_file, "modality_config.text").get("method_output_name")
    if found_output not in (None, output, [output]):
        raise ValueError(f"{settings_file}: the Transformer outputs {describe(found_output)}; bertcpu "
                         f"supports {output!r} here")
    do_lower_case = settings.get("do_lower_case", False)
    if not isinstance(do_lower_case, bool):
        raise ValueError(f"{settings_file}: do_lower_case must be true or false, got {describe(do_lower_case)}")
    max_seq_length = settings.get("max_seq_length")
    # Newer sentence-transformers versions keep tokenizer call options in processing_kwargs; a
    # text max_length there is the truncation length. Other options would change the tokens.
    processing = _object_field(settings, "processing_kwargs", settings_file)
    text_options = _object_field(processing, "text", settings_file, "processing_kwargs.text")
    if set(processing) - {"text"} or set(text_options) - {"max_length"}:
        raise ValueError(f"{settings_file}: processing_kwargs {processing!r} are not supported (only "
                         f"{{'text': {{'max_length': N}}}} is)")
    if "max_length" in text_options:
        max_seq_length = text_options["max_length"]
    if max_seq_length is not None and (isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int)
                                       or max_seq_length < 2):
        raise ValueError(f"{settings_file}: max_seq_length must be an integer >= 2, got "
                         f"{describe(max_seq_length)}")
    # do_lower_case lowercases the text before the tokenizer's own normalizer (whatever that does),
    # as sentence-transformers does by putting a Lowercase normalizer in front.
    tokenizer = Tokenizer.from_pretrained(folder, lowercase_input=do_lower_case)
    return {"tokenizer": tokenizer, "max_seq_length": max_seq_length}


def max_seq_length_for(settings, config):
    """sentence-transformers' truncation length: the configured one, else the tokenizer's limit,
    capped at the model's positions."""
    limit = config.max_position_embeddings
    configured = settings["max_seq_length"]
    if configured is None:
        return min(settings["tokenizer"].model_max_length, limit)
    return min(configured, limit)


def _object_field(data, key, path, name=None):
    """data[key] of the JSON file at path, which must be an object; {} when absent or null.
    name: the field's name in messages (default key)."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{path}: field {name or key!r} must be an object, got {describe(value)}")
    return value


def similarity(a, b):
    """Cosine similarity matrix: a [n, d] (or [d]) and b [m, d] (or [d]) -> float32 [n, m].

    A one-dimensional input counts as one row; zero vectors have similarity 0 to everything.
    """
    a = _as_matrix(a, "a")
    b = _as_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same vector length, got {a.shape[1]} and {b.shape[1]}")
    a = l2_normalize(a)
    b = l2_normalize(b)
    return (a @ b.T).astype(np.float32)


def _as_matrix(x, name):
    array = np.asarray(x)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{name} must be a vector [d] or a matrix [n, d], got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has vectors of length 0")
    return array.astype(np.float32)
