"""The work a benchmark times: shapes, the inputs made for them, their FLOPs, and how many rounds
each shape gets."""
import dataclasses
import math
import re
from typing import Optional

import numpy as np

DEFAULT_SHAPES = ("1x16", "1x128", "8x128", "32x128", "1x512", "mixed")

# "mixed": 32 sequences whose lengths are drawn from 8..128, padded to the longest.
_MIXED_ALIAS = "32x8-128"

# Rounds are cut for shapes that take long, so that a full run stays within minutes: a shape of
# more than _MEDIUM_GFLOP gets half the rounds, one of more than _LARGE_GFLOP a third
# (BERT-base: 1x128 is 22 GFLOP, 8x128 179, 32x128 715).
_MEDIUM_GFLOP = 30.0
_LARGE_GFLOP = 300.0
_MIN_ROUNDS = 3


@dataclasses.dataclass(frozen=True)
class Shape:
    """A batch of `batch` sequences. Fixed length: every sequence has `max_len` tokens. Mixed
    (min_len set): lengths drawn from min_len..max_len with a fixed seed, padded to the longest."""

    batch: int
    max_len: int
    min_len: Optional[int] = None

    @property
    def mixed(self):
        return self.min_len is not None

    @property
    def label(self):
        if self.mixed:
            return f"{self.batch}x{self.min_len}-{self.max_len}"
        return f"{self.batch}x{self.max_len}"


def parse_shape(text):
    """'BxS' (fixed length), 'BxLO-HI' (mixed lengths LO..HI) or 'mixed' (= 32x8-128)."""
    if not isinstance(text, str):
        raise TypeError(f"a shape is a string like '8x128', got {text!r}")
    spec = _MIXED_ALIAS if text.strip().lower() == "mixed" else text.strip().lower()
    match = re.fullmatch(r"(\d+)x(\d+)(?:-(\d+))?", spec)
    if not match:
        raise ValueError(f"shape {text!r}: expected BATCHxSEQ (e.g. 8x128), BATCHxLO-HI for mixed "
                         f"lengths (e.g. 32x8-128) or 'mixed'")
    batch, first, last = int(match[1]), int(match[2]), match[3]
    if last is None:
        shape = Shape(batch, first)
    else:
        shape = Shape(batch, int(last), first)
        if not 1 <= first <= int(last):
            raise ValueError(f"shape {text!r}: the length range {first}-{last} is empty")
    if batch < 1 or shape.max_len < 1:
        raise ValueError(f"shape {text!r}: batch and sequence length must be at least 1")
    return shape


@dataclasses.dataclass
class Batch:
    """Inputs for one shape, as every system receives them (padding on the right)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray  # real tokens per sequence

    @property
    def padded_shape(self):
        return self.input_ids.shape


def make_batch(shape, vocab_size, seed=0):
    """Random token ids (never the padding id 0) for `shape`; the same seed gives the same batch."""
    rng = np.random.default_rng(seed)
    if shape.mixed:
        lengths = rng.integers(shape.min_len, shape.max_len + 1, size=shape.batch)
    else:
        lengths = np.full(shape.batch, shape.max_len)
    seq = int(lengths.max())
    input_ids = rng.integers(1, vocab_size, size=(shape.batch, seq), dtype=np.int64)
    positions = np.arange(seq)[np.newaxis, :]
    attention_mask = (positions < lengths[:, np.newaxis]).astype(np.int64)
    input_ids *= attention_mask
    token_type_ids = np.zeros_like(input_ids)
    return Batch(input_ids, attention_mask, token_type_ids, lengths.astype(np.int64))


def encoder_flops(config, lengths):
    """Useful floating-point operations of one forward pass over sequences of `lengths` real
    tokens (a multiply-add counts 2; padding counts nothing): encoder_flop_counts' total."""
    return encoder_flop_counts(config, lengths)["total"]


def encoder_flop_counts(config, lengths):
    """{"dense", "attention", "total"}: the floating-point operations of one forward pass over
    sequences of `lengths` real tokens (a multiply-add counts 2; padding counts nothing).

    Per layer and token, the dense products: Q, K, V and attention output (4 * H * H multiply-adds)
    and the feed-forward pair (2 * H * I): 2 * (4*H*H + 2*H*I) FLOPs. Per layer and sequence of
    length L, attention: scores Q K^T and the weighted sum of V, L*L*H multiply-adds each:
    4 * L*L * H FLOPs. Embedding sums, LayerNorm, softmax, GELU and the pooler are left out (well
    under 1% for BERT). BERT-base at 128 tokens: 22.35 GFLOP per sequence.
    """
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    lengths = [int(n) for n in lengths]
    dense = layers * 2 * (4 * hidden * hidden + 2 * hidden * inner) * sum(lengths)
    attention = layers * 4 * hidden * sum(n * n for n in lengths)
    return {"dense": dense, "attention": attention, "total": dense + attention}


def rounds_for(rounds, gflop):
    """The rounds a shape of `gflop` useful GFLOP gets when big shapes run fewer rounds."""
    if gflop > _LARGE_GFLOP:
        return max(_MIN_ROUNDS, math.ceil(rounds / 3))
    if gflop > _MEDIUM_GFLOP:
        return max(_MIN_ROUNDS, math.ceil(rounds / 2))
    return rounds
