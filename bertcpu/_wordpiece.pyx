# distutils: language = c++
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The tokenizer's hot path: HF's BERT pipeline over code points, without Python objects.

Stages, each mirroring one piece of HuggingFace `tokenizers` (the reference the tests compare with):
  1. added tokens: literal special tokens are split out of the raw text first (AddedVocabulary);
  2. normalizer (BertNormalizer): clean text, spaces around CJK ideographs, NFD + non-spacing-mark
     removal, lowercasing; optionally a Lowercase normalizer in front (sentence-transformers'
     do_lower_case);
  3. added tokens marked `normalized` are split out of the normalized text;
  4. pre-tokenizer (BertPreTokenizer): split on whitespace, isolate punctuation;
  5. model (WordPiece): greedy longest match over a trie, continuation prefix, [UNK] for
     unmatchable or over-long words;
  6. post-processor (TemplateProcessing), truncation and padding.

Every normalized character remembers the index of the raw character it came from (`src`); token
offsets are (src of first char, src of last char + 1), which is what `tokenizers`' alignment
tracking yields for these normalizers (see `flush_pending` for the one subtle case). Per-code-point
Unicode data comes from _unicode_tables.h, generated from `tokenizers` itself.

The pipeline is free functions over a `Core` (vocabulary trie and settings, read-only once built)
and a per-thread `Workspace`, so batches run on several threads without the GIL.
"""
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_New, PyTuple_SET_ITEM
from cython.operator cimport dereference as deref
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libcpp.algorithm cimport sort
from libcpp.unordered_map cimport unordered_map
from libcpp.vector cimport vector

cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "_unicode_tables.h" nogil:
    const char* BERTCPU_UNICODE_TABLES_SOURCE
    uint8_t bertcpu_flags(uint32_t cp)
    uint8_t bertcpu_ccc(uint32_t cp)
    int bertcpu_decompose(uint32_t cp, uint32_t* out)
    int bertcpu_lowercase(uint32_t cp, uint32_t* out)

cdef extern from "_parallel.h" nogil:
    ctypedef void (*bertcpu_task)(void* context, ptrdiff_t item, int worker) noexcept nogil
    void bertcpu_parallel_for(ptrdiff_t n_items, int n_threads, ptrdiff_t chunk, bertcpu_task task,
                              void* context)

cdef extern from "Python.h":
    # PEP 393 access: the text is read in place, one code unit of 1, 2 or 4 bytes per character.
    int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    object PyLong_FromLong(long v)

UNICODE_TABLES_SOURCE = BERTCPU_UNICODE_TABLES_SOURCE.decode()

# Per-code-point flags (bit layout written by tests/generate_unicode_tables.py).
cdef enum:
    F_REMOVE = 1
    F_CLEAN_SPACE = 2
    F_WHITESPACE = 4
    F_PUNCT = 8
    F_MN = 16
    F_NFD = 32
    F_LOWER = 64
    F_CJK = 128

# Truncation strategies, as numbered in tokenizer.py.
cdef enum:
    TRUNCATE_NONE = 0
    TRUNCATE_LONGEST_FIRST = 1
    TRUNCATE_ONLY_FIRST = 2
    TRUNCATE_ONLY_SECOND = 3

# Item errors found without the GIL, raised afterwards.
cdef enum:
    ERR_NONE = 0
    ERR_SURROGATE = 1
    ERR_SECOND_NOT_PROVIDED = 2
    ERR_SEQUENCE_TOO_SHORT = 3

# Template piece kinds.
cdef enum:
    PIECE_SPECIAL = 0
    PIECE_SEQ_A = 1
    PIECE_SEQ_B = 2

cdef enum:
    WORD_ROOT = 0          # trie root for a word's first piece
    CONTINUATION_ROOT = 1  # trie root for later pieces (their prefix, "##", left out)

# Batches smaller than this many characters per extra thread run on the calling thread alone:
# starting and joining a thread costs about as much as tokenizing several thousand characters.
# Measured on a 2-vCPU VM (texts of 85 characters): 2 threads against 1 were 0.79-0.94x at 128
# texts, 1.04-1.35x at 192 and 1.35x at 256, so the second thread starts at 16,384 characters.
cdef Py_ssize_t CHARS_PER_THREAD = 8192
# Character offsets are stored in 32 bits.
cdef Py_ssize_t MAX_TEXT_CHARS = 0x7FFFFFFF


cdef struct TextView:
    const void* data
    int kind
    Py_ssize_t length


cdef struct PendingMark:
    # One NFD output character waiting for canonical reordering.
    uint32_t cp
    uint8_t ccc
    bint inserted  # not the first character of its source's decomposition


cdef struct TrieEdge:
    # The way to a child node, carrying what the walk needs of the child, so that each step reads
    # one edge and nothing else.
    uint32_t cp
    int32_t token       # vocabulary id of the string ending at the child, or -1
    int32_t first_edge  # the child's own edges: edges[first_edge : first_edge + n_edges]
    int32_t n_edges     # -1 marks an absent entry of Core.root_ascii


cdef struct BuildEdge:
    uint32_t cp
    int32_t child


cdef struct TemplatePiece:
    int kind
    int32_t id
    int32_t type_id


cdef struct AddedToken:
    int32_t id
    bint lstrip
    bint rstrip
    int32_t start  # range in Core.added_cps
    int32_t length


cdef cppclass Sequence:
    # Tokens before post-processing: ids and (start, end) character offsets, appended to. Holds one
    # text's tokens, or a thread's share of a batch one text after another.
    vector[int32_t] ids
    vector[int32_t] offsets
    int error                  # ERR_* of the last text appended
    Py_ssize_t error_position


cdef struct Tokens:
    # One text's tokens, wherever they are stored.
    const int32_t* ids
    const int32_t* offsets
    Py_ssize_t count


cdef struct ItemRecord:
    # Where a batch item's tokens went.
    int worker
    Py_ssize_t begin
    Py_ssize_t count
    int error
    Py_ssize_t error_position


cdef cppclass Workspace:
    # Scratch buffers of one thread, reused from text to text.
    vector[uint32_t] norm_cp     # normalized characters of the current piece
    vector[int32_t] norm_src     # for each, the index of the raw character it came from
    vector[PendingMark] pending  # NFD characters since the last starter
    vector[int32_t] nfd_queue    # src of NFD input characters whose first output is still pending
    size_t nfd_head
    int32_t last_src             # src of the last NFD input character accounted for
    Sequence batch_tokens        # the tokens of the batch items this thread encoded
    vector[int64_t] row_ids, row_types, row_mask  # encode_one's row
    char cache_line_gap[128]     # each thread's buffers' bookkeeping on its own cache lines


cdef cppclass Core:
    # Everything encoding reads: built once by _Encoder, then shared read-only by all threads.
    # Trie over code points laid out breadth-first: a node's edges are adjacent in `edges`, sorted
    # by code point, and siblings' edge lists follow each other. The roots' edges are at
    # root_first[r] (root_count[r] of them); their ASCII edges are also in a direct table.
    vector[TrieEdge] edges
    int32_t root_first[2]
    int32_t root_count[2]
    TrieEdge root_ascii[2][128]

    int32_t unk_id
    Py_ssize_t max_input_chars_per_word
    bint clean_text, handle_chinese_chars, strip_accents, lowercase, lowercase_first
    int32_t ascii_out[128]  # the normalizer's output for each ASCII character, -1 if removed

    vector[AddedToken] raw_added         # matched in the raw text
    vector[AddedToken] normalized_added  # matched in the normalized text
    vector[uint32_t] added_cps
    bint raw_first_ascii[128]
    vector[uint32_t] raw_first_other
    bint norm_first_ascii[128]
    vector[uint32_t] norm_first_other

    vector[TemplatePiece] single_template
    vector[TemplatePiece] pair_template
    Py_ssize_t n_special_single, n_special_pair
    int32_t pad_id, pad_type_id


ctypedef fused code_unit:
    uint8_t
    uint16_t
    uint32_t


cdef inline uint32_t char_at(const TextView* text, Py_ssize_t i) noexcept nogil:
    if text.kind == 1:
        return (<const uint8_t*>text.data)[i]
    if text.kind == 2:
        return (<const uint16_t*>text.data)[i]
    return (<const uint32_t*>text.data)[i]


# ------------------------------------------------------------------------------------ trie

cdef inline const TrieEdge* find_edge(const TrieEdge* edges, int32_t n, uint32_t cp) noexcept nogil:
    """The edge for cp among n sorted edges, or NULL."""
    cdef int32_t lo = 0, hi = n - 1, mid
    if n <= 8:
        for mid in range(n):
            if edges[mid].cp == cp:
                return &edges[mid]
        return NULL
    while lo <= hi:
        mid = (lo + hi) >> 1
        if edges[mid].cp < cp:
            lo = mid + 1
        elif edges[mid].cp > cp:
            hi = mid - 1
        else:
            return &edges[mid]
    return NULL


cdef inline const TrieEdge* root_edge(const Core* core, int root, uint32_t cp) noexcept nogil:
    cdef const TrieEdge* edge
    if cp < 128:
        edge = &core.root_ascii[root][cp]
        return edge if edge.n_edges >= 0 else NULL
    return find_edge(core.edges.data() + core.root_first[root], core.root_count[root], cp)


cdef inline uint64_t edge_key(int32_t node, uint32_t cp) noexcept nogil:
    return (<uint64_t>node << 21) | cp


cdef bint edge_before(const BuildEdge& a, const BuildEdge& b) noexcept nogil:
    return a.cp < b.cp


cdef insert_token(unordered_map[uint64_t, int32_t]& edge_of, vector[vector[BuildEdge]]& children,
                  vector[int32_t]& token_at, int32_t root, str token, int32_t token_id):
    """Adds token below root in the construction trie (the first id wins for a repeated string)."""
    if not token:
        return  # an empty piece can never be matched
    cdef int32_t node = root
    cdef BuildEdge edge
    cdef uint64_t key
    for ch in token:
        edge.cp = ord(ch)
        key = edge_key(node, edge.cp)
        found = edge_of.find(key)
        if found == edge_of.end():
            edge.child = <int32_t>token_at.size()
            token_at.push_back(-1)
            children.push_back(vector[BuildEdge]())
            children[node].push_back(edge)
            edge_of[key] = edge.child
            node = edge.child
        else:
            node = deref(found).second
    if token_at[node] < 0:
        token_at[node] = token_id


cdef build_trie(Core* core, list vocab, str prefix):
    # First a trie with hashed edges, in insertion order; then laid out breadth-first into the
    # compact form the walk uses.
    cdef unordered_map[uint64_t, int32_t] edge_of
    cdef vector[vector[BuildEdge]] children
    cdef vector[int32_t] token_at
    children.resize(2)
    token_at.assign(2, -1)
    cdef Py_ssize_t token_id, plen = len(prefix)
    cdef str token
    for token_id, token in enumerate(vocab):
        # Every token is a candidate for a word's start, exactly as the vocabulary lookup of
        # WordPiece is; tokens with the prefix are also continuations (looked up without it), so
        # with an empty prefix every token is one, as in tokenizers.
        insert_token(edge_of, children, token_at, WORD_ROOT, token, <int32_t>token_id)
        if token.startswith(prefix):
            insert_token(edge_of, children, token_at, CONTINUATION_ROOT, token[plen:], <int32_t>token_id)

    # Breadth-first order of the nodes; each node's edges start where its predecessors' end.
    cdef vector[int32_t] order, first_edge
    order.push_back(WORD_ROOT)
    order.push_back(CONTINUATION_ROOT)
    first_edge.assign(token_at.size(), 0)
    cdef size_t head = 0
    cdef int32_t node, n_edges = 0
    cdef BuildEdge child
    while head < order.size():
        node = order[head]
        sort(children[node].begin(), children[node].end(), edge_before)
        first_edge[node] = n_edges
        n_edges += <int32_t>children[node].size()
        for child in children[node]:
            order.push_back(child.child)
        head += 1
    cdef TrieEdge edge
    core.edges.clear()
    core.edges.reserve(n_edges)
    for node in order:
        for child in children[node]:
            edge.cp = child.cp
            edge.token = token_at[child.child]
            edge.first_edge = first_edge[child.child]
            edge.n_edges = <int32_t>children[child.child].size()
            core.edges.push_back(edge)
    cdef const TrieEdge* found
    cdef int r, c
    for r in range(2):
        core.root_first[r] = first_edge[r]
        core.root_count[r] = <int32_t>children[r].size()
        for c in range(128):
            found = find_edge(core.edges.data() + core.root_first[r], core.root_count[r], c)
            if found != NULL:
                core.root_ascii[r][c] = found[0]
            else:
                core.root_ascii[r][c].cp = c
                core.root_ascii[r][c].token = -1
                core.root_ascii[r][c].first_edge = 0
                core.root_ascii[r][c].n_edges = -1


# ------------------------------------------------------------------------------------ normalizer

cdef inline void emit_normalized(const Core* core, Workspace* ws, uint32_t cp, int32_t src) noexcept nogil:
    """Last normalizer stage: lowercasing (per character, as NormalizedString::lowercase)."""
    cdef uint32_t lowered[4]
    cdef int n, k
    if core.lowercase and bertcpu_flags(cp) & F_LOWER:
        n = bertcpu_lowercase(cp, lowered)
        for k in range(n):
            ws.norm_cp.push_back(lowered[k])
            ws.norm_src.push_back(src)
    else:
        ws.norm_cp.push_back(cp)
        ws.norm_src.push_back(src)


cdef void flush_pending(const Core* core, Workspace* ws) noexcept nogil:
    """Canonical reordering of the characters since the last starter, then mark removal.

    Mirrors NFD in `tokenizers`: the decomposition iterator sorts by combining class (stably), and
    each output character carries a change flag (0 for the first character of its source's
    decomposition, +1 for the others). The alignment transform then assigns alignments by
    position, not by source: the k-th flag-0 character gets the alignment of the k-th input
    character, a +1 character that of the last input character consumed. Only reordering across
    source characters makes this differ from "the source's alignment", and tokens see it only at
    their edges, but it is what HF reports. The first character of a run always has flag 0 (the
    first part of a decomposition has the lowest class in it), so last_src is always set.
    """
    cdef Py_ssize_t n = ws.pending.size(), i, j
    cdef PendingMark mark
    # Insertion sort: stable, and the runs are a handful of characters.
    for i in range(1, n):
        mark = ws.pending[i]
        j = i - 1
        while j >= 0 and ws.pending[j].ccc > mark.ccc:
            ws.pending[j + 1] = ws.pending[j]
            j -= 1
        ws.pending[j + 1] = mark
    for i in range(n):
        mark = ws.pending[i]
        if not mark.inserted:
            ws.last_src = ws.nfd_queue[ws.nfd_head]
            ws.nfd_head += 1
        if bertcpu_flags(mark.cp) & F_MN:
            continue
        emit_normalized(core, ws, mark.cp, ws.last_src)
    ws.pending.clear()
    if ws.nfd_head == ws.nfd_queue.size():
        ws.nfd_queue.clear()
        ws.nfd_head = 0


cdef inline void strip_and_emit(const Core* core, Workspace* ws, uint32_t cp, uint8_t flags,
                                int32_t src) noexcept nogil:
    """Accent stripping (NFD then removal of non-spacing marks) when enabled, then lowercasing."""
    cdef uint32_t parts[4]
    cdef int n, k
    cdef PendingMark mark
    if not core.strip_accents:
        emit_normalized(core, ws, cp, src)
        return
    if not flags & F_NFD:
        # A starter that NFD leaves alone: it ends the pending run and keeps its own alignment.
        if ws.pending.size():
            flush_pending(core, ws)
        ws.last_src = src
        if not flags & F_MN:
            emit_normalized(core, ws, cp, src)
        return
    ws.nfd_queue.push_back(src)
    n = bertcpu_decompose(cp, parts)
    for k in range(n):
        mark.cp = parts[k]
        mark.ccc = bertcpu_ccc(parts[k])
        mark.inserted = k > 0
        if mark.ccc == 0 and ws.pending.size():
            flush_pending(core, ws)
        ws.pending.push_back(mark)


cdef inline void clean_and_emit(const Core* core, Workspace* ws, uint32_t cp, int32_t src) noexcept nogil:
    """clean_text and handle_chinese_chars, then the later stages."""
    cdef uint8_t flags = bertcpu_flags(cp)
    if core.clean_text:
        if flags & F_REMOVE:
            return
        if flags & F_CLEAN_SPACE:
            cp = 32
            flags = bertcpu_flags(32)
    if core.handle_chinese_chars and flags & F_CJK:
        strip_and_emit(core, ws, 32, bertcpu_flags(32), src)
        strip_and_emit(core, ws, cp, flags, src)
        strip_and_emit(core, ws, 32, bertcpu_flags(32), src)
    else:
        strip_and_emit(core, ws, cp, flags, src)


cdef int normalize_units(const Core* core, const code_unit* text, Py_ssize_t start, Py_ssize_t end,
                         Workspace* ws, Sequence* out) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t cp
    cdef int32_t ascii
    cdef uint32_t lowered[4]
    cdef int n, k
    for i in range(start, end):
        cp = text[i]
        if cp < 128:
            # No ASCII character decomposes or reorders, so the whole normalizer is one table.
            ascii = core.ascii_out[cp]
            if ascii >= 0:
                if ws.pending.size():
                    flush_pending(core, ws)
                ws.last_src = <int32_t>i
                ws.norm_cp.push_back(<uint32_t>ascii)
                ws.norm_src.push_back(<int32_t>i)
                continue
            if ascii == -1:
                continue  # removed (a control character)
            # -2: the table is being built, take the general path
        if code_unit is not uint8_t:
            if 0xD800 <= cp <= 0xDFFF:
                out.error = ERR_SURROGATE
                out.error_position = i
                return -1
        if core.lowercase_first and bertcpu_flags(cp) & F_LOWER:
            n = bertcpu_lowercase(cp, lowered)
            for k in range(n):
                clean_and_emit(core, ws, lowered[k], <int32_t>i)
        else:
            clean_and_emit(core, ws, cp, <int32_t>i)
    if ws.pending.size():
        flush_pending(core, ws)
    return 0


cdef int normalize_range(const Core* core, const TextView* text, Py_ssize_t start, Py_ssize_t end,
                         Workspace* ws, Sequence* out) noexcept nogil:
    """Normalizes raw characters [start, end) into ws.norm_cp / ws.norm_src. -1 on a surrogate."""
    ws.norm_cp.clear()
    ws.norm_src.clear()
    ws.pending.clear()
    ws.nfd_queue.clear()
    ws.nfd_head = 0
    ws.last_src = <int32_t>start
    if text.kind == 1:
        return normalize_units(core, <const uint8_t*>text.data, start, end, ws, out)
    if text.kind == 2:
        return normalize_units(core, <const uint16_t*>text.data, start, end, ws, out)
    return normalize_units(core, <const uint32_t*>text.data, start, end, ws, out)


# ------------------------------------------------------------------------------------ pre-tokenizer, WordPiece

cdef inline void push_token(Sequence* out, int32_t token_id, int32_t start, int32_t end) noexcept nogil:
    out.ids.push_back(token_id)
    out.offsets.push_back(start)
    out.offsets.push_back(end)


cdef void wordpiece(const Core* core, Workspace* ws, Py_ssize_t start, Py_ssize_t end, Sequence* out) noexcept nogil:
    """Greedy longest-match-first over normalized characters [start, end) of one word."""
    cdef const uint32_t* cps = ws.norm_cp.data()
    cdef const int32_t* src = ws.norm_src.data()
    if end - start > core.max_input_chars_per_word:
        push_token(out, core.unk_id, src[start], src[end - 1] + 1)
        return
    cdef size_t rollback = out.ids.size()
    cdef Py_ssize_t pos = start, j, best_end
    cdef int32_t best_id
    cdef const TrieEdge* edge
    cdef const TrieEdge* all_edges = core.edges.data()
    while pos < end:
        # Longest vocabulary entry starting at pos: walk down the trie, remembering the last
        # node that ends a token.
        edge = root_edge(core, WORD_ROOT if pos == start else CONTINUATION_ROOT, cps[pos])
        best_end = -1
        best_id = -1
        j = pos
        while edge != NULL:
            j += 1
            if edge.token >= 0:
                best_end = j
                best_id = edge.token
            if j == end or edge.n_edges == 0:
                break
            edge = find_edge(all_edges + edge.first_edge, edge.n_edges, cps[j])
        if best_end < 0:
            # One unmatchable piece makes the whole word [UNK].
            out.ids.resize(rollback)
            out.offsets.resize(2 * rollback)
            push_token(out, core.unk_id, src[start], src[end - 1] + 1)
            return
        push_token(out, best_id, src[pos], src[best_end - 1] + 1)
        pos = best_end


cdef void pre_tokenize(const Core* core, Workspace* ws, Py_ssize_t start, Py_ssize_t end, Sequence* out) noexcept nogil:
    """Whitespace splits (and is dropped), punctuation is a word of its own."""
    cdef const uint32_t* cps = ws.norm_cp.data()
    cdef Py_ssize_t i = start, j
    cdef uint8_t flags
    while i < end:
        flags = bertcpu_flags(cps[i])
        if flags & F_WHITESPACE:
            i += 1
        elif flags & F_PUNCT:
            wordpiece(core, ws, i, i + 1, out)
            i += 1
        else:
            j = i + 1
            while j < end and not bertcpu_flags(cps[j]) & (F_WHITESPACE | F_PUNCT):
                j += 1
            wordpiece(core, ws, i, j, out)
            i = j


# ------------------------------------------------------------------------------------ added tokens

cdef inline bint may_start_token(uint32_t cp, const bint* first_ascii, const vector[uint32_t]* first_other) noexcept nogil:
    if cp < 128:
        return first_ascii[cp]
    cdef size_t k
    for k in range(first_other.size()):
        if deref(first_other)[k] == cp:
            return True
    return False


cdef int longest_added_at(const Core* core, const vector[AddedToken]* tokens, const TextView* text,
                          const uint32_t* cps, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """Index of the longest added token matching at i (leftmost-longest, as aho-corasick), or -1.
    Reads text when cps is NULL, else cps."""
    cdef int best = -1
    cdef int32_t best_length = 0, k, length
    cdef size_t t
    cdef const AddedToken* token
    cdef uint32_t c
    for t in range(tokens.size()):
        token = &deref(tokens)[t]
        length = token.length
        if length <= best_length or i + length > end:
            continue
        for k in range(length):
            c = cps[i + k] if cps != NULL else char_at(text, i + k)
            if c != core.added_cps[token.start + k]:
                break
        else:
            best = <int>t
            best_length = length
    return best


cdef void encode_piece(const Core* core, const TextView* text, Py_ssize_t start, Py_ssize_t end, Workspace* ws,
                       Sequence* out) noexcept nogil:
    """Normalizes raw characters [start, end), splits out normalized added tokens, tokenizes the rest."""
    if normalize_range(core, text, start, end, ws, out) < 0:
        return
    cdef Py_ssize_t n = ws.norm_cp.size()
    if core.normalized_added.size() == 0:
        pre_tokenize(core, ws, 0, n, out)
        return
    cdef const uint32_t* cps = ws.norm_cp.data()
    cdef const int32_t* src = ws.norm_src.data()
    cdef Py_ssize_t i = 0, done = 0, match_start, match_stop
    cdef int t
    cdef const AddedToken* token
    while i < n:
        if may_start_token(cps[i], core.norm_first_ascii, &core.norm_first_other):
            t = longest_added_at(core, &core.normalized_added, NULL, cps, i, n)
            if t >= 0:
                token = &core.normalized_added[t]
                match_start = i
                match_stop = i + token.length
                if token.lstrip:
                    while match_start > 0 and bertcpu_flags(cps[match_start - 1]) & F_WHITESPACE:
                        match_start -= 1
                    if match_start < done:
                        match_start = done
                if token.rstrip:
                    while match_stop < n and bertcpu_flags(cps[match_stop]) & F_WHITESPACE:
                        match_stop += 1
                if done < match_start:
                    pre_tokenize(core, ws, done, match_start, out)
                push_token(out, token.id, src[match_start], src[match_stop - 1] + 1)
                done = match_stop
                i += token.length
                continue
        i += 1
    if done < n:
        pre_tokenize(core, ws, done, n, out)


cdef void encode_text(const Core* core, const TextView* text, Workspace* ws, Sequence* out) noexcept nogil:
    """Appends the tokens of one text (no special tokens added) to out, or sets out.error."""
    out.error = ERR_NONE
    cdef Py_ssize_t n = text.length
    if core.raw_added.size() == 0:
        encode_piece(core, text, 0, n, ws, out)
        return
    cdef Py_ssize_t i = 0, done = 0, match_start, match_stop
    cdef int t
    cdef const AddedToken* token
    while i < n:
        if may_start_token(char_at(text, i), core.raw_first_ascii, &core.raw_first_other):
            t = longest_added_at(core, &core.raw_added, text, NULL, i, n)
            if t >= 0:
                token = &core.raw_added[t]
                match_start = i
                match_stop = i + token.length
                if token.lstrip:
                    while match_start > 0 and bertcpu_flags(char_at(text, match_start - 1)) & F_WHITESPACE:
                        match_start -= 1
                    if match_start < done:
                        match_start = done
                if token.rstrip:
                    while match_stop < n and bertcpu_flags(char_at(text, match_stop)) & F_WHITESPACE:
                        match_stop += 1
                if done < match_start:
                    encode_piece(core, text, done, match_start, ws, out)
                    if out.error:
                        return
                push_token(out, token.id, <int32_t>match_start, <int32_t>match_stop)
                done = match_stop
                # The search resumes after the match itself, not after what rstrip took.
                i += token.length
                continue
        i += 1
    if done < n:
        encode_piece(core, text, done, n, ws, out)


# ------------------------------------------------------------------------------------ post-processing

cdef int truncated_lengths(const Core* core, Py_ssize_t la, Py_ssize_t lb, bint has_pair, int strategy,
                           Py_ssize_t max_length, bint add_special, Py_ssize_t* len_a, Py_ssize_t* len_b) noexcept nogil:
    """Lengths of sequences of la and lb tokens after truncation, as tokenizers' truncate_encodings;
    an ERR_* code."""
    cdef Py_ssize_t limit = max_length, n_special, to_remove, n1, n2
    cdef bint swap
    len_a[0] = la
    len_b[0] = lb
    if strategy == TRUNCATE_NONE:
        return ERR_NONE
    if add_special:
        n_special = core.n_special_pair if has_pair else core.n_special_single
        if limit < n_special:
            return ERR_NONE  # tokenizers leaves such input alone rather than fail
        limit -= n_special
    if limit == 0:
        len_a[0] = 0
        len_b[0] = 0
        return ERR_NONE
    if la + lb <= limit:
        return ERR_NONE
    to_remove = la + lb - limit
    if strategy == TRUNCATE_LONGEST_FIRST:
        if not has_pair:
            len_a[0] = la - to_remove
            return ERR_NONE
        n1, n2 = la, lb
        swap = n1 > n2
        if swap:
            n1, n2 = n2, n1
        if n1 > limit:
            n2 = n1
        else:
            n2 = max(n1, limit - n1)
        if n1 + n2 > limit:
            n1 = limit // 2
            n2 = n1 + limit % 2
        if swap:
            n1, n2 = n2, n1
        len_a[0] = min(la, n1)
        len_b[0] = min(lb, n2)
        return ERR_NONE
    if strategy == TRUNCATE_ONLY_FIRST:
        if la > to_remove:
            len_a[0] = la - to_remove
            return ERR_NONE
        return ERR_SEQUENCE_TOO_SHORT
    if not has_pair:
        return ERR_SECOND_NOT_PROVIDED
    if lb > to_remove:
        len_b[0] = lb - to_remove
        return ERR_NONE
    return ERR_SEQUENCE_TOO_SHORT


cdef void fill_row(const Core* core, const Tokens* a, Py_ssize_t len_a, const Tokens* b, Py_ssize_t len_b,
                   bint has_pair, bint add_special, Py_ssize_t width, int64_t* ids, int64_t* types, int64_t* mask,
                   int64_t* offsets) noexcept nogil:
    """Writes one post-processed, padded row; offsets may be NULL."""
    cdef const vector[TemplatePiece]* template = &core.pair_template if has_pair else &core.single_template
    cdef Py_ssize_t pos = 0, k, n
    cdef size_t p
    cdef const Tokens* seq
    cdef const TemplatePiece* piece
    for p in range(template.size()):
        piece = &deref(template)[p]
        if piece.kind == PIECE_SPECIAL:
            if not add_special:
                continue
            ids[pos] = piece.id
            types[pos] = piece.type_id
            mask[pos] = 1
            if offsets != NULL:
                offsets[2 * pos] = 0
                offsets[2 * pos + 1] = 0
            pos += 1
            continue
        if piece.kind == PIECE_SEQ_A:
            seq, n = a, len_a
        else:
            seq, n = b, len_b
        for k in range(n):
            ids[pos] = seq.ids[k]
            types[pos] = piece.type_id
            mask[pos] = 1
            if offsets != NULL:
                offsets[2 * pos] = seq.offsets[2 * k]
                offsets[2 * pos + 1] = seq.offsets[2 * k + 1]
            pos += 1
    while pos < width:
        ids[pos] = core.pad_id
        types[pos] = core.pad_type_id
        mask[pos] = 0
        if offsets != NULL:
            offsets[2 * pos] = 0
            offsets[2 * pos + 1] = 0
        pos += 1


# ------------------------------------------------------------------------------------ batch jobs

cdef struct EncodeJob:
    const Core* core
    const TextView* views_a
    const TextView* views_b  # NULL without pairs
    ItemRecord* records_a
    ItemRecord* records_b
    Workspace* workspaces


cdef inline void encode_record(const Core* core, const TextView* text, Workspace* ws, int worker,
                               ItemRecord* record) noexcept nogil:
    cdef Sequence* out = &ws.batch_tokens
    record.worker = worker
    record.begin = out.ids.size()
    encode_text(core, text, ws, out)
    record.count = out.ids.size() - record.begin
    record.error = out.error
    record.error_position = out.error_position


cdef void encode_item(void* context, ptrdiff_t i, int worker) noexcept nogil:
    cdef EncodeJob* job = <EncodeJob*>context
    encode_record(job.core, &job.views_a[i], &job.workspaces[worker], worker, &job.records_a[i])
    if job.views_b != NULL and not job.records_a[i].error:
        encode_record(job.core, &job.views_b[i], &job.workspaces[worker], worker, &job.records_b[i])


cdef struct FillJob:
    const Core* core
    const Tokens* seqs_a
    const Tokens* seqs_b  # NULL without pairs
    const Py_ssize_t* lengths_a
    const Py_ssize_t* lengths_b
    bint add_special
    Py_ssize_t width
    int64_t* ids
    int64_t* types
    int64_t* mask
    int64_t* offsets  # NULL without offsets


cdef void fill_item(void* context, ptrdiff_t i, int worker) noexcept nogil:
    cdef FillJob* job = <FillJob*>context
    cdef Py_ssize_t w = job.width
    fill_row(job.core, &job.seqs_a[i], job.lengths_a[i], &job.seqs_b[i] if job.seqs_b != NULL else NULL,
             job.lengths_b[i], job.seqs_b != NULL, job.add_special, w, job.ids + i * w, job.types + i * w,
             job.mask + i * w, job.offsets + 2 * i * w if job.offsets != NULL else NULL)


# ------------------------------------------------------------------------------------ Python side

cdef inline void set_view(TextView* view, object text):
    # text is a str (or subclass): checked by the caller.
    view.data = PyUnicode_DATA(text)
    view.kind = PyUnicode_KIND(text)
    view.length = PyUnicode_GET_LENGTH(text)


cdef class _Encoder:
    """Vocabulary trie, pipeline settings and added tokens; encodes texts into token ids.

    Built once per Tokenizer by tokenizer.py, which validates everything passed in.
    """
    cdef Core core
    # Kept from call to call for one-text calls (claim_workspace), so that the most common call
    # allocates nothing.
    cdef Workspace own_workspace
    cdef bint own_workspace_claimed
    cdef tuple id_objects  # the Python int of every id, shared by all output lists
    cdef object result_type

    def __init__(self, list vocab, str continuing_prefix, int32_t unk_id, Py_ssize_t max_input_chars_per_word,
                 bint clean_text, bint handle_chinese_chars, bint strip_accents, bint lowercase,
                 bint lowercase_first, list added_tokens, list single_template, list pair_template,
                 int32_t pad_id, int32_t pad_type_id, Py_ssize_t n_ids, result_type):
        """vocab: token strings by id. added_tokens: (content, id, normalized, lstrip, rstrip) tuples.
        Templates: ("special", id, type_id) / ("A", type_id) / ("B", type_id) tuples. n_ids: vocabulary
        size with added tokens. result_type: the mapping type encode() returns."""
        cdef Core* core = &self.core
        core.unk_id = unk_id
        core.max_input_chars_per_word = max_input_chars_per_word
        core.clean_text = clean_text
        core.handle_chinese_chars = handle_chinese_chars
        core.strip_accents = strip_accents
        core.lowercase = lowercase
        core.lowercase_first = lowercase_first
        core.pad_id = pad_id
        core.pad_type_id = pad_type_id
        self.id_objects = tuple(range(n_ids))
        self.result_type = result_type
        build_trie(core, vocab, continuing_prefix)
        cdef int c
        for c in range(128):
            core.ascii_out[c] = -2
        for c in range(128):
            # Through the general path once; the table then stands for it.
            normalized = self.normalize(chr(c))[0]
            assert len(normalized) <= 1, (c, normalized)
            core.ascii_out[c] = ord(normalized) if normalized else -1
        for content, token_id, normalized, lstrip, rstrip in added_tokens:
            if normalized:
                # Matched against normalized text, so its pattern is its own normalized form.
                self._add_token(core.normalized_added, self.normalize(content)[0], token_id, lstrip, rstrip)
            else:
                self._add_token(core.raw_added, content, token_id, lstrip, rstrip)
        self._index_first_chars(core.raw_added, core.raw_first_ascii, core.raw_first_other)
        self._index_first_chars(core.normalized_added, core.norm_first_ascii, core.norm_first_other)
        core.n_special_single = self._set_template(core.single_template, single_template)
        core.n_special_pair = self._set_template(core.pair_template, pair_template)

    cdef _add_token(self, vector[AddedToken]& tokens, str content, int32_t token_id, bint lstrip, bint rstrip):
        if not content:
            return  # an empty pattern matches nothing (tokenizers skips it too)
        cdef AddedToken token
        token.id = token_id
        token.lstrip = lstrip
        token.rstrip = rstrip
        token.start = <int32_t>self.core.added_cps.size()
        token.length = <int32_t>len(content)
        for ch in content:
            self.core.added_cps.push_back(ord(ch))
        tokens.push_back(token)

    cdef _index_first_chars(self, vector[AddedToken]& tokens, bint* first_ascii, vector[uint32_t]& first_other):
        cdef int c
        for c in range(128):
            first_ascii[c] = False
        cdef uint32_t first
        cdef AddedToken token
        for token in tokens:
            first = self.core.added_cps[token.start]
            if first < 128:
                first_ascii[first] = True
            else:
                first_other.push_back(first)

    cdef Py_ssize_t _set_template(self, vector[TemplatePiece]& template, list pieces):
        cdef TemplatePiece piece
        cdef Py_ssize_t n_special = 0
        for spec in pieces:
            if spec[0] == "special":
                piece.kind = PIECE_SPECIAL
                piece.id = spec[1]
                piece.type_id = spec[2]
                n_special += 1
            else:
                piece.kind = PIECE_SEQ_A if spec[0] == "A" else PIECE_SEQ_B
                piece.id = -1
                piece.type_id = spec[1]
            template.push_back(piece)
        return n_special

    def encode(self, texts, pairs, bint batched, int truncation, Py_ssize_t max_length, int padding,
               Py_ssize_t pad_length, Py_ssize_t pad_to_multiple_of, bint add_special_tokens, bint as_numpy,
               bint with_offsets, int num_threads):
        """Encodes texts (a list of str; pairs a list of str or None), checked by tokenizer.py except
        for each item's type, checked here.

        padding: 0 none, 1 longest in batch, 2 to pad_length. Returns input_ids, token_type_ids,
        attention_mask (and offset_mapping): int64 arrays when as_numpy, else lists (of lists when
        batched).
        """
        # Own references to the strings: while the GIL is released another thread could empty the
        # caller's list and free them.
        texts = tuple(texts)
        if pairs is not None:
            pairs = tuple(pairs)
        cdef Py_ssize_t n_items = len(texts), i, total_chars = 0
        cdef bint has_pair = pairs is not None
        cdef vector[TextView] views_a, views_b
        views_a.resize(n_items)
        if has_pair:
            views_b.resize(n_items)
        for i in range(n_items):
            text = texts[i]
            if not isinstance(text, str):
                raise TypeError(f"batch item {i} must be a str, got {type(text).__name__}")
            set_view(&views_a[i], text)
            total_chars += views_a[i].length
            if has_pair:
                text = pairs[i]
                if not isinstance(text, str):
                    raise TypeError(f"text_pair item {i} must be a str, got {type(text).__name__}")
                set_view(&views_b[i], text)
                total_chars += views_b[i].length
        if total_chars > MAX_TEXT_CHARS:
            raise ValueError(f"the texts hold {total_chars} characters in all; one call takes at most "
                             f"{MAX_TEXT_CHARS} (split the batch)")

        cdef int n_threads = <int>max(1, min(<Py_ssize_t>num_threads, min(n_items, total_chars // CHARS_PER_THREAD)))
        cdef vector[ItemRecord] records_a, records_b
        records_a.resize(n_items)
        if has_pair:
            records_b.resize(n_items)
        cdef vector[Workspace] workspaces
        cdef Workspace* ws
        cdef EncodeJob job
        job.core = &self.core
        job.views_a = views_a.data()
        job.views_b = views_b.data() if has_pair else NULL
        job.records_a = records_a.data()
        job.records_b = records_b.data() if has_pair else NULL
        workspaces.resize(n_threads)
        for i in range(n_threads):
            workspaces[i].batch_tokens.ids.reserve(total_chars // (4 * n_threads) + 16)
            workspaces[i].batch_tokens.offsets.reserve(2 * (total_chars // (4 * n_threads) + 16))
        ws = workspaces.data()
        job.workspaces = ws
        if total_chars < CHARS_PER_THREAD:
            # Little text: on this thread, keeping the GIL.
            for i in range(n_items):
                encode_item(&job, i, 0)
        else:
            with nogil:
                bertcpu_parallel_for(n_items, n_threads, 4, encode_item, &job)

        cdef vector[Tokens] tokens_a, tokens_b
        tokens_a.resize(n_items)
        tokens_b.resize(n_items if has_pair else 0)
        cdef vector[Py_ssize_t] lengths_a, lengths_b, row_lengths
        lengths_a.resize(n_items)
        lengths_b.resize(n_items)
        row_lengths.resize(n_items)
        cdef Py_ssize_t n_special = (self.core.n_special_pair if has_pair else self.core.n_special_single) \
            if add_special_tokens else 0
        cdef Py_ssize_t width = 0
        cdef int error
        for i in range(n_items):
            if records_a[i].error == ERR_SURROGATE:
                raise_surrogate("text", texts[i], i, records_a[i].error_position)
            tokens_a[i] = tokens_of(ws, &records_a[i])
            if has_pair:
                if records_b[i].error == ERR_SURROGATE:
                    raise_surrogate("text_pair", pairs[i], i, records_b[i].error_position)
                tokens_b[i] = tokens_of(ws, &records_b[i])
            error = truncated_lengths(&self.core, tokens_a[i].count, tokens_b[i].count if has_pair else 0, has_pair,
                                      truncation, max_length, add_special_tokens, &lengths_a[i], &lengths_b[i])
            if error == ERR_SECOND_NOT_PROVIDED:
                raise ValueError("truncation='only_second' needs a second sequence (text_pair), but none was given")
            if error == ERR_SEQUENCE_TOO_SHORT:
                only_first = truncation == TRUNCATE_ONLY_FIRST
                raise ValueError(
                    f"cannot truncate item {i} to max_length={max_length} with truncation="
                    f"{'only_first' if only_first else 'only_second'}: its "
                    f"{'first' if only_first else 'second'} sequence has "
                    f"{lengths_a[i] if only_first else lengths_b[i]} tokens, not more than the "
                    f"{lengths_a[i] + lengths_b[i] + n_special - max_length} that would have to go; "
                    "use truncation='longest_first' or a larger max_length")
            row_lengths[i] = lengths_a[i] + lengths_b[i] + n_special
            width = max(width, row_lengths[i])
        if padding == 2:
            width = pad_length
        if padding and pad_to_multiple_of > 0 and width % pad_to_multiple_of:
            width += pad_to_multiple_of - width % pad_to_multiple_of

        cdef const Tokens* seq_b = tokens_b.data() if has_pair else NULL
        if as_numpy:
            return self.to_numpy(tokens_a.data(), seq_b, lengths_a, lengths_b, row_lengths, padding != 0, width,
                                 add_special_tokens, with_offsets, n_threads)
        return self.to_lists(tokens_a.data(), seq_b, lengths_a, lengths_b, row_lengths, padding != 0, width,
                             add_special_tokens, with_offsets, batched)

    cdef object to_numpy(self, const Tokens* seq_a, const Tokens* seq_b, vector[Py_ssize_t]& lengths_a,
                         vector[Py_ssize_t]& lengths_b, vector[Py_ssize_t]& row_lengths, bint padded,
                         Py_ssize_t width, bint add_special, bint with_offsets, int n_threads):
        cdef Py_ssize_t n_items = row_lengths.size(), i
        # Rows longer than the padding target keep their length (as in tokenizers), so the batch is
        # rectangular only if they all end up equally long.
        cdef Py_ssize_t target = width
        if n_items:
            width = max(target, row_lengths[0]) if padded else row_lengths[0]
        for i in range(n_items):
            if (max(target, row_lengths[i]) if padded else row_lengths[i]) != width:
                raise ValueError(
                    "return_tensors='np' needs every sequence to have the same length, but they range "
                    f"from {min(row_lengths)} to {max(row_lengths)} tokens; pass padding=True (or "
                    "'max_length' with a max_length at least the longest, or truncation)")
        ids = np.empty((n_items, width), dtype=np.int64)
        types = np.empty((n_items, width), dtype=np.int64)
        mask = np.empty((n_items, width), dtype=np.int64)
        offsets = np.empty((n_items, width, 2), dtype=np.int64) if with_offsets else None
        cdef FillJob job
        job.core = &self.core
        job.seqs_a = seq_a
        job.seqs_b = seq_b
        job.lengths_a = lengths_a.data()
        job.lengths_b = lengths_b.data()
        job.add_special = add_special
        job.width = width
        job.ids = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>ids)
        job.types = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>types)
        job.mask = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>mask)
        job.offsets = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>offsets) if with_offsets else NULL
        cdef int threads = n_threads if n_items * width >= 1 << 16 else 1
        if threads == 1:  # a small batch: releasing the GIL would cost more than it lets run
            bertcpu_parallel_for(n_items, 1, 16, fill_item, &job)
        else:
            with nogil:
                bertcpu_parallel_for(n_items, threads, 16, fill_item, &job)
        result = self.result_type(input_ids=ids, token_type_ids=types, attention_mask=mask)
        if with_offsets:
            result["offset_mapping"] = offsets
        return result

    cdef object to_lists(self, const Tokens* seq_a, const Tokens* seq_b, vector[Py_ssize_t]& lengths_a,
                         vector[Py_ssize_t]& lengths_b, vector[Py_ssize_t]& row_lengths, bint padded,
                         Py_ssize_t width, bint add_special, bint with_offsets, bint batched):
        cdef Py_ssize_t n_items = row_lengths.size(), i, row_width, longest = 0
        for i in range(n_items):
            longest = max(longest, row_lengths[i])
        cdef vector[int64_t] ids, types, mask, offsets
        ids.resize(max(longest, width))
        types.resize(ids.size())
        mask.resize(ids.size())
        offsets.resize(2 * ids.size() if with_offsets else 0)
        all_ids, all_types, all_mask, all_offsets = [], [], [], []
        for i in range(n_items):
            # A row longer than the padding target stays as long as it is (tokenizers does too).
            row_width = max(width, row_lengths[i]) if padded else row_lengths[i]
            fill_row(&self.core, &seq_a[i], lengths_a[i], &seq_b[i] if seq_b != NULL else NULL, lengths_b[i],
                     seq_b != NULL, add_special, row_width, ids.data(), types.data(), mask.data(),
                     offsets.data() if with_offsets else NULL)
            all_ids.append(id_list(self.id_objects, ids.data(), row_width))
            all_types.append(int_list(types.data(), row_width))
            all_mask.append(int_list(mask.data(), row_width))
            if with_offsets:
                all_offsets.append(pair_list(offsets.data(), row_width))
        if not batched:
            result = self.result_type(input_ids=all_ids[0], token_type_ids=all_types[0],
                                      attention_mask=all_mask[0])
            if with_offsets:
                result["offset_mapping"] = all_offsets[0]
            return result
        result = self.result_type(input_ids=all_ids, token_type_ids=all_types, attention_mask=all_mask)
        if with_offsets:
            result["offset_mapping"] = all_offsets
        return result

    def encode_one(self, text):
        """input_ids, token_type_ids and attention_mask lists of one text (a str) with the special
        tokens and nothing else asked for: the most common call, kept short."""
        cdef vector[Workspace] spare
        cdef Workspace* ws = self.claim_workspace(spare)
        cdef Tokens tokens
        cdef Py_ssize_t width
        try:
            tokens = self.encode_alone(text, ws)
            width = tokens.count + self.core.n_special_single
            if <Py_ssize_t>ws.row_ids.size() < width:
                ws.row_ids.resize(width)
                ws.row_types.resize(width)
                ws.row_mask.resize(width)
            fill_row(&self.core, &tokens, tokens.count, NULL, 0, False, True, width,
                     ws.row_ids.data(), ws.row_types.data(), ws.row_mask.data(), NULL)
            result = self.result_type()
            result["input_ids"] = id_list(self.id_objects, ws.row_ids.data(), width)
            result["token_type_ids"] = int_list(ws.row_types.data(), width)
            result["attention_mask"] = int_list(ws.row_mask.data(), width)
            return result
        finally:
            self.release_workspace(ws)

    def tokens_with_offsets(self, str text):
        """(ids, offsets) of text's tokens, no special tokens added: tokenize() and word-level use."""
        cdef vector[Workspace] spare
        cdef Workspace* ws = self.claim_workspace(spare)
        cdef Tokens tokens
        try:
            tokens = self.encode_alone(text, ws)
            ids = [tokens.ids[i] for i in range(tokens.count)]
            offsets = [(tokens.offsets[2 * i], tokens.offsets[2 * i + 1]) for i in range(tokens.count)]
            return ids, offsets
        finally:
            self.release_workspace(ws)

    cdef Workspace* claim_workspace(self, vector[Workspace]& spare):
        """The tokenizer's own workspace, or one in `spare` while another call holds it. Holding
        the GIL does not keep other calls off a workspace: a garbage collection, which any
        allocation can start while a call builds its Python results, runs finalizers, whose
        bytecode can hand the GIL to another thread (and the finalizer can call the tokenizer
        itself). Give it back with release_workspace()."""
        if self.own_workspace_claimed:
            spare.resize(1)
            return spare.data()
        self.own_workspace_claimed = True
        return &self.own_workspace

    cdef void release_workspace(self, Workspace* ws):
        if ws == &self.own_workspace:
            self.own_workspace_claimed = False

    cdef Tokens encode_alone(self, text, Workspace* ws) except *:
        """The tokens of one text, in ws.batch_tokens."""
        cdef TextView view
        set_view(&view, text)
        if view.length > MAX_TEXT_CHARS:
            raise ValueError(f"the text holds {view.length} characters; one call takes at most {MAX_TEXT_CHARS}")
        cdef Sequence* out = &ws.batch_tokens
        out.ids.clear()
        out.offsets.clear()
        encode_text(&self.core, &view, ws, out)
        if out.error == ERR_SURROGATE:
            raise_surrogate("text", text, 0, out.error_position)
        cdef Tokens tokens
        tokens.ids = out.ids.data()
        tokens.offsets = out.offsets.data()
        tokens.count = out.ids.size()
        return tokens

    def normalize(self, str text):
        """text through the normalizer (for inspection and tests), with each character's source index."""
        cdef TextView view
        set_view(&view, text)
        if view.length > MAX_TEXT_CHARS:
            raise ValueError(f"the text holds {view.length} characters; one call takes at most {MAX_TEXT_CHARS}")
        cdef vector[Workspace] spare
        cdef Workspace* ws = self.claim_workspace(spare)
        try:
            if normalize_range(&self.core, &view, 0, view.length, ws, &ws.batch_tokens) < 0:
                raise_surrogate("text", text, 0, ws.batch_tokens.error_position)
            normalized = "".join([chr(ws.norm_cp[i]) for i in range(ws.norm_cp.size())])
            return normalized, [ws.norm_src[i] for i in range(ws.norm_src.size())]
        finally:
            self.release_workspace(ws)


