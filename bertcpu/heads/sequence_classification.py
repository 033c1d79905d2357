"""BertForSequenceClassification: the pooler output through a linear classifier, as transformers
computes it, loaded from the folder transformers saves (classifier.weight / classifier.bias)."""
import os

import numpy as np

from ._common import (LinearClassifierHead, Tokens, as_tokens, batches_by_length,
                      encoded_to_tokens, load_tokenizer, pad, sigmoid, softmax)

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


class BertForSequenceClassification(LinearClassifierHead):
    """transformers' BertForSequenceClassification: logits = classifier(pooler_output).

    Two-stage API (what a server's batcher calls): ``tokenize(texts, text_pair)`` -> one Tokens
    per input; ``logits_tokens(tokens)`` -> float32 [n, num_labels] for any list of Tokens (or
    id lists), one engine call. ``classify`` is both, batched by length, with the pipeline's
    score function.
    """

    WHAT = "the sequence-classification head (BertForSequenceClassification)"

    def __init__(self, model, weight, bias, labels, problem_type, tokenizer, name_or_path=None):
        super().__init__(model, weight, bias, labels, tokenizer, name_or_path)
        self.problem_type = problem_type

    @classmethod
    def from_pretrained(cls, path, num_threads=None, isa=None, dtype="float32"):
        """Load a folder saved by transformers' BertForSequenceClassification (config.json with
        id2label / problem_type, safetensors with the encoder, pooler and classifier.*).
        num_threads, isa, dtype: as in BertModel.from_pretrained (dtype applies to the encoder;
        the classifier is float32)."""
        folder, raw, model, weight, bias, labels = cls._load(path, num_threads, isa, dtype)
        config_path = os.path.join(folder, "config.json")
        problem_type = raw.get("problem_type")
        if problem_type is not None and problem_type not in PROBLEM_TYPES:
            raise ValueError(f"{config_path}: problem_type {problem_type!r} is not one of "
                             f"{', '.join(PROBLEM_TYPES)}")
        if not model.has_pooler:
            raise ValueError(f"{folder}: {cls.WHAT} classifies the pooler output, but the checkpoint "
                             f"has no pooler weights (pooler.dense.*)")
        return cls(model, weight, bias, labels, problem_type, load_tokenizer(folder),
                   name_or_path=folder)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        """float32 logits [batch, num_labels] of a padded batch (inputs as for BertModel)."""
        pooled = self.model(input_ids, attention_mask, token_type_ids).pooler_output
        return self.classify_pooled(pooled)

    def classify_pooled(self, pooled):
        """The classifier on pooler outputs [batch, hidden] -> logits [batch, num_labels]."""
        return (pooled @ self._weight + self._bias).astype(np.float32)

    # -- two-stage API -----------------------------------------------------------------------------

    def tokenize(self, texts, text_pair=None, max_length=None):
        """Texts (or texts and their pairs) -> a list of Tokens, truncated longest_first to
        max_length (default: the tokenizer's limit capped at the model's positions)."""
        tokenizer = self._require_tokenizer()
        if isinstance(texts, str) or (text_pair is not None and isinstance(text_pair, str)):
            raise TypeError("tokenize takes lists of texts (and of pairs); classify takes one str")
        if not texts:
            return []
        if max_length is None:
            max_length = min(tokenizer.model_max_length, self.config.max_position_embeddings)
        encoded = tokenizer(list(texts), None if text_pair is None else list(text_pair),
                            truncation="longest_first", max_length=max_length)
        return encoded_to_tokens(encoded)

    def logits_tokens(self, tokens):
        """Logits float32 [n, num_labels] of tokenized items (Tokens, (ids, types) or id lists),
        all in one engine call."""
        items = as_tokens(tokens, self.config.vocab_size, self.config.type_vocab_size,
                          self.config.max_position_embeddings)
        if not items:
            return np.zeros((0, self.num_labels), dtype=np.float32)
        return self(*pad(items))

    def classify(self, texts, text_pair=None, top_k=1, function_to_apply=None, batch_size=32):
        """transformers' text-classification pipeline: per text, [{"label", "score"}] sorted by
        score (top_k of them; None = all), or the best one alone when top_k=1 (the pipeline's
        default). function_to_apply: "softmax" | "sigmoid" | "none"; default as the pipeline
        (regression: none; multi-label or one label: sigmoid; otherwise softmax)."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if text_pair is not None:
            text_pair = [text_pair] if isinstance(text_pair, str) else list(text_pair)
        function = function_to_apply or self.default_function()
        if function not in ("softmax", "sigmoid", "none"):
            raise ValueError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {function!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        tokens = self.tokenize(texts, text_pair)
        logits = np.zeros((len(tokens), self.num_labels), dtype=np.float32)
        for batch in batches_by_length(tokens, batch_size):
            logits[batch] = self.logits_tokens([tokens[i] for i in batch])
        scores = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: x}[function](logits)
        results = []
        for row in scores:
            order = np.argsort(-row, kind="stable")[:top_k]
            ranked = [{"label": self.id2label[int(i)], "score": float(row[i])} for i in order]
            results.append(ranked[0] if top_k == 1 else ranked)
        return results[0] if single else results

    def default_function(self):
        """The score function transformers' pipeline applies for this model's problem_type."""
        if self.problem_type == "regression":
            return "none"
        if self.problem_type == "multi_label_classification" or self.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError(f"{self.name_or_path}: the folder has no tokenizer files (vocab.txt or "
                             f"tokenizer.json); pass token ids instead")
        return self.tokenizer

    def __repr__(self):
        return (f"BertForSequenceClassification(labels={self.num_labels}, "
                f"problem_type={self.problem_type!r}, dtype={self.dtype!r})")


__all__ = ["BertForSequenceClassification", "Tokens"]
