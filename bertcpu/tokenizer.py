"""bertcpu.Tokenizer: BERT WordPiece tokenization with exactly HuggingFace's ids, offsets and rules.

The API mirrors `transformers` (BertTokenizer in transformers 5, BertTokenizerFast before), so code
written against it switches over unchanged: `tok(texts, padding=True, truncation=True,
return_tensors="np")`, `tok.decode(ids)`, special-token attributes, `from_pretrained(folder)`.
The work is done by bertcpu._wordpiece (Cython); bertcpu._tokenizer_files reads a folder's
configuration files; this module checks arguments and resolves padding/truncation the way
transformers does.
"""
import os

from . import _wordpiece, runtime
from ._files import is_int
from ._tokenizer_files import (SPECIAL_TOKEN_NAMES, VERY_LARGE_INTEGER, check_added_tokens,
                               pretrained_kwargs, read_tokenizer_json, read_vocab_txt,
                               vocab_from_mapping)

# Above this, transformers treats model_max_length as unset and neither pads nor truncates to it.
LARGE_INTEGER = int(1e20)

PADDING_LONGEST, PADDING_MAX_LENGTH = 1, 2
_PADDING = {False: 0, "do_not_pad": 0, True: PADDING_LONGEST, "longest": PADDING_LONGEST,
            "max_length": PADDING_MAX_LENGTH}
# Numbering shared with _wordpiece.pyx.
TRUNCATE_NONE, TRUNCATE_LONGEST_FIRST, TRUNCATE_ONLY_FIRST, TRUNCATE_ONLY_SECOND = 0, 1, 2, 3
_TRUNCATION = {None: TRUNCATE_NONE, False: TRUNCATE_NONE, "do_not_truncate": TRUNCATE_NONE,
               True: TRUNCATE_LONGEST_FIRST, "longest_first": TRUNCATE_LONGEST_FIRST,
               "only_first": TRUNCATE_ONLY_FIRST, "only_second": TRUNCATE_ONLY_SECOND}


