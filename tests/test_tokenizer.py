"""bertcpu.Tokenizer against HuggingFace: identical ids, token types, masks and offsets, or a failure.

References: `tokenizers` (Tokenizer.from_file on tokenizer.json, BertWordPieceTokenizer on a
vocab.txt for the other normalizer settings), `transformers` (AutoTokenizer: call semantics,
padding, truncation, decode) and `sentence-transformers` (its tokenization of a model folder).
"""
import json
import os
import random
import unicodedata
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertcpu import Tokenizer, _wordpiece, runtime

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import AddedToken, BertWordPieceTokenizer, normalizers  # noqa: E402

HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

CORPUS = [
    # English, punctuation, numbers, contractions
    "The quick brown fox jumps over the lazy dog.",
    "Hello, World! Isn't tokenization fun? I'm sure it's (mostly) deterministic...",
    "e.g. i.e. etc. -- $100.50, 3.14159, 1,000,000 and 42% of C++ & C# users @home #hashtag",
    "https://example.com/path?query=1&x=y email: someone@example.org <html><body>",
    "unbelievably antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    # accents and combining marks, precomposed and decomposed, in and out of canonical order
    "Crème brûlée à la française, naïve façade, Ångström, Łódź, Straße, Ærøskøbing",
    "Tiếng Việt có dấu: Người đẹp, phở bò, cà phê sữa đá",
    "cafe\u0301 vs café, a\u0301\u0316\u0327 and a\u0327\u0316\u0301, \u0301leading mark",
    "Z\u0351\u0314a\u0352\u0315l\u0325\u0316g\u0362o\u0489 text",
    "İstanbul İİ ΣΟΦΙΑ ΟΔΥΣΣΕΥΣ Σίσυφος ǅungla ᾼ Å \u212b \u2126",
    "\u0f73\u0f75 \u0f71\u0f72 \u1e9b\u0323 \u0344\u0316 q\u0307\u0323",
    # CJK and other scripts
    "中文字符测试：我们今天去公园散步。北京是中国的首都！",
    "日本語の文章とカタカナ、ひらがな。漢字も。ﾊﾝｶｸｶﾀｶﾅ",
    "한국어 텍스트 처리 테스트입니다",
    "𠀀𠀁 extension B, 豈更 compatibility ideographs, ⺀ radicals, 〇",
    "مَرْحَبًا بِالْعَالَمِ، كيف حالك؟",
    "שָׁלוֹם עוֹלָם",
    "नमस्ते दुनिया, हिन्दी भाषा में क्षत्रिय",
    "สวัสดีครับ ภาษาไทยไม่มีช่องว่าง",
    "தமிழ் மொழி বাংলা ভাষা ગુજરાતી ਪੰਜਾਬੀ",
    "Здравствуй, мир! Ёлка и йогурт. abcдефghi",
    "Ελληνικά: ἀρχὴ ᾠδή",
    # emoji and ZWJ sequences
    "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 1️⃣ 🇫🇷🇩🇪 😀😃😄",
    "emoji👍inside😀words and ☃ snowman ✨",
    # full-width and compatibility forms
    "ＡＢＣ１２３！ ｈｅｌｌｏ，ｗｏｒｌｄ ＜ｔａｇ＞ ﬁ ﬂ ℌℍℎ Ⅻ x² H₂O ½",
    # control and zero-width characters, unusual whitespace
    "nul\x00here \x01\x02\x7f del \x85 nel \u00ad soft\u00adhyphen",
    "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffjoiner",
    "tab\there\nnewline\r\ncrlf\x0bvt\x0cff end",
    "nbsp\u00a0here ideographic\u3000space em\u2003space line\u2028sep\u2029para \u1680ogham",
    "rtl\u200e\u200f\u202a\u202emarks \ufffd replacement",
    "private \ue000\U000f0000 unassigned \u0378\U000e0041tag \uffff\U0010fffd",
    # very long words
    "a" * 100,
    "a" * 101,
    "supercalifragilistic" * 10,
    "ab" * 60 + "! short words after",
    "中" * 150,
    # empty and whitespace-only
    "",
    " ",
    "\t\n  \r",
    "\u3000\u2003\u00a0",
    "\x00\x01\u200b",
    # literal special tokens
    "[CLS]",
    "[CLS] hello [SEP] world [SEP]",
    "the [MASK] is [mask] and [Mask]",
    "[PAD][UNK][CLS][SEP][MASK]",
    "x[SEP]y [[CLS]] [CLS [ CLS ] [ＣＬＳ]",
    "[MASK]ed un[MASK] [UNK]nown",
]

CJK_SENTENCES = [
    "我们今天去公园散步。",
    "北京是中国的首都。",
    "机器学习和自然语言处理很有趣！",
    "他说：“你好，世界。”",
    "这个模型可以在中央处理器上快速运行。",
    "日本語の文章も少し混ぜます。",
    "混合 English 和中文 text 123。",
    "我爱北京天安门，天安门上太阳升。",
]

