"""Regenerates bertcpu/_unicode_tables.h, the per-code-point data of the tokenizer's hot path.

    python tests/generate_unicode_tables.py > bertcpu/_unicode_tables.h

The tables are read off HuggingFace `tokenizers` itself, one code point at a time, not computed from
Python's `unicodedata`: `tokenizers` mixes Unicode versions (control / punctuation / non-spacing-mark
classes come from an old `unicode_categories` table, NFD from an old `unicode-normalization` fork,
whitespace and lowercasing from the Rust standard library), so no single `unicodedata` version
reproduces it. For example, under `tokenizers` 0.23 the unassigned code points are kept (not
"control"), U+1734 is still a non-spacing mark and stripped, U+11938 has no decomposition, and
U+1C89 lowercases to U+1C8A (Unicode 16) although Python 3.11 knows neither character.

`unicodedata` is used only to choose which code points to probe for a combining class, and each class
is confirmed against `tokenizers`' own reordering. tests/test_tokenizer.py checks the shipped tables
against `tokenizers` for every code point, so a `tokenizers` release that changes its Unicode data
shows up as a test failure; rerun this script then.
"""
import sys
import unicodedata

import tokenizers
from tokenizers import normalizers, pre_tokenizers

N_CODE_POINTS = 0x110000
BLOCK = 256

# Per-code-point flags, mirrored in bertcpu/_wordpiece.pyx.
F_REMOVE = 1        # clean_text drops it (NUL, U+FFFD, "control" = Cc/Cf/Co in tokenizers' table)
F_CLEAN_SPACE = 2   # clean_text turns it into U+0020
F_WHITESPACE = 4    # the pre-tokenizer splits on it and drops it (Rust char::is_whitespace)
F_PUNCT = 8         # the pre-tokenizer isolates it (ASCII punctuation or Unicode P*)
F_MN = 16           # strip_accents removes it after NFD (non-spacing mark)
F_NFD = 32          # NFD changes it or it has a non-zero combining class: take the slow path
F_LOWER = 64        # lowercasing changes it
F_CJK = 128         # handle_chinese_chars puts spaces around it

CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3
SEP = "#"  # left alone by every normalizer probed here, and a starter, so NFD never reorders across it


def all_code_points():
    """Every scalar value (surrogates cannot be passed to tokenizers) except the separator."""
    return [c for c in range(N_CODE_POINTS) if not 0xD800 <= c <= 0xDFFF and c != ord(SEP)]


def normalize_each(normalizer, pieces):
    """normalizer applied to each string of pieces, via one call per 50,000 pieces."""
    out = []
    for i in range(0, len(pieces), 50000):
        chunk = pieces[i:i + 50000]
        result = normalizer.normalize_str(SEP.join(chunk)).split(SEP)
        assert len(result) == len(chunk)
        out += result
    return out


