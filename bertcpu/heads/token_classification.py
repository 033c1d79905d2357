"""BertForTokenClassification (NER, tagging): a linear classifier on every token's hidden state,
and transformers' token-classification pipeline on top (aggregation strategies none, simple,
first, average, max; entities with character offsets from the tokenizer)."""

import numpy as np

from ._common import (LinearClassifierHead, as_tokens, batches_by_length, encoded_to_tokens,
                      load_tokenizer, pad, softmax)

AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")


class BertForTokenClassification(LinearClassifierHead):
    """transformers' BertForTokenClassification: logits = classifier(last_hidden_state).

    Two-stage API (what a server's batcher calls): ``tokenize(texts)`` -> one Tokens per text,
    with the character offsets of its tokens; ``logits_tokens(tokens)`` -> one float32
    [tokens_i, num_labels] array per item, one engine call; ``entities_from_logits(text, tokens,
    logits, aggregation_strategy)`` -> what ``predict`` returns for that text.
    """

    WHAT = "the token-classification head (BertForTokenClassification)"

    @classmethod
    def from_pretrained(cls, path, num_threads=None, isa=None, dtype="float32"):
        """Load a folder saved by transformers' BertForTokenClassification. num_threads, isa,
        dtype: as in BertModel.from_pretrained (dtype applies to the encoder)."""
        folder, _, model, weight, bias, labels = cls._load(path, num_threads, isa, dtype)
        return cls(model, weight, bias, labels, load_tokenizer(folder), name_or_path=folder)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        """float32 logits [batch, seq, num_labels] (padded positions hold the classifier bias:
        their hidden states are zeros)."""
        hidden = self.model(input_ids, attention_mask, token_type_ids).last_hidden_state
        return (hidden @ self._weight + self._bias).astype(np.float32)

    # -- two-stage API -----------------------------------------------------------------------------

    def tokenize(self, texts):
        """Texts -> a list of Tokens with offsets, truncated to the tokenizer's limit (capped at
        the model's positions), as the pipeline tokenizes."""
        if self.tokenizer is None:
            raise ValueError(f"{self.name_or_path}: the folder has no tokenizer files")
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
        if not texts:
            return []
        max_length = min(self.tokenizer.model_max_length, self.config.max_position_embeddings)
        encoded = self.tokenizer(texts, truncation=True, max_length=max_length,
                                 return_offsets_mapping=True)
        return encoded_to_tokens(encoded, with_offsets=True)

    def logits_tokens(self, tokens):
        """One float32 [tokens_i, num_labels] array per tokenized item, one engine call."""
        items = as_tokens(tokens, self.config.vocab_size, self.config.type_vocab_size,
                          self.config.max_position_embeddings)
        if not items:
            return []
        logits = self(*pad(items))
        return [logits[row, :len(item.input_ids)] for row, item in enumerate(items)]

    def predict(self, texts, aggregation_strategy="none", ignore_labels=("O",), batch_size=32):
        """transformers' token-classification pipeline: per text, a list of entities.
        "none": one {"entity", "score", "index", "word", "start", "end"} per token; otherwise
        {"entity_group", "score", "word", "start", "end"} per group of adjacent tokens (simple)
        or whole words (first, average, max) of the same entity. Entities labelled with one of
        ignore_labels are left out. One text gives one list."""
        if aggregation_strategy not in AGGREGATION_STRATEGIES:
            raise ValueError(f"aggregation_strategy must be one of {', '.join(AGGREGATION_STRATEGIES)}, "
                             f"got {aggregation_strategy!r}")
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        tokens = self.tokenize(texts)
        logits = [None] * len(tokens)
        for batch in batches_by_length(tokens, batch_size):
            for index, item_logits in zip(batch, self.logits_tokens([tokens[i] for i in batch])):
                logits[index] = item_logits
        results = [self.entities_from_logits(text, item, item_logits, aggregation_strategy, ignore_labels)
                   for text, item, item_logits in zip(texts, tokens, logits)]
        return results[0] if single else results

    # -- the pipeline's post-processing --------------------------------------------------------------

    def entities_from_logits(self, text, tokens, logits, aggregation_strategy="none", ignore_labels=("O",)):
        """The entities of one text from its Tokens (with offsets) and logits."""
        if tokens.offsets is None:
            raise ValueError("tokens carry no offsets: tokenize with BertForTokenClassification.tokenize")
        scores = softmax(logits, axis=-1)
        pre_entities = self._pre_entities(text, tokens, scores)
        if aggregation_strategy in ("none", "simple"):
            entities = []
            for pre in pre_entities:
                best = int(pre["scores"].argmax())
                entities.append({"entity": self.id2label[best], "score": pre["scores"][best],
                                 "index": pre["index"], "word": pre["word"], "start": pre["start"],
                                 "end": pre["end"]})
            if aggregation_strategy == "simple":
                entities = self._group_entities(entities)
        else:
            entities = self._group_entities(self._aggregate_words(pre_entities, aggregation_strategy))
        ignored = set(ignore_labels or ())
        return [e for e in entities if e.get("entity") not in ignored and e.get("entity_group") not in ignored]

    def _pre_entities(self, text, tokens, scores):
        """One record per token that is not [CLS]/[SEP]: its token, scores, span, and whether it
        continues a word (its text is longer than its span, i.e. it carries "##")."""
        pre_entities = []
        last = len(tokens.input_ids) - 1
        unk = self.tokenizer.unk_token_id
        for index, token_id in enumerate(tokens.input_ids):
            if index == 0 or index == last:  # the [CLS] and [SEP] the tokenizer added
                continue
            start, end = tokens.offsets[index]
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            word_ref = text[start:end]
            is_subword = len(word) != len(word_ref)
            if token_id == unk:
                word, is_subword = word_ref, False
            pre_entities.append({"word": word, "scores": scores[index], "start": start, "end": end,
                                 "index": index, "is_subword": is_subword})
        return pre_entities

    def _aggregate_words(self, pre_entities, strategy):
        words, group = [], []
        for pre in pre_entities:
            if group and not pre["is_subword"]:
                words.append(self._aggregate_word(group, strategy))
                group = []
            group.append(pre)
        if group:
            words.append(self._aggregate_word(group, strategy))
        return words

    def _aggregate_word(self, group, strategy):
        if strategy == "first":
            scores = group[0]["scores"]
        elif strategy == "max":
            scores = max(group, key=lambda pre: pre["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([pre["scores"] for pre in group]), axis=0)
        best = int(scores.argmax())
        return {"entity": self.id2label[best], "score": scores[best],
                "word": self.tokenizer.convert_tokens_to_string([pre["word"] for pre in group]),
                "start": group[0]["start"], "end": group[-1]["end"]}

    def _group_entities(self, entities):
        """Adjacent entities of the same tag merge unless the next one begins a new entity (B-)."""
        groups, current = [], []
        for entity in entities:
            if current:
                bi, tag = _tag(entity["entity"])
                if not (tag == _tag(current[-1]["entity"])[1] and bi != "B"):
                    groups.append(self._group(current))
                    current = []
            current.append(entity)
        if current:
            groups.append(self._group(current))
        return groups

    def _group(self, entities):
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
                "score": np.mean(np.nanmean([e["score"] for e in entities])),
                "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}

    def __repr__(self):
        return f"BertForTokenClassification(labels={self.num_labels}, dtype={self.dtype!r})"


def _tag(name):
    """("B" | "I", tag) of a label; labels without a B-/I- prefix count as I-."""
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name