# Characters that stress the pipeline: marks of many combining classes (reordering), decomposing
# letters, CJK, whitespace of every kind, punctuation, controls, pieces of special tokens.
NASTY_ALPHABET = list(
    "aAeEiIzZ09 .,!?'\"-_#[]()"
    "\u0300\u0301\u0316\u0327\u0334\u0345\u035c\u0362\u0489\u05b0\u0651\u0670\u093c\u094d\u0e31\u0e48"
    "\u0f71\u0f72\u0f73\u0f74\u0f75\u0f80\u0f81\u1dce\u20d2\u302a\u3099\U0001d165\U0001d16d"
    "éÉñÑİıßǅΣσςᾼÅ\u212b\u2126ﬁ한글中文豈\U00020000"
    "\t\n\r\x0b\x0c\x85\u00a0\u1680\u2000\u2028\u3000\u200b\u200d\ufeff\x00\x01\x7f\ufffd\u00ad"
    "！，。「」＃\U0001f44d\U0001f3fd\u2764\ufe0f"
) + ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "CLS", "[cls]"]


# ----------------------------------------------------------------------------- references

def hf_wordpiece(vocab_path, lowercase=True, strip_accents=None, handle_chinese_chars=True, lowercase_input=False):
    ref = BertWordPieceTokenizer(str(vocab_path), lowercase=lowercase, strip_accents=strip_accents,
                                 handle_chinese_chars=handle_chinese_chars)
    if lowercase_input:  # what sentence-transformers does for do_lower_case
        ref.normalizer = normalizers.Sequence([normalizers.Lowercase(), ref.normalizer])
    ref.no_padding()
    ref.no_truncation()
    return ref


def hf_from_file(path):
    ref = tokenizers.Tokenizer.from_file(str(path))
    ref.no_padding()
    ref.no_truncation()
    return ref


def assert_matches_encoding(ours, encoding, text=None):
    """One unbatched bertcpu result (lists) against one tokenizers Encoding."""
    context = f"text={text!r}"
    assert ours["input_ids"] == encoding.ids, context
    assert ours["token_type_ids"] == encoding.type_ids, context
    assert ours["attention_mask"] == encoding.attention_mask, context
    assert ours["offset_mapping"] == encoding.offsets, context


def assert_same_output(ours, theirs):
    """A bertcpu call result against a transformers one: same keys, same values, same types."""
    assert set(ours) == set(theirs)
    for key in theirs:
        expected, got = theirs[key], ours[key]
        if isinstance(expected, np.ndarray):
            assert isinstance(got, np.ndarray) and got.dtype == np.int64, key
            assert got.shape == expected.shape, key
            assert np.array_equal(got, expected), key
        else:
            assert got == expected, key


@pytest.fixture(scope="module")
def uncased(minilm_dir):
    return Tokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def uncased_ref(minilm_dir):
    return hf_from_file(minilm_dir / "tokenizer.json")


@pytest.fixture(scope="module")
def transformers_tokenizer(minilm_dir):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


@pytest.fixture(scope="module")
def uncased_512(minilm_dir):
    """The MiniLM tokenizer as transformers loads it (sentence-transformers caps it at 256)."""
    return Tokenizer.from_pretrained(minilm_dir, model_max_length=512)


# (do_lower_case, strip_accents, tokenize_chinese_chars, lowercase_input): the normalizer settings
# BERT models use, and sentence-transformers' extra lowercasing on a cased model.
CONFIGS = [(True, None, True, False), (False, None, True, False), (True, False, True, False),
           (False, True, True, False), (True, None, False, False), (False, None, True, True)]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: "lower={}-strip={}-cjk={}-lowerinput={}".format(*c))
def configured_pair(request, minilm_dir):
    lower, strip, chinese, lower_input = request.param
    ours = Tokenizer(minilm_dir / "vocab.txt", do_lower_case=lower, strip_accents=strip,
                     tokenize_chinese_chars=chinese, lowercase_input=lower_input)
    ref = hf_wordpiece(minilm_dir / "vocab.txt", lowercase=lower, strip_accents=strip, handle_chinese_chars=chinese,
                       lowercase_input=lower_input)
    return ours, ref


# ----------------------------------------------------------------------------- corpus

def test_corpus_uncased_minilm(uncased, uncased_ref):
    for text in CORPUS:
        assert_matches_encoding(uncased(text, return_offsets_mapping=True), uncased_ref.encode(text), text)
        assert uncased.tokenize(text) == uncased_ref.encode(text, add_special_tokens=False).tokens


def test_corpus_every_normalizer_setting(configured_pair):
    ours, ref = configured_pair
    for text in CORPUS:
        assert_matches_encoding(ours(text, return_offsets_mapping=True), ref.encode(text), text)