cdef inline Tokens tokens_of(const Workspace* workspaces, const ItemRecord* record) noexcept nogil:
    cdef const Sequence* stored = &workspaces[record.worker].batch_tokens
    cdef Tokens tokens
    tokens.ids = stored.ids.data() + record.begin
    tokens.offsets = stored.offsets.data() + 2 * record.begin
    tokens.count = record.count
    return tokens


cdef raise_surrogate(str name, str text, Py_ssize_t item, Py_ssize_t position):
    raise ValueError(f"{name} item {item} has a lone surrogate U+{ord(text[position]):04X} at position "
                     f"{position}; only valid Unicode text can be tokenized")


cdef list id_list(tuple id_objects, const int64_t* values, Py_ssize_t n):
    cdef list out = PyList_New(n)
    cdef Py_ssize_t i
    cdef object item
    for i in range(n):
        item = <object>PyTuple_GET_ITEM(id_objects, values[i])
        Py_INCREF(item)
        PyList_SET_ITEM(out, i, item)
    return out


cdef list int_list(const int64_t* values, Py_ssize_t n):
    cdef list out = PyList_New(n)
    cdef Py_ssize_t i
    cdef object item
    for i in range(n):
        item = PyLong_FromLong(values[i])
        Py_INCREF(item)
        PyList_SET_ITEM(out, i, item)
    return out


cdef list pair_list(const int64_t* values, Py_ssize_t n):
    cdef list out = PyList_New(n)
    cdef Py_ssize_t i
    cdef tuple pair
    cdef object start, end
    for i in range(n):
        start = PyLong_FromLong(values[2 * i])
        end = PyLong_FromLong(values[2 * i + 1])
        pair = PyTuple_New(2)
        Py_INCREF(start)
        PyTuple_SET_ITEM(pair, 0, start)
        Py_INCREF(end)
        PyTuple_SET_ITEM(pair, 1, end)
        Py_INCREF(pair)
        PyList_SET_ITEM(out, i, pair)
    return out
