"""What a model folder's tokenizer files say: vocab.txt, tokenizer.json, tokenizer_config.json,
special_tokens_map.json and sentence_bert_config.json, read the way transformers (and
sentence-transformers) read them. A field of the wrong kind is a ValueError naming the file and the
field; bertcpu.tokenizer builds the tokenizer from the result.
"""
import os

from ._files import describe, is_int, read_json, read_text

# transformers' stand-in for "no length limit" (a tokenizer without model_max_length gets this).
VERY_LARGE_INTEGER = int(1e30)

SPECIAL_TOKEN_NAMES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def bool_field(data, key, path):
    """data[key] of the JSON file at path: True, False or None (absent or null)."""
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{path}: field {key!r} must be true or false, got {describe(value)}")
    return value


def token_content(value, path, key):
    """A special token from a config file: a string or an AddedToken-like dict (None: not set)."""
    if isinstance(value, dict):
        value = value.get("content")
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{path}: field {key!r} must be a non-empty string or an object with one as "
                         f"'content', got {describe(value)}")
    return value


def positive_int_field(data, key, path):
    """data[key] of the JSON file at path, which must be a positive integer."""
    value = data[key]
    if not is_int(value) or value < 1:
        raise ValueError(f"{path}: field {key!r} must be a positive integer, got {describe(value)}")
    return value


def added_tokens_decoder(config, path):
    """The added tokens of tokenizer_config.json's added_tokens_decoder ({id: token}), as a list."""
    decoder = config.get("added_tokens_decoder")
    if decoder is None:
        return []
    if not isinstance(decoder, dict):
        raise ValueError(f"{path}: field 'added_tokens_decoder' must be an object mapping ids to added "
                         f"tokens, got {describe(decoder)}")
    entries = []
    for key, entry in decoder.items():
        source = f"{path}: field 'added_tokens_decoder', key {key!r}"
        try:
            token_id = int(key)  # as transformers reads the key
        except ValueError:
            raise ValueError(f"{source}: not a token id") from None
        check_added_token(entry, source)
        entries.append(dict(entry, id=token_id))
    return entries


# The fields of an added token (tokenizers' AddedToken) that are true or false.
_ADDED_TOKEN_FLAGS = ("special", "normalized", "lstrip", "rstrip", "single_word")


def check_added_token(entry, source):
    """An added token as tokenizer.json and tokenizer_config.json hold it: ValueError naming source
    (where it comes from) and the field that is wrong."""
    if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
        raise ValueError(f"{source}: an added token must be an object with a 'content' string, "
                         f"got {describe(entry)}")
    if entry.get("id") is not None and not is_int(entry["id"]):
        raise ValueError(f"{source}: field 'id' of added token {entry['content']!r} must be an integer, "
                         f"got {describe(entry['id'])}")
    for flag in _ADDED_TOKEN_FLAGS:
        if flag in entry and not isinstance(entry[flag], bool):
            raise ValueError(f"{source}: field {flag!r} of added token {entry['content']!r} must be true or "
                             f"false, got {describe(entry[flag])}")


def check_added_tokens(entries, source):
    if not isinstance(entries, list):
        raise ValueError(f"{source} must be a list of added tokens, got {describe(entries)}")
    for entry in entries:
        check_added_token(entry, source)