def test_corpus_pairs(configured_pair):
    ours, ref = configured_pair
    for text, pair in zip(CORPUS, CORPUS[7:] + CORPUS[:7]):
        assert_matches_encoding(ours(text, pair, return_offsets_mapping=True), ref.encode(text, pair), (text, pair))


def test_batch_equals_reference_and_single_calls(uncased, uncased_ref):
    texts = CORPUS * 8
    # Two threads take a batch of at least 2 x CHARS_PER_THREAD (8192) characters.
    assert sum(map(len, texts)) >= 2 * 8192
    before = list(texts)
    threads = runtime.get_num_threads()
    try:
        for n_threads in (1, 2):
            runtime.set_num_threads(n_threads)
            batch = uncased(texts, return_offsets_mapping=True)
            for i, encoding in enumerate(uncased_ref.encode_batch(texts)):
                assert_matches_encoding({k: v[i] for k, v in batch.items()}, encoding, texts[i])
            arrays = uncased(texts, padding=True, return_tensors="np", return_offsets_mapping=True)
            width = max(len(ids) for ids in batch["input_ids"])
            assert arrays["input_ids"].shape == (len(texts), width)
            assert arrays["offset_mapping"].shape == (len(texts), width, 2)
            for i, ids in enumerate(batch["input_ids"]):
                n = len(ids)
                assert arrays["input_ids"][i, :n].tolist() == ids
                assert arrays["token_type_ids"][i, :n].tolist() == batch["token_type_ids"][i]
                assert arrays["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
                assert (arrays["input_ids"][i, n:] == uncased.pad_token_id).all()
                assert [tuple(o) for o in arrays["offset_mapping"][i, :n].tolist()] == batch["offset_mapping"][i]
                assert (arrays["offset_mapping"][i, n:] == 0).all()
    finally:
        runtime.set_num_threads(threads)
    assert texts == before


def test_every_code_point(uncased, uncased_ref, minilm_dir):
    """The Unicode tables, checked for all of Unicode: normalizer output in each setting, and the
    ids and offsets of every code point between letters (pre-tokenizer classes, WordPiece)."""
    code_points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    chunk = 1 << 16
    for lower, strip, chinese, lower_input in CONFIGS:
        ours = Tokenizer(minilm_dir / "vocab.txt", do_lower_case=lower, strip_accents=strip,
                         tokenize_chinese_chars=chinese, lowercase_input=lower_input)
        ref = hf_wordpiece(minilm_dir / "vocab.txt", lowercase=lower, strip_accents=strip,
                           handle_chinese_chars=chinese, lowercase_input=lower_input).normalizer
        for start in range(0, len(code_points), chunk):
            text = "".join(map(chr, code_points[start:start + chunk]))
            assert ours.normalize(text) == ref.normalize_str(text), (
                f"normalizer differs near U+{code_points[start]:04X} (lower={lower}, strip={strip}); the "
                f"tables mirror {_wordpiece.UNICODE_TABLES_SOURCE}, tokenizers is {tokenizers.__version__}: "
                "rerun tests/generate_unicode_tables.py")
    for start in range(0, len(code_points), chunk):
        text = "".join("a" + chr(c) + "a " for c in code_points[start:start + chunk])
        ours = uncased(text, return_offsets_mapping=True)
        encoding = uncased_ref.encode(text)
        assert ours["input_ids"] == encoding.ids, hex(code_points[start])
        assert ours["offset_mapping"] == encoding.offsets, hex(code_points[start])


def test_numpy_str_subclass(uncased):
    assert uncased(np.str_("Hello there"))["input_ids"] == uncased("Hello there")["input_ids"]


def test_over_long_input_is_not_cut(uncased):
    text = "word " * 1000
    ids = uncased(text)["input_ids"]
    assert len(ids) == 1002 > uncased.model_max_length
    assert len(uncased(text, truncation=True)["input_ids"]) == uncased.model_max_length


# ----------------------------------------------------------------------------- hypothesis

@HYPOTHESIS
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=40))
def test_random_unicode_uncased(uncased, uncased_ref, text):
    assert_matches_encoding(uncased(text, return_offsets_mapping=True), uncased_ref.encode(text), text)


@HYPOTHESIS
@given(st.lists(st.sampled_from(NASTY_ALPHABET), max_size=30).map("".join),
       st.lists(st.sampled_from(NASTY_ALPHABET), max_size=12).map("".join))
def test_random_nasty_text_and_pairs(configured_pair, text, pair):
    ours, ref = configured_pair
    assert_matches_encoding(ours(text, return_offsets_mapping=True), ref.encode(text), text)
    assert_matches_encoding(ours(text, pair, return_offsets_mapping=True), ref.encode(text, pair), (text, pair))


@HYPOTHESIS
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=25),
       st.text(st.characters(exclude_categories=("Cs",)), max_size=25))
def test_random_unicode_cased_pairs(cased_pair, text, pair):
    ours, ref = cased_pair
    assert_matches_encoding(ours(text, pair, return_offsets_mapping=True), ref.encode(text, pair), (text, pair))


