#!/usr/bin/env python
"""Coverage-guided fuzzing of the tokenizer with atheris, checked against HuggingFace `tokenizers`.

    input = [mode byte] + rest

    mode % 5   what is fuzzed
    0          text: rest = [settings byte] [max_length byte] text bytes. The text is built from
               pieces (vocabulary words, combining marks, CJK, whitespace and control characters,
               special-token names) chosen by the bytes, or from raw code points; it is tokenized
               alone, as a pair and in a batch with the settings' normalizer options, and must
               give exactly the ids, type ids and offsets of tokenizers' BertWordPieceTokenizer
               on the same vocabulary and options.
    1          vocab.txt: rest is the file. Either Tokenizer() refuses it with ValueError/TypeError,
               or it tokenizes probe texts exactly as BertWordPieceTokenizer on that file does.
    2          tokenizer.json: rest is the file. Either refused with ValueError/TypeError, or the
               probe texts tokenize without error into ids of the vocabulary and offsets within
               the text (its normalizer settings are not ours to compare, see Tokenizer).
    3, 4       tokenizer_config.json, special_tokens_map.json: rest is the file, beside a valid
               vocab.txt, loaded with Tokenizer.from_pretrained; as for 2.

    pip install atheris
    fuzz/run.sh 60            # both targets, 60 s each, from the kept corpus (read only)
    fuzz/fuzz_tokenizer.py NEW_DIR fuzz/corpus/tokenizer -max_total_time=60   # this one, by hand

fuzz/corpus/tokenizer/ holds the inputs kept (fuzz/run.sh SECONDS --keep merges new coverage into
it); tests/test_fuzz_corpus.py replays each through check_input(), without atheris.
`fuzz/fuzz_tokenizer.py --write-seeds DIR` writes the valid starting inputs.

The tokenizer's work happens in a compiled extension that atheris does not see: coverage guides
the Python layer and the input structure; the reference comparison finds the wrong results.
"""
import json
import os
import shutil
import sys

from scratch import make_scratch_folder

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "cat", "sat", "on", "mat", "un", "##able", "##s", "##ing", "play", "##ed", "hello",
         "world", "naive", "cafe", "##e", "strasse", "isn", "'", "##t", "a", "##a", "##b", "ab",
         "##ab", "xx", "##x"]
# Single characters (each also as a continuation): enough of several scripts that most text
# tokenizes into real pieces rather than [UNK].
CHARACTERS = (list("abcdefghijklmnopqrstuvwxyz0123456789") + list("ABCXYZ") +
              list(".,!?;:'\"-_#[]()/@&%$*+=<>|\\~`^{}") + list("éèñüßøåçæœ") +
              list("αβγδεσςΣκλμ") + list("абвгдеёжзий") + list("中文字我们今天北京日本語") +
              list("한글가나") + list("ابتثשלוםनमस्तेสวัสดี"))
VOCAB = list(dict.fromkeys(SPECIALS + WORDS + CHARACTERS + ["##" + c for c in CHARACTERS]))

# Pieces a text byte selects: vocabulary words, characters that stress the normalizer
# (combining marks of several classes, decomposing letters, case oddities), CJK, every kind of
# whitespace and control character, and the special tokens written out.
PIECES = (WORDS + ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[cls]", "CLS", " ", " ", "  "] +
          list("\u0300\u0301\u0316\u0327\u0345\u0362\u05b0\u0651\u093c\u094d\u0e31\u0f71\u0f73"
               "\u302a\u3099\U0001d165éÉñÑİıßǅΣσςᾼÅ\u212b\u2126ﬁ한中文豈\U00020000"
               "\t\n\r\x0b\x0c\x85\u00a0\u1680\u2028\u3000\u200b\u200d\ufeff\x00\x01\x7f\ufffd\u00ad"
               "！，。＃\U0001f44d\U0001f3fd\u2764\ufe0f"))

# As transformers saves them for a BERT tokenizer.
TOKENIZER_CONFIG = {
    "added_tokens_decoder": {str(i): {"content": token, "lstrip": False, "normalized": False,
                                      "rstrip": False, "single_word": False, "special": True}
                             for i, token in enumerate(SPECIALS)},
    "do_lower_case": True, "strip_accents": None, "tokenize_chinese_chars": True,
    "model_max_length": 64, "clean_up_tokenization_spaces": False,
    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
    "mask_token": "[MASK]", "tokenizer_class": "BertTokenizer"}
SPECIAL_TOKENS_MAP = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                      "cls_token": "[CLS]", "mask_token": {"content": "[MASK]", "lstrip": False}}

PROBE_TEXTS = ["the cat sat on the mat.", "Hello, WORLD! naïve café isn't", "un##able [MASK] [CLS]x",
               "中文 字 我们", "", "   ", "a" * 120, "\u0301\u0316x\x00\u200b"]

