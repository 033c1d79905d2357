"""Task heads on the BERT encoder: sequence and token classification, masked LM, and the
sentence-transformers models built on them (CrossEncoder rerankers, SPLADE SparseEncoder).
One module per task; _common holds the two-stage (tokenize, then token-level batch) plumbing."""
from ._common import Tokens
from .cross_encoder import CrossEncoder
from .masked_lm import BertForMaskedLM
from .sequence_classification import BertForSequenceClassification
from .sparse import SparseEncoder, SparseVector, to_dense
from .token_classification import BertForTokenClassification

__all__ = ["BertForMaskedLM", "BertForSequenceClassification", "BertForTokenClassification",
           "CrossEncoder", "SparseEncoder", "SparseVector", "Tokens", "to_dense"]
