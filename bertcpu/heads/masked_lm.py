"""BertForMaskedLM: the encoder plus transformers' MLM head (transform dense + activation +
LayerNorm, then the vocabulary projection, tied to the word embeddings unless the config unties
it), run by the engine's VocabHead (csrc/encoder/vocab_head.h)."""
import os
import warnings

import numpy as np

from .. import _core
from ..weights import Checkpoint
from ..model import BertModel, _check_dtype
from ._common import Tokens, as_tokens, load_tokenizer, pad, read_config, softmax

_WHAT = "the masked-LM head (BertForMaskedLM)"
_PREFIX = "cls.predictions."


class BertForMaskedLM:
    """transformers' BertForMaskedLM: logits over the vocabulary at every position.

    ``__call__`` gives the full [batch, seq, vocab] logits; ``logits_at`` only those of chosen
    positions (fill_mask reads the masked ones); ``splade`` pools the head's output per sequence
    without ever holding [tokens, vocab] logits (SparseEncoder builds on it). Two-stage API:
    ``tokenize(texts)`` -> one Tokens per text; ``fill_mask_tokens(tokens, top_k)`` ->
    predictions for the [MASK] positions of each item.
    """

    def __init__(self, model, head, tokenizer, tied, name_or_path=None):
        self.model = model
        self.head = head
        self.tokenizer = tokenizer
        self.tied = tied
        self.name_or_path = name_or_path

    @classmethod
    def from_pretrained(cls, path, num_threads=None, isa=None, dtype="float32"):
        """Load a folder saved by transformers' BertForMaskedLM (or BertForPreTraining): the
        encoder, cls.predictions.transform.*, cls.predictions.bias, and cls.predictions.decoder.weight
        unless the config ties it to the word embeddings (tie_word_embeddings, default true).
        num_threads, isa, dtype: as in BertModel.from_pretrained; dtype applies to the head too."""
        folder = os.fspath(path)
        dtype = _check_dtype(dtype)
        raw, config = read_config(folder)
        tied = raw.get("tie_word_embeddings", True)
        if not isinstance(tied, bool):
            raise ValueError(f"{folder}/config.json: tie_word_embeddings must be true or false, got {tied!r}")
        if num_threads is not None:
            from ..runtime import set_num_threads
            set_num_threads(num_threads)
        H, V = config.hidden_size, config.vocab_size
        engine_act = config.to_core_dict(with_pooler=False)["hidden_act"]
        with Checkpoint(folder) as checkpoint:
            # The head first: a checkpoint without it fails before the encoder is built.
            head = _core.VocabHead(H, V, engine_act, config.layer_norm_eps, isa, dtype)
            names = {"transform.dense.weight": (H, H), "transform.dense.bias": (H,),
                     "transform.LayerNorm.weight": (H,), "transform.LayerNorm.bias": (H,)}
            for name, shape in names.items():
                head.set_weight(name, checkpoint.read_tensor(_PREFIX + name, shape, _WHAT))
            # The projection adds decoder.bias; transformers ties it to cls.predictions.bias and
            # saves only that one unless the weights are untied.
            bias_name = _PREFIX + "decoder.bias"
            if bias_name not in checkpoint:
                bias_name = _PREFIX + "bias"
            head.set_weight("bias", checkpoint.read_tensor(bias_name, (V,), _WHAT))
            decoder = ("embeddings.word_embeddings.weight" if tied else _PREFIX + "decoder.weight")
            head.set_weight("decoder.weight", checkpoint.read_tensor(
                decoder, (V, H), _WHAT + (" (tied to the word embeddings)" if tied else
                                          " (tie_word_embeddings is false)")))
            head.finalize()
            model = BertModel.from_checkpoint(checkpoint, config, isa=isa, dtype=dtype)
        return cls(model, head, load_tokenizer(folder), tied, name_or_path=folder)

    @property
    def config(self):
        return self.model.config

    @property
    def dtype(self):
        return self.model.dtype

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        """float32 logits [batch, seq, vocab] (zeros at padded positions)."""
        out = self.model(input_ids, attention_mask, token_type_ids)
        hidden = out.last_hidden_state
        mask = (np.ones(hidden.shape[:2], dtype=bool) if attention_mask is None
                else np.asarray(attention_mask).reshape(hidden.shape[:2]).astype(bool))
        logits = np.zeros(hidden.shape[:2] + (self.config.vocab_size,), dtype=np.float32)
        logits[mask] = self.head.logits(hidden[mask])
        return logits

    def logits_at(self, hidden_rows):
        """The head on encoder outputs [rows, hidden] -> logits [rows, vocab]."""
        return self.head.logits(np.ascontiguousarray(hidden_rows, dtype=np.float32))

    def splade(self, input_ids, attention_mask, token_type_ids=None, pooling="max", log_steps=1):
        """Per sequence, reduce (max or sum) over its real tokens of log1p applied log_steps times
        to relu(logits): float32 [batch, vocab]. The logits of all tokens are never held: the
        reduction runs in the projection's epilogue."""
        mask = np.asarray(attention_mask)
        out = self.model(input_ids, mask, token_type_ids)
        return self.head.pool(out.last_hidden_state, mask.astype(np.int64), pooling, log_steps)

    # -- fill-mask -----------------------------------------------------------------------------

    def tokenize(self, texts):
        """Texts -> a list of Tokens (truncated to the model's positions)."""
        tokenizer = self._require_tokenizer()
        max_length = min(tokenizer.model_max_length, self.config.max_position_embeddings)
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
        return [Tokens(ids, types) for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"])]

    def target_ids(self, targets):
        """The vocabulary ids fill-mask may answer with, as transformers' pipeline picks them:
        each target is a vocabulary token, or else the first token the tokenizer makes of it
        (a warning names the replacement); targets that make no token are dropped with a
        warning. Sorted, without repeats."""
        tokenizer = self._require_tokenizer()
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"targets must be a string or a list of strings, got {targets!r}")
        vocab = tokenizer.get_vocab()
        ids = set()
        for target in targets:
            if target in vocab:
                ids.add(vocab[target])
                continue
            pieces = tokenizer(target, add_special_tokens=False)["input_ids"]
            if not pieces:
                warnings.warn(f"target {target!r} is not in the vocabulary and makes no token; "
                              f"ignoring it", stacklevel=3)
                continue
            warnings.warn(f"target {target!r} is not in the vocabulary; using "
                          f"{tokenizer.convert_ids_to_tokens(pieces[0])!r} instead", stacklevel=3)
            ids.add(pieces[0])
        if not ids:
            raise ValueError(f"no usable target among {list(targets)!r}")
        return np.array(sorted(ids), dtype=np.int64)

    def fill_mask_tokens(self, tokens, top_k=5, targets=None):
        """For each item, per [MASK] position, the top_k predictions as transformers'
        fill-mask pipeline gives them: {"score", "token", "token_str", "sequence"}. targets
        (a token or a list of them, see target_ids) limits the candidates; scores stay the
        probabilities over the whole vocabulary, as in the pipeline."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        tokenizer = self._require_tokenizer()
        candidates = None if targets is None else self.target_ids(targets)
        items = as_tokens(tokens, self.config.vocab_size, self.config.type_vocab_size,
                          self.config.max_position_embeddings)
        mask_id = tokenizer.mask_token_id
        for index, item in enumerate(items):
            if mask_id not in item.input_ids:
                raise ValueError(f"item {index} has no {tokenizer.mask_token} token to fill")
        ids, mask, types = pad(items)
        hidden = self.model(ids, mask, types).last_hidden_state
        where = ids == mask_id
        probabilities = softmax(self.logits_at(hidden[where]), axis=-1)
        rows = iter(probabilities)
        results = []
        for item in items:
            per_mask = []
            # The pipeline keeps the special tokens (the other [MASK]s) in a several-mask text.
            single_mask = item.input_ids.count(mask_id) == 1
            for position, token_id in enumerate(item.input_ids):
                if token_id != mask_id:
                    continue
                probs = next(rows)
                pool = np.arange(probs.size) if candidates is None else candidates
                top = pool[np.argsort(-probs[pool], kind="stable")[:min(top_k, pool.size)]]
                predictions = []
                for candidate in top:
                    filled = list(item.input_ids)
                    filled[position] = int(candidate)
                    predictions.append({
                        "score": float(probs[candidate]), "token": int(candidate),
                        "token_str": tokenizer.decode([int(candidate)]),
                        "sequence": tokenizer.decode(filled, skip_special_tokens=single_mask)})
                per_mask.append(predictions)
            results.append(per_mask[0] if len(per_mask) == 1 else per_mask)
        return results

    def fill_mask(self, texts, top_k=5, targets=None):
        """transformers' fill-mask pipeline: for one text with one [MASK], a list of top_k
        {"score", "token", "token_str", "sequence"}; several masks give one such list per mask;
        a list of texts gives one result per text. targets: as in the pipeline (see
        fill_mask_tokens)."""
        single = isinstance(texts, str)
        results = self.fill_mask_tokens(self.tokenize([texts] if single else texts), top_k,
                                        targets)
        return results[0] if single else results

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError(f"{self.name_or_path}: the folder has no tokenizer files (vocab.txt or "
                             f"tokenizer.json)")
        return self.tokenizer

    def __repr__(self):
        c = self.config
        return (f"BertForMaskedLM(vocab={c.vocab_size}, hidden={c.hidden_size}, tied={self.tied}, "
                f"dtype={self.dtype!r})")