@pytest.fixture(scope="module")
def cased_pair(minilm_dir):
    return (Tokenizer(minilm_dir / "vocab.txt", do_lower_case=False),
            hf_wordpiece(minilm_dir / "vocab.txt", lowercase=False))


# ----------------------------------------------------------------------------- truncation and padding

PAIR_TEXTS = ["", "short", "a somewhat longer first sentence here", "word " * 12, "tokenization " * 5]


@pytest.mark.parametrize("strategy", ["longest_first", "only_first", "only_second"])
def test_truncation_strategies_match_tokenizers(uncased, uncased_ref, strategy):
    for max_length in list(range(0, 24)) + [40]:
        uncased_ref.enable_truncation(max_length, strategy=strategy)
        try:
            for first in PAIR_TEXTS:
                for second in PAIR_TEXTS + [None]:
                    try:
                        expected = uncased_ref.encode(first, second)
                    except Exception as e:  # tokenizers raises a bare Exception for truncation errors
                        with pytest.raises(ValueError):
                            uncased(first, second, truncation=strategy, max_length=max_length)
                        assert "runcat" in str(e)
                        continue
                    got = uncased(first, second, truncation=strategy, max_length=max_length,
                                  return_offsets_mapping=True)
                    assert_matches_encoding(got, expected, (first, second, max_length))
        finally:
            uncased_ref.no_truncation()


PADDINGS = [False, True, "longest", "max_length", "do_not_pad"]
TRUNCATIONS = [None, False, True, "longest_first", "only_first", "only_second", "do_not_truncate"]


@pytest.mark.parametrize("return_tensors", [None, "np"])
def test_call_semantics_match_transformers(uncased_512, transformers_tokenizer, return_tensors):
    """padding x truncation x max_length x pad_to_multiple_of, single texts, batches and pairs."""
    inputs = [
        (("Hello world, this is a test.",), {}),
        ((["Hello world", "a much longer sentence with many more words in it than the first", ""],), {}),
        ((["first text of a pair", "another"], ["second text", "and its much longer partner sentence"]), {}),
        (("one text", "its pair"), {}),
        (([("tuple", "pair form"), ("second", "item")],), {}),
    ]
    for args, _ in inputs:
        for padding in PADDINGS:
            for truncation in TRUNCATIONS:
                for max_length in (None, 6, 16):
                    for multiple in (None, 8):
                        kwargs = dict(padding=padding, truncation=truncation, max_length=max_length,
                                      pad_to_multiple_of=multiple, return_tensors=return_tensors,
                                      return_offsets_mapping=True)
                        compare_with_transformers(uncased_512, transformers_tokenizer, args, kwargs)