# Settings byte: bit 0 do_lower_case, bits 1-2 strip_accents (None, False, True), bit 3
# tokenize_chinese_chars, bit 4 a pair, bit 5 truncation to the max_length byte, bit 6 lowercase
# input first (sentence-transformers' do_lower_case).
STRIP_ACCENTS = (None, False, True, None)

EXPECTED_FILE_ERRORS = (ValueError, TypeError)


def text_from_bytes(data):
    """A text chosen by the bytes: below 0xF0 a byte picks a piece, from 0xF0 it and the next two
    bytes give a raw code point (any plane, surrogates included)."""
    parts = []
    i = 0
    while i < len(data):
        byte = data[i]
        if byte < 0xF0 or i + 2 >= len(data):
            parts.append(PIECES[byte % len(PIECES)])
            i += 1
        else:
            code_point = ((byte & 0x0F) << 16 | data[i + 1] << 8 | data[i + 2]) % 0x110000
            parts.append(chr(code_point))
            i += 3
    return "".join(parts)


def has_surrogate(text):
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


class Harness:
    def __init__(self):
        from bertcpu import Tokenizer

        self.scratch = make_scratch_folder("tokenizer")
        self.vocab_path = os.path.join(self.scratch, "vocab.txt")
        with open(self.vocab_path, "w", encoding="utf-8") as f:
            f.write("\n".join(VOCAB) + "\n")
        self.fuzzed_vocab = os.path.join(self.scratch, "fuzzed_vocab.txt")
        self.fuzzed_json = os.path.join(self.scratch, "tokenizer.json")
        # A model folder for from_pretrained: the vocabulary and, in turn, one fuzzed file.
        self.model_folder = os.path.join(self.scratch, "model")
        os.makedirs(self.model_folder)
        with open(os.path.join(self.model_folder, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(VOCAB) + "\n")
        self.Tokenizer = Tokenizer
        self.pairs = {}  # settings -> (ours, reference)

    def tokenizers_for(self, lower, strip, chinese, lower_input):
        key = (lower, strip, chinese, lower_input)
        if key not in self.pairs:
            ours = self.Tokenizer(self.vocab_path, do_lower_case=lower, strip_accents=strip,
                                  tokenize_chinese_chars=chinese, lowercase_input=lower_input)
            self.pairs[key] = (ours, reference_for(self.vocab_path, lower, strip, chinese, lower_input))
        return self.pairs[key]

    def check(self, data):
        if not data:
            return
        mode, rest = data[0] % 5, data[1:]
        if mode == 0:
            self.check_text(rest)
        elif mode == 1:
            self.check_vocab_file(rest)
        elif mode == 2:
            self.check_tokenizer_json(rest)
        else:
            self.check_folder_file("tokenizer_config.json" if mode == 3 else "special_tokens_map.json", rest)

    def check_text(self, data):
        if len(data) < 2:
            return
        settings, max_length, text = data[0], data[1], text_from_bytes(data[2:])
        ours, reference = self.tokenizers_for(bool(settings & 1), STRIP_ACCENTS[settings >> 1 & 3],
                                              bool(settings & 8), bool(settings & 64))
        if has_surrogate(text):
            # Python strings may hold lone surrogates; tokenizers cannot take them at all.
            try:
                ours(text)
            except ValueError as error:
                assert "lone surrogate" in str(error), error
                return
            raise AssertionError(f"a text with a lone surrogate was accepted: {text!r}")
        half = len(text) // 2
        first, second = text[:half], text[half:]
        pair = bool(settings & 16)
        # tokenizers keeps every overflowing window of a truncated text: hundreds of MB for a few
        # thousand characters cut to a short length. Long texts are compared untruncated.
        truncate = bool(settings & 32) and max_length >= (3 if pair else 2) and len(text) <= 1000
        options = dict(truncation=True, max_length=max_length) if truncate else {}
        if truncate:
            reference.enable_truncation(max_length)
        else:
            reference.no_truncation()
        if pair:
            got = ours(first, second, return_offsets_mapping=True, **options)
            expected = reference.encode(first, second)
        else:
            got = ours(text, return_offsets_mapping=True, **options)
            expected = reference.encode(text)
        compare(got, expected, (text, settings, max_length))
        batch = [text, first, second, "", text[::-1]]
        got_batch = ours(batch, return_offsets_mapping=True, **options)
        for index, encoding in enumerate(reference.encode_batch(batch)):
            one = {key: values[index] for key, values in got_batch.items()}
            compare(one, encoding, (batch[index], settings, max_length))

    def check_vocab_file(self, data):
        with open(self.fuzzed_vocab, "wb") as f:
            f.write(data)
        try:
            ours = self.Tokenizer(self.fuzzed_vocab)
        except EXPECTED_FILE_ERRORS:
            return
        reference = reference_for(self.fuzzed_vocab, True, None, True, False)
        for text in PROBE_TEXTS:
            compare(ours(text, return_offsets_mapping=True), reference.encode(text), text)

    def check_tokenizer_json(self, data):
        with open(self.fuzzed_json, "wb") as f:
            f.write(data)
        try:
            ours = self.Tokenizer(self.fuzzed_json)
        except EXPECTED_FILE_ERRORS:
            return
        check_invariants(ours)

    def check_folder_file(self, name, data):
        path = os.path.join(self.model_folder, name)
        with open(path, "wb") as f:
            f.write(data)
        try:
            ours = self.Tokenizer.from_pretrained(self.model_folder)
        except EXPECTED_FILE_ERRORS:
            return
        finally:
            os.remove(path)
        check_invariants(ours)


def check_invariants(tokenizer):
    """What any tokenizer must do with the probe texts, whatever its vocabulary: ids within it,
    offsets within the text, decodable ids, a rectangular padded batch."""
    size = len(tokenizer)
    for text in PROBE_TEXTS:
        got = tokenizer(text, text, return_offsets_mapping=True)
        assert all(0 <= i < size for i in got["input_ids"]), (text, got)
        assert all(0 <= start <= end <= len(text) for start, end in got["offset_mapping"]), (text, got)
        assert isinstance(tokenizer.decode(got["input_ids"]), str)
    batch = tokenizer(PROBE_TEXTS, padding=True, truncation=True, return_tensors="np")
    assert batch["input_ids"].shape[0] == len(PROBE_TEXTS)


def reference_for(vocab_path, lower, strip, chinese, lower_input):
    import tokenizers
    from tokenizers import normalizers

    reference = tokenizers.BertWordPieceTokenizer(vocab_path, lowercase=lower, strip_accents=strip,
                                                  handle_chinese_chars=chinese)
    if lower_input:
        reference.normalizer = normalizers.Sequence([normalizers.Lowercase(), reference.normalizer])
    reference.no_padding()
    reference.no_truncation()
    return reference


def compare(got, expected, context):
    assert got["input_ids"] == expected.ids, ("input_ids", context, got["input_ids"], expected.ids)
    assert got["token_type_ids"] == expected.type_ids, ("token_type_ids", context)
    assert got["attention_mask"] == expected.attention_mask, ("attention_mask", context)
    assert [tuple(o) for o in got["offset_mapping"]] == expected.offsets, (
        "offsets", context, got["offset_mapping"], expected.offsets)


_harness = None


def check_input(data):
    """The fuzz target: raises (an AssertionError or an unexpected exception) on a finding."""
    global _harness
    if _harness is None:
        _harness = Harness()
    _harness.check(data)


def close_harness():
    """Remove the scratch folder (a replay calls this; a fuzzing run ends in exit() instead)."""
    global _harness
    if _harness is not None:
        shutil.rmtree(_harness.scratch, ignore_errors=True)
        _harness = None


def seeds():
    """Valid starting inputs: (name, bytes)."""
    text = "The cat sat on the mat. Hello, world! naïve café 中文字 isn't unable".encode()
    piece_text = bytes(range(0, 0xF0, 3))
    vocab = ("\n".join(VOCAB) + "\n").encode()
    tokenizer_json = json.dumps({"model": {"type": "WordPiece", "unk_token": "[UNK]",
                                           "continuing_subword_prefix": "##",
                                           "max_input_chars_per_word": 100,
                                           "vocab": {t: i for i, t in enumerate(VOCAB)}},
                                 "added_tokens": [{"id": 0, "content": "[PAD]", "special": True}]}).encode()
    return [("seed-text-plain", b"\x00\x01\x10" + text), ("seed-text-pair", b"\x00\x3f\x0c" + piece_text),
            ("seed-text-cased", b"\x00\x0a\x00" + piece_text[::-1]), ("seed-vocab", b"\x01" + vocab),
            ("seed-tokenizer-json", b"\x02" + tokenizer_json),
            ("seed-tokenizer-config", b"\x03" + json.dumps(TOKENIZER_CONFIG).encode()),
            ("seed-special-tokens-map", b"\x04" + json.dumps(SPECIAL_TOKENS_MAP).encode())]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        os.makedirs(sys.argv[2], exist_ok=True)
        for name, content in seeds():
            with open(os.path.join(sys.argv[2], name), "wb") as f:
                f.write(content)
        return
    import atheris

    with atheris.instrument_imports(include=["bertcpu"]):
        import bertcpu  # noqa: F401  (instrumented for coverage before the harness imports it)
    atheris.Setup(sys.argv, check_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