class BatchEncoding(dict):
    """What a tokenizer call returns: input_ids, token_type_ids, attention_mask (and offset_mapping).

    A dict whose keys can also be read as attributes (`enc.input_ids`), as in transformers.
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no {name!r}; it holds {sorted(self)}") from None


def _check_flag(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


class Tokenizer:
    """BERT WordPiece tokenizer, identical in output to HuggingFace's fast BERT tokenizer.

    vocab_file: a vocab.txt (one token per line), a tokenizer.json with a WordPiece model (its
    vocabulary, added tokens, continuation prefix and word-length limit are used), or a
    {token: id} dict. do_lower_case, strip_accents (None: follow do_lower_case, as BERT does) and
    tokenize_chinese_chars configure the normalizer as in transformers' BertTokenizer.
    lowercase_input lowercases the text before the normalizer (sentence-transformers'
    do_lower_case). added_tokens: extra tokens matched literally in the text, as dicts with
    tokenizer.json's fields (content, id, special, normalized, lstrip, rstrip).
    """

    def __init__(self, vocab_file, do_lower_case=True, strip_accents=None, tokenize_chinese_chars=True,
                 unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                 model_max_length=VERY_LARGE_INTEGER, lowercase_input=False, clean_up_tokenization_spaces=False,
                 added_tokens=None):
        _check_flag("do_lower_case", do_lower_case)
        if strip_accents is not None:
            _check_flag("strip_accents", strip_accents)
        _check_flag("tokenize_chinese_chars", tokenize_chinese_chars)
        _check_flag("lowercase_input", lowercase_input)
        _check_flag("clean_up_tokenization_spaces", clean_up_tokenization_spaces)
        if not is_int(model_max_length) or model_max_length < 1:
            raise ValueError(f"model_max_length must be a positive integer, got {model_max_length!r}")

        prefix, max_chars, file_added = "##", 100, []
        if isinstance(vocab_file, dict):
            tokens = vocab_from_mapping(vocab_file, "vocab")
        elif isinstance(vocab_file, (str, os.PathLike)):
            path = os.fspath(vocab_file)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"vocabulary file not found: {path}")
            if path.endswith(".json"):
                tokens, file_added, prefix, max_chars = read_tokenizer_json(path)
            else:
                tokens = read_vocab_txt(path)
        else:
            raise TypeError(f"vocab_file must be a path (vocab.txt or tokenizer.json) or a dict, "
                            f"got {type(vocab_file).__name__}")
        if not tokens:
            raise ValueError("the vocabulary is empty")
        added_tokens = list(added_tokens or [])
        check_added_tokens(added_tokens, "added_tokens")
        self._build(tokens, file_added + added_tokens, prefix, max_chars,
                    do_lower_case=do_lower_case, strip_accents=strip_accents,
                    tokenize_chinese_chars=tokenize_chinese_chars, unk_token=unk_token, sep_token=sep_token,
                    pad_token=pad_token, cls_token=cls_token, mask_token=mask_token,
                    model_max_length=model_max_length, lowercase_input=lowercase_input,
                    clean_up_tokenization_spaces=clean_up_tokenization_spaces)

    def _build(self, tokens, entries, prefix, max_chars, *, do_lower_case, strip_accents, tokenize_chinese_chars,
               unk_token, sep_token, pad_token, cls_token, mask_token, model_max_length, lowercase_input,
               clean_up_tokenization_spaces):
        """Sets the tokenizer up from a read vocabulary (tokens by id) and its added-token entries."""
        self._vocab_source = (tokens, entries, prefix, max_chars)
        specials = {"unk_token": unk_token, "sep_token": sep_token, "pad_token": pad_token,
                    "cls_token": cls_token, "mask_token": mask_token}
        for name, value in specials.items():
            if value is None and name == "mask_token":
                continue
            if not isinstance(value, str) or not value:
                raise TypeError(f"{name} must be a non-empty string, got {value!r}")

        self._vocab_size = len(tokens)
        self._id_to_token = list(tokens)
        self._token_to_id = {token: i for i, token in enumerate(tokens)}
        declared = {entry["content"] for entry in entries}
        missing = [f"{name}={value!r}" for name, value in specials.items()
                   if value is not None and value not in self._token_to_id and value not in declared]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {', '.join(missing)}; pass the special "
                             "tokens this vocabulary uses (e.g. unk_token='<unk>')")
        added = self._register_added_tokens(entries, specials)
        for name, value in specials.items():
            setattr(self, name, value)
            setattr(self, name + "_id", None if value is None else self._token_to_id[value])

        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.lowercase_input = lowercase_input
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.model_max_length = model_max_length
        self.continuing_subword_prefix = prefix
        self.padding_side = "right"
        self.truncation_side = "right"
        self.pad_token_type_id = 0

        cls_id, sep_id = self.cls_token_id, self.sep_token_id
        self._encoder = _wordpiece._Encoder(
            self._id_to_token[:self._vocab_size], prefix, self.unk_token_id, max_chars,
            True, tokenize_chinese_chars, do_lower_case if strip_accents is None else strip_accents,
            do_lower_case, lowercase_input, added,
            [("special", cls_id, 0), ("A", 0), ("special", sep_id, 0)],
            [("special", cls_id, 0), ("A", 0), ("special", sep_id, 0), ("B", 1), ("special", sep_id, 1)],
            self.pad_token_id, self.pad_token_type_id, len(self._id_to_token), BatchEncoding)
        # tokenizers names a normalized added token by its normalized form (id_to_token, decode,
        # tokenize), while token_to_id and get_vocab keep the original content.
        for content, token_id, normalized, _, _ in added:
            if normalized:
                self._id_to_token[token_id] = self._encoder.normalize(content)[0]
        self._stripping_tokens = {token_id: normalized for _, token_id, normalized, lstrip, rstrip in added
                                  if lstrip or rstrip}

    def __reduce__(self):
        # Picklable (multiprocessing, DataLoader workers): rebuilt from the vocabulary and settings.
        tokens, entries, prefix, max_chars = self._vocab_source
        settings = {name: getattr(self, name) for name in (
            "do_lower_case", "strip_accents", "tokenize_chinese_chars", "model_max_length", "lowercase_input",
            "clean_up_tokenization_spaces") + SPECIAL_TOKEN_NAMES}
        return _restore_tokenizer, (type(self), tokens, entries, prefix, max_chars, settings)

    def _register_added_tokens(self, entries, specials):
        """Records added tokens (new ids extend the vocabulary); returns them as _Encoder wants them."""
        by_content = {}
        for entry in entries:
            if entry.get("single_word"):
                raise ValueError(f"added token {entry['content']!r} has single_word=True, which bertcpu "
                                 "does not support")
            by_content[entry["content"]] = entry
        # Special tokens are always matched literally in the text, as transformers adds them.
        for value in specials.values():
            if value is not None and value not in by_content:
                by_content[value] = {"content": value, "special": True, "normalized": False}
        self._special_ids = set()
        added = []
        for content, entry in by_content.items():
            token_id = entry.get("id")
            known = self._token_to_id.get(content)
            if token_id is None:
                token_id = known if known is not None else len(self._id_to_token)
            if not is_int(token_id) or (known is not None and known != token_id):
                raise ValueError(f"added token {content!r} has id {token_id!r} but the vocabulary gives it "
                                 f"{known!r}")
            if known is None:
                if token_id != len(self._id_to_token):
                    raise ValueError(f"added token {content!r} has id {token_id}; new tokens must continue "
                                     f"the vocabulary at id {len(self._id_to_token)}")
                self._id_to_token.append(content)
                self._token_to_id[content] = token_id
            if entry.get("special", False) or content in specials.values():
                self._special_ids.add(token_id)
            added.append((content, token_id, bool(entry.get("normalized", not entry.get("special", False))),
                          bool(entry.get("lstrip", False)), bool(entry.get("rstrip", False))))
        self._added_contents = [a[0] for a in added]
        return added

    @classmethod
    def from_pretrained(cls, path, **overrides):
        """Loads the tokenizer of a model folder as transformers (and sentence-transformers) would.

        Reads tokenizer.json or vocab.txt, tokenizer_config.json and special_tokens_map.json
        (do_lower_case, strip_accents, tokenize_chinese_chars, model_max_length, special tokens,
        added tokens). In a sentence-transformers folder, sentence_bert_config.json's max_seq_length
        becomes model_max_length and its do_lower_case lowercases input first, as
        sentence-transformers does; without max_seq_length, model_max_length is capped at the model's
        max_position_embeddings (config.json). Keyword arguments override what the files say.
        """
        kwargs = pretrained_kwargs(path)
        kwargs.update(overrides)
        return cls(**kwargs)

    # ------------------------------------------------------------------ encoding

    def __call__(self, text, text_pair=None, *, add_special_tokens=True, padding=False, truncation=None,
                 max_length=None, pad_to_multiple_of=None, return_tensors=None, return_token_type_ids=None,
                 return_attention_mask=None, return_offsets_mapping=False):
        """Tokenizes a text, a pair, or a batch (list) of texts or pairs, as transformers does.

        padding: False / "do_not_pad", True / "longest" (to the longest in the batch), "max_length".
        truncation: None / False / "do_not_truncate", True / "longest_first", "only_first",
        "only_second". max_length defaults to model_max_length when padding to "max_length" or
        truncating; max_length alone (padding=False, truncation=None) turns on "longest_first", as
        in transformers. Without truncation, over-long input is returned whole.
        return_tensors=None gives lists, "np" int64 arrays of shape (batch, length) (batch = 1 for
        a single text).
        """
        if (type(text) is str and text_pair is None and add_special_tokens is True and padding is False
                and truncation is None and max_length is None and return_tensors is None
                and not return_offsets_mapping and pad_to_multiple_of is None and return_token_type_ids is None
                and return_attention_mask is None):
            return self._encoder.encode_one(text)  # the plain one-text call, without the general machinery
        if isinstance(text, str):
            batched = False
            texts = [text]
            if text_pair is None:
                pairs = None
            elif isinstance(text_pair, str):
                pairs = [text_pair]
            else:
                raise TypeError(f"text is a str, so text_pair must be a str too, got {type(text_pair).__name__}")
        elif isinstance(text, (list, tuple)):
            batched = True
            texts, pairs = self._batch_inputs(text, text_pair)
        else:
            raise TypeError(f"text must be a str or a list of str (or of (text, pair) tuples), "
                            f"got {type(text).__name__}")

        # Only these types: 1 or 0 would otherwise pass for True or False.
        if not isinstance(padding, (bool, str)) or padding not in _PADDING:
            raise ValueError(f"padding must be one of False, True, 'longest', 'max_length', 'do_not_pad'; "
                             f"got {padding!r}")
        if not (truncation is None or isinstance(truncation, (bool, str))) or truncation not in _TRUNCATION:
            raise ValueError(f"truncation must be one of None, False, True, 'longest_first', 'only_first', "
                             f"'only_second', 'do_not_truncate'; got {truncation!r}")
        padding_mode = _PADDING[padding]
        truncation_mode = _TRUNCATION[truncation]
        if max_length is not None:
            if not is_int(max_length) or max_length < 0:
                raise ValueError(f"max_length must be a non-negative integer or None, got {max_length!r}")
            if padding is False and truncation is None:
                truncation_mode = TRUNCATE_LONGEST_FIRST  # transformers' legacy rule
        else:
            if padding_mode == PADDING_MAX_LENGTH:
                if self.model_max_length > LARGE_INTEGER:
                    padding_mode = 0
                else:
                    max_length = self.model_max_length
            if truncation_mode != TRUNCATE_NONE:
                if self.model_max_length > LARGE_INTEGER:
                    truncation_mode = TRUNCATE_NONE
                else:
                    max_length = self.model_max_length
        if pad_to_multiple_of is not None:
            if not is_int(pad_to_multiple_of) or pad_to_multiple_of < 1:
                raise ValueError(f"pad_to_multiple_of must be a positive integer or None, got {pad_to_multiple_of!r}")
            if truncation_mode and padding_mode and max_length is not None and max_length % pad_to_multiple_of:
                raise ValueError(f"truncation and padding are both on, but max_length={max_length} is not a "
                                 f"multiple of pad_to_multiple_of={pad_to_multiple_of}")
        if return_tensors is not None and return_tensors != "np":
            raise ValueError(f"return_tensors must be None (lists) or 'np' (numpy arrays), got {return_tensors!r}")
        _check_flag("add_special_tokens", add_special_tokens)
        _check_flag("return_offsets_mapping", return_offsets_mapping)
        for name, value in (("return_token_type_ids", return_token_type_ids),
                            ("return_attention_mask", return_attention_mask)):
            if value is not None:
                _check_flag(name, value)

        result = self._encoder.encode(
            texts, pairs, batched, truncation_mode, max_length if max_length is not None else 0, padding_mode,
            max_length if padding_mode == PADDING_MAX_LENGTH else 0, pad_to_multiple_of or 0,
            add_special_tokens, return_tensors == "np", return_offsets_mapping,
            runtime.get_num_threads() if batched and len(texts) > 1 else 1)
        if return_token_type_ids is False:
            del result["token_type_ids"]
        if return_attention_mask is False:
            del result["attention_mask"]
        return result

    @staticmethod
    def _batch_inputs(text, text_pair):
        """(texts, pairs or None) of a batch given as a list of texts (+ list of pairs) or of 2-tuples."""
        if text_pair is None and text and all(isinstance(item, (list, tuple)) for item in text):
            for i, item in enumerate(text):
                if len(item) != 2 or not all(isinstance(part, str) for part in item):
                    raise TypeError(f"batch item {i} must be a (text, text_pair) pair of str, got {item!r}")
            return [item[0] for item in text], [item[1] for item in text]
        # Each item's type is checked where it is read (_wordpiece), saving a pass over the batch.
        texts = text if isinstance(text, list) else list(text)
        if text_pair is None:
            return texts, None
        if not isinstance(text_pair, (list, tuple)):
            raise TypeError(f"text is a list, so text_pair must be a list too, got {type(text_pair).__name__}")
        if len(text_pair) != len(texts):
            raise ValueError(f"text has {len(texts)} items but text_pair has {len(text_pair)}")
        return texts, text_pair if isinstance(text_pair, list) else list(text_pair)

    def encode(self, text, text_pair=None, *, add_special_tokens=True, padding=False, truncation=None,
               max_length=None, return_tensors=None):
        """The input_ids of one text (or pair), as transformers' encode."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes one text (str), got {type(text).__name__}; call the tokenizer for batches")
        return self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                    max_length=max_length, return_tensors=return_tensors)["input_ids"]

    def tokenize(self, text, pair=None, add_special_tokens=False):
        """The token strings of a text (and pair), without special tokens unless asked."""
        if not isinstance(text, str) or not (pair is None or isinstance(pair, str)):
            raise TypeError("tokenize takes a str (and optionally a str pair)")
        if pair is not None or add_special_tokens:
            return [self._id_to_token[i] for i in self(text, pair, add_special_tokens=add_special_tokens)["input_ids"]]
        ids, offsets = self._encoder.tokens_with_offsets(text)
        tokens = [self._id_to_token[i] for i in ids]
        if self._stripping_tokens:
            # A token that took in the whitespace around it is named by all it covers, as in tokenizers.
            for k, (token_id, (start, end)) in enumerate(zip(ids, offsets)):
                normalized = self._stripping_tokens.get(token_id)
                if normalized is not None:
                    tokens[k] = self.normalize(text[start:end]) if normalized else text[start:end]
        return tokens

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self):
        """Size of the base vocabulary (without added tokens), as in transformers."""
        return self._vocab_size

    def __len__(self):
        """Vocabulary size including added tokens."""
        return len(self._id_to_token)

    def get_vocab(self):
        return dict(self._token_to_id)

    @property
    def all_special_tokens(self):
        return [self._id_to_token[i] for i in sorted(self._special_ids)]

    @property
    def all_special_ids(self):
        return sorted(self._special_ids)

    def convert_tokens_to_ids(self, tokens):
        """Id of a token (unk_token_id when unknown), or a list of ids for a list of tokens."""
        if isinstance(tokens, str):
            return self._token_to_id.get(tokens, self.unk_token_id)
        if not isinstance(tokens, (list, tuple)):
            raise TypeError(f"tokens must be a str or a list of str, got {type(tokens).__name__}")
        for i, token in enumerate(tokens):
            if not isinstance(token, str):
                raise TypeError(f"token {i} must be a str, got {type(token).__name__}")
        get, unk = self._token_to_id.get, self.unk_token_id
        return [get(token, unk) for token in tokens]

    def _check_ids(self, ids):
        """ids as a list of Python ints, each a valid id."""
        if hasattr(ids, "tolist"):  # numpy arrays and scalars
            ids = ids.tolist()
        if is_int(ids):
            ids = [ids]
        if not isinstance(ids, (list, tuple)):
            raise TypeError(f"token ids must be an int or a sequence of ints, got {type(ids).__name__}")
        n = len(self._id_to_token)
        for i in ids:
            if not is_int(i):
                raise TypeError(f"token ids must be ints, got {i!r}")
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is outside the vocabulary (0..{n - 1})")
        return ids

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """Token of an id, or the list of tokens of a list of ids."""
        single = is_int(ids) or (hasattr(ids, "ndim") and ids.ndim == 0)
        ids = self._check_ids(ids)
        tokens = [self._id_to_token[i] for i in ids if not (skip_special_tokens and i in self._special_ids)]
        return tokens[0] if single else tokens

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        """Text of token ids, joined as HF's WordPiece decoder does ("##" pieces glued, spaces between
        words, and its cleanup of spaces before punctuation and contractions)."""
        ids = self._check_ids(token_ids)
        text = self.convert_tokens_to_string(
            [self._id_to_token[i] for i in ids if not (skip_special_tokens and i in self._special_ids)])
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces:
            text = _transformers_cleanup(text)
        return text

    def convert_tokens_to_string(self, tokens):
        """Tokens joined as HF's WordPiece decoder joins them ("##" pieces glued, spaces between
        words, its cleanup of spaces before punctuation and contractions)."""
        prefix = self.continuing_subword_prefix
        pieces = []
        for token in tokens:
            if pieces:
                token = token[len(prefix):] if prefix and token.startswith(prefix) else " " + token
            pieces.append(_cleanup(token))
        return "".join(pieces)

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(ids, skip_special_tokens, clean_up_tokenization_spaces) for ids in sequences]

    # ------------------------------------------------------------------ inspection

    def normalize(self, text):
        """text after the normalizer (what WordPiece sees), like backend_tokenizer.normalizer.normalize_str."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._encoder.normalize(text)[0]

    def __repr__(self):
        return (f"Tokenizer(vocab_size={self._vocab_size}, do_lower_case={self.do_lower_case}, "
                f"strip_accents={self.strip_accents}, tokenize_chinese_chars={self.tokenize_chinese_chars}, "
                f"model_max_length={self.model_max_length})")


def _restore_tokenizer(cls, tokens, entries, prefix, max_chars, settings):
    tokenizer = cls.__new__(cls)
    tokenizer._build(tokens, entries, prefix, max_chars, **settings)
    return tokenizer


def _cleanup(token):
    """tokenizers' WordPiece decoder cleanup, applied to each token (with its leading space)."""
    return (token.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
            .replace(" 've", "'ve").replace(" 're", "'re"))


def _transformers_cleanup(text):
    """transformers' clean_up_tokenization, applied to the decoded text when configured."""
    return (text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
            .replace(" 've", "'ve").replace(" 're", "'re"))