def compare_with_transformers(ours, theirs, args, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = theirs(*args, **kwargs)
        except Exception:
            with pytest.raises((ValueError, TypeError)):
                ours(*args, **kwargs)
            return
    ids = expected["input_ids"]
    ragged_numpy = kwargs.get("return_tensors") == "np" and (not isinstance(ids, np.ndarray) or ids.dtype == object)
    if ragged_numpy:  # transformers gives an array of arrays; bertcpu asks for padding instead
        with pytest.raises(ValueError, match="padding"):
            ours(*args, **kwargs)
        return
    assert_same_output(ours(*args, **kwargs), dict(expected)), (args, kwargs)


def test_default_call_and_options_match_transformers(uncased_512, transformers_tokenizer):
    for args, kwargs in [
        (("Hello world",), {}),
        ((["a", "b c"],), {}),
        (("Hello world",), dict(add_special_tokens=False)),
        (("Hello", "world"), dict(add_special_tokens=False)),
        ((["x y z", "w"], ["p", "q r"]), dict(add_special_tokens=False, truncation=True, max_length=3)),
        (("Hello world",), dict(return_token_type_ids=False)),
        ((["Hello world", "x"],), dict(return_attention_mask=False, padding=True, return_tensors="np")),
        (("word " * 600,), dict(truncation=True)),
        (("word " * 600,), dict(padding="max_length")),
        ((["x"] * 3,), dict(padding="max_length", max_length=5, return_tensors="np")),
    ]:
        compare_with_transformers(uncased_512, transformers_tokenizer, args, kwargs)


def test_empty_batch(uncased):
    # transformers fails on an empty batch (IndexError); an empty result is more useful.
    assert uncased([]) == {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    arrays = uncased([], padding=True, return_tensors="np")
    assert arrays["input_ids"].shape == (0, 0) and arrays["input_ids"].dtype == np.int64


def test_ragged_numpy_asks_for_padding(uncased):
    with pytest.raises(ValueError, match="padding=True"):
        uncased(["a", "a b c"], return_tensors="np")
    with pytest.raises(ValueError, match="padding"):
        uncased(["a", "a b c d e f g"], padding="max_length", max_length=4, return_tensors="np")
    result = uncased(["a b", "c d"], return_tensors="np")
    assert result["input_ids"].shape == (2, 4) and result.input_ids.dtype == np.int64


def test_single_text_numpy_has_a_batch_axis(uncased):
    result = uncased("hello world", return_tensors="np", return_offsets_mapping=True)
    assert result["input_ids"].shape == (1, 4)
    assert result["offset_mapping"].shape == (1, 4, 2)
    assert result["input_ids"].tolist() == [uncased("hello world")["input_ids"]]


# ----------------------------------------------------------------------------- vocabularies

def chinese_training_corpus():
    rng = random.Random(0)
    chars = "".join(CJK_SENTENCES)
    corpus = list(CJK_SENTENCES) * 20
    for _ in range(500):
        corpus.append("".join(rng.choice(chars) for _ in range(rng.randint(1, 20))) + " mixed words here")
    return corpus


@pytest.fixture(scope="module")
def chinese_vocab(tmp_path_factory):
    """A WordPiece vocabulary with Chinese characters, trained here by tokenizers' trainer."""
    folder = tmp_path_factory.mktemp("chinese_vocab")
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(chinese_training_corpus(), vocab_size=400, min_frequency=1,
                                special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    # Trained from scratch, it has no [CLS]/[SEP] template yet: give it BERT's.
    trainer.post_processor = tokenizers.processors.BertProcessing(
        ("[SEP]", trainer.token_to_id("[SEP]")), ("[CLS]", trainer.token_to_id("[CLS]")))
    trainer.save_model(str(folder))
    trainer.save(str(folder / "tokenizer.json"))
    assert any(unicodedata.name(t[0], "").startswith("CJK UNIFIED") for t in trainer.get_vocab())
    return folder


def test_chinese_vocabulary(chinese_vocab):
    ours = Tokenizer(chinese_vocab / "vocab.txt")
    ref = hf_wordpiece(chinese_vocab / "vocab.txt")
    from_json = Tokenizer(chinese_vocab / "tokenizer.json")
    ref_json = hf_from_file(chinese_vocab / "tokenizer.json")
    texts = CJK_SENTENCES + CORPUS + ["未见过的字：鑫淼犇骉 and 我们", "中" * 120]
    for text in texts:
        assert_matches_encoding(ours(text, return_offsets_mapping=True), ref.encode(text), text)
        assert_matches_encoding(from_json(text, return_offsets_mapping=True), ref_json.encode(text), text)
    cjk_ids = ours("我们今天")["input_ids"]
    assert ours.unk_token_id not in cjk_ids and len(cjk_ids) == 6


@HYPOTHESIS
@given(st.text(st.sampled_from("".join(CJK_SENTENCES) + "鑫淼 ab，。!"), max_size=30))
def test_random_chinese_text(chinese_pair, text):
    ours, ref = chinese_pair
    assert_matches_encoding(ours(text, return_offsets_mapping=True), ref.encode(text), text)


@pytest.fixture(scope="module")
def chinese_pair(chinese_vocab):
    return Tokenizer(chinese_vocab / "vocab.txt"), hf_wordpiece(chinese_vocab / "vocab.txt")


def test_added_tokens_from_tokenizer_json(chinese_vocab, tmp_path):
    """Added tokens of every kind: normalized or not, lstrip/rstrip, special or not, new ids."""
    ref = tokenizers.Tokenizer.from_file(str(chinese_vocab / "tokenizer.json"))
    ref.add_tokens([AddedToken("Hello World", normalized=True), AddedToken("<X>", normalized=False, lstrip=True,
                                                                             rstrip=True),
                    AddedToken("Ünïcode", normalized=True), AddedToken("北京", normalized=False),
                    AddedToken("mixed", normalized=False), AddedToken("Strip Me", normalized=True, lstrip=True,
                                                                      rstrip=True)])
    ref.add_special_tokens([AddedToken("<special>", normalized=False, rstrip=True)])
    path = tmp_path / "tokenizer.json"
    ref.save(str(path))
    ref = hf_from_file(path)
    ours = Tokenizer(path)
    assert len(ours) == ref.get_vocab_size(with_added_tokens=True)
    texts = ["hello world and HELLO WORLD, a<X>b  <X>  c, unicode Unicode ÜNÏCODE 北京北京 mixedmixed",
             "<special>  x <special>", "[CLS]<X>[SEP]", "Hello Worldly", "<X><X> <X>",
             "a \u3000STRIP ME\t\nb strip me", "strip mestrip me"]
    for text in texts:
        assert_matches_encoding(ours(text, return_offsets_mapping=True), ref.encode(text), text)
        assert ours.tokenize(text) == ref.encode(text, add_special_tokens=False).tokens
        ids = ref.encode(text).ids
        assert ours.convert_ids_to_tokens(ids) == [ref.id_to_token(i) for i in ids]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)


def test_from_pretrained_vocab_txt_folder(minilm_dir, tmp_path, transformers_tokenizer):
    """A folder with only vocab.txt and a cased tokenizer_config, read as transformers reads it."""
    transformers = pytest.importorskip("transformers")
    config = json.loads((minilm_dir / "tokenizer_config.json").read_text())
    config.update(do_lower_case=False, model_max_length=64)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "vocab.txt").write_bytes((minilm_dir / "vocab.txt").read_bytes())
    ours = Tokenizer.from_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert ours.model_max_length == theirs.model_max_length == 64
    assert not ours.do_lower_case
    for text in CORPUS[:12]:
        assert_same_output(ours(text, truncation=True), dict(theirs(text, truncation=True)))


def test_sentence_transformers_tokenization(minilm_dir, tmp_path):
    """sentence_bert_config.json: max_seq_length truncates, do_lower_case lowercases first."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = CORPUS[:20] + ["word " * 400, "İSTANBUL [CLS] ÀÉÎ"]
    model = sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")
    ours = Tokenizer.from_pretrained(minilm_dir)
    assert ours.model_max_length == model.max_seq_length == 256
    compare_with_sentence_transformers(ours, model, texts)

    # A cased tokenizer in a folder whose sentence_bert_config.json asks for lowercasing.
    for entry in minilm_dir.iterdir():
        if entry.name not in ("sentence_bert_config.json", "tokenizer_config.json"):
            os.symlink(entry, tmp_path / entry.name)
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12, "do_lower_case": True}))
    config = json.loads((minilm_dir / "tokenizer_config.json").read_text())
    config["do_lower_case"] = False
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    model = sentence_transformers.SentenceTransformer(str(tmp_path), device="cpu")
    ours = Tokenizer.from_pretrained(tmp_path)
    assert ours.model_max_length == 12 and ours.lowercase_input and not ours.do_lower_case
    compare_with_sentence_transformers(ours, model, texts)


def compare_with_sentence_transformers(ours, model, texts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features = model.preprocess(texts)
    got = ours(texts, padding=True, truncation="longest_first", return_tensors="np")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert np.array_equal(got[key], features[key].numpy()), key


# ----------------------------------------------------------------------------- vocabulary API and decode

def test_vocabulary_api_matches_transformers(uncased_512, transformers_tokenizer):
    ours, theirs = uncased_512, transformers_tokenizer
    assert ours.vocab_size == theirs.vocab_size == 30522
    assert len(ours) == len(theirs)
    assert ours.get_vocab() == theirs.get_vocab()
    for name in ("unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, name + "_token") == getattr(theirs, name + "_token")
        assert getattr(ours, name + "_token_id") == getattr(theirs, name + "_token_id")
    assert sorted(ours.all_special_ids) == sorted(theirs.all_special_ids)
    tokens = ["hello", "##ing", "[CLS]", "not-a-token", "中"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("hello") == theirs.convert_tokens_to_ids("hello")
    ids = [101, 7592, 2088, 102, 0, 100, 103, 29379]
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == theirs.convert_ids_to_tokens(
        ids, skip_special_tokens=True)
    assert ours.convert_ids_to_tokens(7592) == "hello"
    for text in CORPUS[:15]:
        assert ours.tokenize(text) == theirs.tokenize(text)
        assert ours.encode(text) == theirs.encode(text)
        assert ours.encode(text, "pair text") == theirs.encode(text, "pair text")


def test_decode_matches_reference(uncased, uncased_ref, transformers_tokenizer):
    rng = random.Random(1)
    sequences = [uncased_ref.encode(text).ids for text in CORPUS]
    sequences += [[rng.randrange(30522) for _ in range(rng.randint(0, 30))] for _ in range(300)]
    sequences += [[1010, 1005, 1055, 2123, 1005, 1056], [2079, 2025], [1012, 1012], [1001, 1001, 2003]]
    for ids in sequences:
        for skip in (False, True):
            expected = uncased_ref.decode(ids, skip_special_tokens=skip)
            assert uncased.decode(ids, skip_special_tokens=skip) == expected, ids
            assert transformers_tokenizer.decode(ids, skip_special_tokens=skip) == expected
    assert uncased.decode(np.array(sequences[0])) == uncased_ref.decode(sequences[0], skip_special_tokens=False)
    assert uncased.batch_decode(sequences[:3]) == [uncased_ref.decode(s, skip_special_tokens=False)
                                                   for s in sequences[:3]]


# ----------------------------------------------------------------------------- bad input

def test_bad_call_arguments(uncased):
    with pytest.raises(TypeError, match="str"):
        uncased(42)
    with pytest.raises(TypeError, match="item 1"):
        uncased(["ok", 3])
    with pytest.raises(TypeError, match="text_pair"):
        uncased("a", ["b"])
    with pytest.raises(ValueError, match="2 items"):
        uncased(["a", "b"], ["c"])
    with pytest.raises(TypeError, match="text_pair item 0"):
        uncased(["a"], [None])
    with pytest.raises(TypeError, match="pair"):
        uncased([("a", "b", "c")])
    with pytest.raises(ValueError, match="padding"):
        uncased("a", padding="left")
    with pytest.raises(ValueError, match="padding"):
        uncased("a", padding=1)
    with pytest.raises(ValueError, match="padding"):
        uncased("a", padding=[True])
    with pytest.raises(ValueError, match="truncation"):
        uncased("a", truncation=0)
    with pytest.raises(TypeError, match="return_attention_mask"):
        uncased("a", return_attention_mask="no")
    with pytest.raises(TypeError, match="text_pair item 1"):
        uncased(["a", "b"], ["c", b"d"])
    with pytest.raises(ValueError, match="truncation"):
        uncased("a", truncation="middle")
    with pytest.raises(ValueError, match="max_length"):
        uncased("a", max_length=-1)
    with pytest.raises(ValueError, match="max_length"):
        uncased("a", max_length=3.5)
    with pytest.raises(ValueError, match="return_tensors"):
        uncased("a", return_tensors="pt")
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        uncased("a", padding=True, pad_to_multiple_of=0)
    with pytest.raises(TypeError, match="add_special_tokens"):
        uncased("a", add_special_tokens="yes")
    with pytest.raises(ValueError, match="surrogate"):
        uncased("bad \ud800 text")
    with pytest.raises(ValueError, match="surrogate"):
        uncased(["fine", "fine", "bad \udfff"])
    with pytest.raises(ValueError, match="second sequence"):
        uncased("a b c d e f", truncation="only_second", max_length=4)
    with pytest.raises(ValueError, match="only_first"):
        uncased("a", "b c d e f g", truncation="only_first", max_length=5)


def test_bad_ids(uncased):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        uncased.decode([101, 40000])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        uncased.convert_ids_to_tokens(-1)
    with pytest.raises(TypeError, match="ints"):
        uncased.decode(["hello"])
    with pytest.raises(TypeError):
        uncased.convert_tokens_to_ids(5)


def test_bad_vocabularies(tmp_path, minilm_dir):
    with pytest.raises(FileNotFoundError, match="not found"):
        Tokenizer(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="not found"):
        Tokenizer.from_pretrained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="neither"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="path"):
        Tokenizer(12)

    no_specials = tmp_path / "no_specials.txt"
    no_specials.write_text("[PAD]\n[UNK]\nhello\n##lo\n")
    with pytest.raises(ValueError, match=r"cls_token='\[CLS\]'.*mask_token"):
        Tokenizer(no_specials)

    duplicated = tmp_path / "duplicated.txt"
    duplicated.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\nhello\n")
    with pytest.raises(ValueError, match="'hello' on line 8 duplicates line 6"):
        Tokenizer(duplicated)

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        Tokenizer(empty)

    with pytest.raises(ValueError, match="share id"):
        Tokenizer({"[PAD]": 0, "[UNK]": 0})
    with pytest.raises(ValueError, match="outside"):
        Tokenizer({"[PAD]": 0, "[UNK]": 5})

    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    bpe.save(str(tmp_path / "bpe.json"))
    with pytest.raises(ValueError, match="WordPiece"):
        Tokenizer(tmp_path / "bpe.json")

    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    with pytest.raises(ValueError, match="JSON"):
        Tokenizer(not_json)

    with pytest.raises(TypeError, match="do_lower_case"):
        Tokenizer(minilm_dir / "vocab.txt", do_lower_case="yes")
    with pytest.raises(ValueError, match="model_max_length"):
        Tokenizer(minilm_dir / "vocab.txt", model_max_length=0)
    with pytest.raises(ValueError, match="single_word"):
        Tokenizer(minilm_dir / "vocab.txt", added_tokens=[{"content": "foo", "single_word": True}])


def test_custom_special_tokens(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("<pad>\n<unk>\n<s>\n</s>\nhello\n##lo\nhel\n")
    ours = Tokenizer(vocab, unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>",
                     mask_token=None)
    assert ours.mask_token is None and ours.mask_token_id is None
    assert ours("hello hello! <s>", return_offsets_mapping=True) == {
        "input_ids": [2, 4, 4, 1, 2, 3], "token_type_ids": [0] * 6, "attention_mask": [1] * 6,
        "offset_mapping": [(0, 0), (0, 5), (6, 11), (11, 12), (13, 16), (0, 0)]}
    assert ours.tokenize("hello hello") == ["hello", "hello"]


def test_batches_work_after_fork(uncased):
    """Batch threads are joined before a call returns, so a forked child (multiprocessing,
    gunicorn --preload) can tokenize too; with an OpenMP pool the child would hang."""
    multiprocessing = pytest.importorskip("multiprocessing")
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    texts = ["some text to tokenize in parallel"] * 4000
    threads = runtime.get_num_threads()
    runtime.set_num_threads(2)
    try:
        expected = uncased(texts, padding=True, return_tensors="np")["input_ids"]
        with multiprocessing.get_context("fork").Pool(1) as pool:
            result = pool.apply_async(_tokenize_in_child, (uncased, texts))
            assert np.array_equal(result.get(timeout=60), expected)
    finally:
        runtime.set_num_threads(threads)


def _tokenize_in_child(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="np")["input_ids"]


def test_pickle_round_trip(chinese_vocab, tmp_path):
    import pickle

    ref = tokenizers.Tokenizer.from_file(str(chinese_vocab / "tokenizer.json"))
    ref.add_tokens([AddedToken("Hello World", normalized=True), AddedToken("<X>", normalized=False, lstrip=True)])
    ref.save(str(tmp_path / "tokenizer.json"))
    original = Tokenizer(tmp_path / "tokenizer.json", do_lower_case=True, model_max_length=77)
    original.model_max_length = 33
    copy = pickle.loads(pickle.dumps(original))
    assert copy.model_max_length == 33 and len(copy) == len(original)
    for text in CJK_SENTENCES + ["hello world <X> x", "HELLO WORLD"]:
        assert copy(text, return_offsets_mapping=True) == original(text, return_offsets_mapping=True)
        assert copy.tokenize(text) == original.tokenize(text)


def run_threads(targets):
    """Runs each callable on its own thread, all at once, and waits for them."""
    import threading

    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_concurrent_python_threads(uncased):
    """One tokenizer used from several Python threads at once: big batches release the GIL, single
    texts take turns on the tokenizer's own buffers; every result must be what a lone call gives."""

    big = [text for text in CORPUS if text] * 60
    expected_big = uncased(big, padding=True, return_tensors="np", return_offsets_mapping=True)
    expected_single = [uncased(text) for text in CORPUS]
    failures = []

    def work():
        for _ in range(5):
            got = uncased(big, padding=True, return_tensors="np", return_offsets_mapping=True)
            if not all(np.array_equal(got[k], expected_big[k]) for k in expected_big):
                failures.append("batch")
            if [uncased(text) for text in CORPUS] != expected_single:
                failures.append("single")

    run_threads([work] * 4)
    assert not failures


def test_threads_switched_by_finalizers_in_the_middle_of_a_call(uncased):
    """A call holding the GIL can still lose it in the middle: any allocation can start a garbage
    collection, whose finalizers run bytecode, where the GIL can pass to another thread. Such a
    thread must not reuse the buffers the interrupted call is reading. (Before the fix, about one
    call in 700 of this test came back with another text's ids, silently.)"""
    import gc
    import sys
    import time

    texts = ["The quick brown fox jumps over the lazy dog, twice.", "Other words!",
             "naïve café Überstraße and a few more words", "x"]
    expected = {text: uncased(text) for text in texts}

    class Finalized:
        def __del__(self):
            for _ in range(2):  # a loop: an eval-breaker check, where the GIL can change hands
                pass

    wrong = []
    stop = time.monotonic() + 2.0

    def work(first):
        calls = first
        while time.monotonic() < stop:
            garbage = Finalized()
            garbage.cycle = garbage  # freed only by a collection, which runs __del__
            del garbage
            text = texts[calls % len(texts)]
            if uncased(text) != expected[text]:
                wrong.append(text)
            calls += 1

    interval, threshold = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(5)
    try:
        run_threads([lambda first=i: work(first) for i in range(4)])
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*threshold)
    assert not wrong, f"{len(wrong)} calls came back wrong"


