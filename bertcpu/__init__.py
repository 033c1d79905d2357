"""bertcpu: fast, faithful CPU inference for BERT-family encoders.

Public names only; each lives in the module that owns it.
"""
from .runtime import cpu_info, get_num_threads, set_num_threads
from .tokenizer import Tokenizer
from .model import BertModel
from .sentence import SentenceEncoder, similarity
from .heads import (BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification,
                    CrossEncoder, SparseEncoder, SparseVector)

__version__ = "0.1.0"

__all__ = [
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "CrossEncoder",
    "SentenceEncoder",
    "SparseEncoder",
    "SparseVector",
    "Tokenizer",
    "cpu_info",
    "get_num_threads",
    "set_num_threads",
    "similarity",
]