# What tokenizers strips from the end of a vocab.txt line: Rust's char::is_whitespace, the Unicode
# White_Space characters. str.rstrip() would also strip U+001C..U+001F, which Python counts as space.
_VOCAB_LINE_END_SPACE = ("\t\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                         "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def read_vocab_txt(path):
    r"""Tokens by id from a vocab.txt: one token per line, the line number is the id.

    Read as tokenizers' WordPiece.read_file reads it (transformers' BertTokenizer loads vocab.txt
    through it): lines end at "\n" only, a lone "\r" belongs to its line, and white space at the end
    of a line is not part of the token. A token on two lines is refused: tokenizers would give it the
    later line's id and leave the earlier id without any token.
    """
    lines = read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not add an empty token
    tokens = [line.rstrip(_VOCAB_LINE_END_SPACE) for line in lines]
    first_line = {}
    for i, token in enumerate(tokens):
        if token in first_line:
            first = first_line[token]
            stripped = "" if lines[i] == lines[first] else " once white space at the end of a line is dropped"
            raise ValueError(f"{path}: token {token!r} on line {i + 1} duplicates line {first + 1}{stripped}; "
                             "every line must hold a different token")
        first_line[token] = i
    return tokens


def vocab_from_mapping(vocab, source):
    """Tokens by id from a {token: id} mapping whose ids must be exactly 0..n-1."""
    tokens = [None] * len(vocab)
    for token, token_id in vocab.items():
        if not isinstance(token, str) or not is_int(token_id):
            raise TypeError(f"{source}: vocabulary entries must map str to int, got {token!r}: {token_id!r}")
        if not 0 <= token_id < len(vocab):
            raise ValueError(f"{source}: token {token!r} has id {token_id}, outside 0..{len(vocab) - 1}; "
                             "ids must be numbered 0..n-1 without gaps")
        if tokens[token_id] is not None:
            raise ValueError(f"{source}: tokens {tokens[token_id]!r} and {token!r} share id {token_id}")
        tokens[token_id] = token
    return tokens


def read_tokenizer_json(path):
    """(tokens by id, added tokens, continuation prefix, max chars per word) of a WordPiece tokenizer.json."""
    data = read_json(path)
    model = data.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"{path}: field 'model' must be an object, got {describe(model)}")
    if model.get("type") != "WordPiece":
        raise ValueError(f"{path}: bertcpu reads WordPiece tokenizers, this one's model is "
                         f"{describe(model.get('type'))}")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise ValueError(f"{path}: the WordPiece model has no vocab mapping")
    tokens = vocab_from_mapping(vocab, path)
    prefix = model.get("continuing_subword_prefix", "##")
    if not isinstance(prefix, str):
        raise ValueError(f"{path}: field 'model.continuing_subword_prefix' must be a string, "
                         f"got {describe(prefix)}")
    max_chars = model.get("max_input_chars_per_word", 100)
    if not is_int(max_chars) or max_chars < 0:
        raise ValueError(f"{path}: field 'model.max_input_chars_per_word' must be a non-negative integer, "
                         f"got {describe(max_chars)}")
    added = data.get("added_tokens")
    added = [] if added is None else added
    check_added_tokens(added, f"{path}: field 'added_tokens'")
    return tokens, added, prefix, max_chars


def pretrained_kwargs(path):
    """Tokenizer keyword arguments from what a model folder's files say, as transformers (and
    sentence-transformers) read them: Tokenizer.from_pretrained's documented behaviour."""
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"tokenizer folder not found: {folder}")

    def optional_json(name):
        """(the object in folder/name or None if there is no such file, the file's path)"""
        file = os.path.join(folder, name)
        return (read_json(file) if os.path.isfile(file) else None), file

    config, config_file = optional_json("tokenizer_config.json")
    config = config or {}
    special_map, special_map_file = optional_json("special_tokens_map.json")
    special_map = special_map or {}
    kwargs = {}
    for key in ("do_lower_case", "tokenize_chinese_chars", "clean_up_tokenization_spaces"):
        value = bool_field(config, key, config_file)
        if value is not None:
            kwargs[key] = value
    if "strip_accents" in config:
        kwargs["strip_accents"] = bool_field(config, "strip_accents", config_file)
    for name in SPECIAL_TOKEN_NAMES:
        if name in special_map:
            value = token_content(special_map[name], special_map_file, name)
        else:
            value = token_content(config.get(name), config_file, name)
        if value is not None:
            kwargs[name] = value
    if is_int(config.get("model_max_length")):
        kwargs["model_max_length"] = positive_int_field(config, "model_max_length", config_file)

    tokenizer_json = os.path.join(folder, "tokenizer.json")
    vocab_txt = os.path.join(folder, "vocab.txt")
    if os.path.isfile(tokenizer_json):
        kwargs["vocab_file"] = tokenizer_json
    elif os.path.isfile(vocab_txt):
        kwargs["vocab_file"] = vocab_txt
        kwargs["added_tokens"] = added_tokens_decoder(config, config_file)
    else:
        raise FileNotFoundError(f"{folder} has neither tokenizer.json nor vocab.txt")

    sentence_config, sentence_config_file = optional_json("sentence_bert_config.json")
    if sentence_config is not None:
        kwargs["lowercase_input"] = bool(bool_field(sentence_config, "do_lower_case", sentence_config_file))
        if sentence_config.get("max_seq_length") is not None:
            kwargs["model_max_length"] = positive_int_field(sentence_config, "max_seq_length",
                                                            sentence_config_file)
        else:
            model_config = optional_json("config.json")[0] or {}
            positions = model_config.get("max_position_embeddings")
            if is_int(positions) and positions > 0:
                kwargs["model_max_length"] = min(kwargs.get("model_max_length", VERY_LARGE_INTEGER), positions)
    return kwargs