def test_small_numpy_batches_beside_single_texts(uncased):
    """Small batches (encoded on the calling thread, holding the GIL) beside single-text calls on
    other threads: no call may see another's tokens. (When small batches shared the single-text
    buffers, about one call in five of this test came back with another text's ids.)"""
    import sys
    import threading

    rng = np.random.default_rng(5)
    words = uncased.convert_ids_to_tokens(rng.integers(2000, 30000, 3000).tolist())
    batch = [" ".join(rng.choice(words, 60)) for _ in range(8)]
    assert sum(map(len, batch)) < 8192  # below CHARS_PER_THREAD: the shared-buffer path
    singles = [" ".join(rng.choice(words, 5)) for _ in range(50)]
    expected = uncased(batch, padding=True, return_tensors="np")
    failures = []
    stop = threading.Event()

    def batches():
        for _ in range(1500):
            got = uncased(batch, padding=True, return_tensors="np")
            if not all(np.array_equal(got[k], expected[k]) for k in expected):
                failures.append("small batch")
        stop.set()

    def single_texts():
        while not stop.is_set():
            for text in singles:
                uncased(text)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    try:
        run_threads([batches] + [single_texts] * 3)
    finally:
        sys.setswitchinterval(interval)
    assert not failures, f"{len(failures)} of 1500 batches differ"