def bert_normalizer(**flags):
    options = dict(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    options.update(flags)
    return normalizers.BertNormalizer(**options)


def probe_pre_tokenizer(cps):
    """For each code point: 'space' (split and dropped), 'punct' (isolated) or 'word'."""
    pre = pre_tokenizers.BertPreTokenizer()
    kinds = {}
    chunk_size = 50000
    for i in range(0, len(cps), chunk_size):
        chunk = cps[i:i + chunk_size]
        # Segment j is "a", the code point, "a", then U+0020, so it starts at char offset 4 * j.
        text = "".join("a" + chr(c) + "a " for c in chunk)
        by_segment = {}
        for piece, (start, _) in pre.pre_tokenize_str(text):
            by_segment.setdefault(start // 4, []).append(piece)
        for j, c in enumerate(chunk):
            pieces = by_segment[j]
            if pieces == ["a", "a"]:
                kinds[c] = "space"
            elif pieces == ["a", chr(c), "a"]:
                kinds[c] = "punct"
            else:
                assert pieces == ["a" + chr(c) + "a"], (hex(c), pieces)
                kinds[c] = "word"
    return kinds


def probe_combining_classes(decompositions):
    """The canonical combining class tokenizers' NFD uses, for each code point that has one.

    Combining classes never change once a character is assigned, so the NFD tables either know a
    character with its `unicodedata` class or not at all (class 0). One reordering probe tells which.
    """
    nfd = normalizers.NFD()
    low_mark, high_mark = "\u0334", "\u0301"  # classes 1 and 230, in every Unicode version
    candidates = [c for c in range(N_CODE_POINTS)
                  if not 0xD800 <= c <= 0xDFFF and unicodedata.combining(chr(c))
                  and decompositions.get(c, chr(c)) == chr(c)]
    probes = []
    for c in candidates:
        if unicodedata.combining(chr(c)) > 1:
            probes.append(chr(c) + low_mark)   # swapped iff NFD knows class > 1
        else:
            probes.append(high_mark + chr(c))  # swapped iff NFD knows class 1
    results = normalize_each(nfd, probes)
    classes = {}
    for c, probe, result in zip(candidates, probes, results):
        if result == probe[::-1]:
            classes[c] = unicodedata.combining(chr(c))
        else:
            assert result == probe, (hex(c), result)
    check_reordering(classes)
    return classes


def check_reordering(classes):
    """Every probed mark against one mark of every class: NFD must order them by these classes."""
    nfd = normalizers.NFD()
    reference = {}
    for c, ccc in sorted(classes.items()):
        reference.setdefault(ccc, c)
    probes, expected = [], []
    for c, ccc in classes.items():
        for ref_ccc, ref in reference.items():
            probes.append(chr(c) + chr(ref))
            expected.append(chr(ref) + chr(c) if ccc > ref_ccc else chr(c) + chr(ref))
    results = normalize_each(nfd, probes)
    bad = [(p, r, e) for p, r, e in zip(probes, results, expected) if r != e]
    assert not bad, bad[:10]


def hangul_decomposition(c):
    s = c - HANGUL_FIRST
    lead, vowel, trail = 0x1100 + s // 588, 0x1161 + (s % 588) // 28, 0x11A7 + s % 28
    return chr(lead) + chr(vowel) + (chr(trail) if trail != 0x11A7 else "")


def probe():
    cps = all_code_points()
    chars = [chr(c) for c in cps]
    cleaned = normalize_each(bert_normalizer(clean_text=True), chars)
    chinese = normalize_each(bert_normalizer(handle_chinese_chars=True), chars)
    stripped = normalize_each(bert_normalizer(strip_accents=True), chars)
    lowered = normalize_each(bert_normalizer(lowercase=True), chars)
    decomposed = normalize_each(normalizers.NFD(), chars)
    kinds = probe_pre_tokenizer(cps)

    decompositions = {c: d for c, d in zip(cps, decomposed) if d != chr(c)}
    for c in range(HANGUL_FIRST, HANGUL_LAST + 1):
        assert decompositions.pop(c) == hangul_decomposition(c), hex(c)
    classes = probe_combining_classes(decompositions)
    lowercase = {c: low for c, low in zip(cps, lowered) if low != chr(c)}

    flags = [0] * N_CODE_POINTS
    for c, clean, chin, strip, dec in zip(cps, cleaned, chinese, stripped, decomposed):
        f = 0
        if clean == "":
            f |= F_REMOVE
        elif clean == " ":
            f |= F_CLEAN_SPACE
        else:
            assert clean == chr(c), hex(c)
        if kinds[c] == "space":
            f |= F_WHITESPACE
        elif kinds[c] == "punct":
            f |= F_PUNCT
        if dec == chr(c) and strip == "":
            f |= F_MN
        if dec != chr(c) or c in classes:
            f |= F_NFD
        if c in lowercase:
            f |= F_LOWER
        in_cjk = any(lo <= c <= hi for lo, hi in CJK_RANGES)
        assert chin == (" " + chr(c) + " " if in_cjk else chr(c)), hex(c)
        if in_cjk:
            f |= F_CJK
        flags[c] = f
    # The separator itself: ASCII punctuation, nothing else.
    flags[ord(SEP)] = F_PUNCT
    for c in range(0xD800, 0xE000):
        flags[c] = F_REMOVE  # never reaches the tables: surrogates are rejected before tokenizing

    # Strip results must follow from decomposition + mark flags, or the hot path would differ.
    for c, strip, dec in zip(cps, stripped, decomposed):
        expected = "".join(d for d in dec if not flags[ord(d)] & F_MN)
        assert strip == expected, (hex(c), strip, expected)
    return flags, decompositions, classes, lowercase


def c_array(ctype, name, values, per_line=16):
    lines = [f"static const {ctype} {name}[{len(values)}] = {{"]
    for i in range(0, len(values), per_line):
        lines.append("    " + ", ".join(str(v) for v in values[i:i + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def mapping_tables(prefix, mapping, value_type):
    """A sorted key array, an index into a flat data array, and the data (code points)."""
    keys = sorted(mapping)
    index, data = [0], []
    for k in keys:
        data += [ord(ch) for ch in mapping[k]]
        index.append(len(data))
    return "\n".join([
        f"#define {prefix.upper()}_COUNT {len(keys)}",
        c_array("uint32_t", f"{prefix}_keys", keys),
        c_array(value_type, f"{prefix}_index", index),
        c_array("uint32_t", f"{prefix}_data", data),
    ])


LOOKUP_FUNCTIONS = r"""
// Flags of a code point (cp < 0x110000).
static inline uint8_t bertcpu_flags(uint32_t cp) {
    return bertcpu_cp_flags[((uint32_t)bertcpu_cp_block[cp >> BERTCPU_CP_BLOCK_SHIFT] << BERTCPU_CP_BLOCK_SHIFT)
                            | (cp & ((1u << BERTCPU_CP_BLOCK_SHIFT) - 1))];
}

// Index of cp in a sorted key array, or -1.
static inline int32_t bertcpu_find(const uint32_t* keys, int32_t count, uint32_t cp) {
    int32_t lo = 0, hi = count - 1;
    while (lo <= hi) {
        int32_t mid = (lo + hi) >> 1;
        if (keys[mid] < cp) lo = mid + 1;
        else if (keys[mid] > cp) hi = mid - 1;
        else return mid;
    }
    return -1;
}

// Canonical combining class as tokenizers' NFD knows it.
static inline uint8_t bertcpu_ccc(uint32_t cp) {
    int32_t i = bertcpu_find(bertcpu_ccc_keys, BERTCPU_CCC_COUNT, cp);
    return i < 0 ? 0 : bertcpu_ccc_values[i];
}

// Full canonical decomposition of cp into out (at most BERTCPU_DECOMP_MAX code points; cp itself when
// it has none). Returns the count. Hangul syllables are decomposed arithmetically.
static inline int bertcpu_decompose(uint32_t cp, uint32_t* out) {
    if (cp >= 0xAC00 && cp <= 0xD7A3) {
        uint32_t s = cp - 0xAC00, trail = s % 28;
        out[0] = 0x1100 + s / 588;
        out[1] = 0x1161 + (s % 588) / 28;
        if (trail == 0) return 2;
        out[2] = 0x11A7 + trail;
        return 3;
    }
    int32_t i = bertcpu_find(bertcpu_decomp_keys, BERTCPU_DECOMP_COUNT, cp);
    if (i < 0) { out[0] = cp; return 1; }
    int n = 0;
    for (uint32_t k = bertcpu_decomp_index[i]; k < bertcpu_decomp_index[i + 1]; ++k) out[n++] = bertcpu_decomp_data[k];
    return n;
}

// Lowercase of cp into out (at most BERTCPU_LOWER_MAX code points). Returns the count.
static inline int bertcpu_lowercase(uint32_t cp, uint32_t* out) {
    int32_t i = bertcpu_find(bertcpu_lower_keys, BERTCPU_LOWER_COUNT, cp);
    if (i < 0) { out[0] = cp; return 1; }
    int n = 0;
    for (uint32_t k = bertcpu_lower_index[i]; k < bertcpu_lower_index[i + 1]; ++k) out[n++] = bertcpu_lower_data[k];
    return n;
}
"""


def header(flags, decompositions, classes, lowercase):
    blocks, block_ids, stage1 = [], {}, []
    for b in range(0, N_CODE_POINTS, BLOCK):
        block = tuple(flags[b:b + BLOCK])
        if block not in block_ids:
            block_ids[block] = len(blocks)
            blocks.append(block)
        stage1.append(block_ids[block])
    stage1_type = "uint8_t" if len(blocks) <= 256 else "uint16_t"
    ccc_keys = sorted(classes)
    parts = [
        f"// Generated by tests/generate_unicode_tables.py from tokenizers {tokenizers.__version__}.",
        "// Do not edit: rerun the script. Per-code-point behaviour of HF's BertNormalizer,",
        "// BertPreTokenizer and NFD, as that tokenizers release implements it.",
        "#pragma once",
        "#include <stdint.h>",
        "",
        f'#define BERTCPU_UNICODE_TABLES_SOURCE "tokenizers {tokenizers.__version__}"',
        f"#define BERTCPU_CP_BLOCK_SHIFT {BLOCK.bit_length() - 1}",
        c_array(stage1_type, "bertcpu_cp_block", stage1),
        c_array("uint8_t", "bertcpu_cp_flags", [v for block in blocks for v in block], per_line=32),
        "",
        f"#define BERTCPU_CCC_COUNT {len(ccc_keys)}",
        c_array("uint32_t", "bertcpu_ccc_keys", ccc_keys),
        c_array("uint8_t", "bertcpu_ccc_values", [classes[k] for k in ccc_keys]),
        "",
        mapping_tables("bertcpu_decomp", decompositions, "uint16_t"),
        "",
        mapping_tables("bertcpu_lower", lowercase, "uint16_t"),
        "",
        f"#define BERTCPU_DECOMP_MAX {max(len(d) for d in decompositions.values())}",
        f"#define BERTCPU_LOWER_MAX {max(len(d) for d in lowercase.values())}",
        LOOKUP_FUNCTIONS,
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(header(*probe()))
