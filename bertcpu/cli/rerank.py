"""`bertcpu rerank`: documents ranked against a query by a cross-encoder."""
import json
import os
import sys

from ..model import DTYPES
from ._common import UserError, positive_int


def add_command(commands):
    rerank = commands.add_parser(
        "rerank", help="rank documents against a query with a cross-encoder",
        description="Score every document of FILE (one per line; - for stdin) against --query with "
                    "a cross-encoder (reranker) and print them best first, one JSON object per "
                    "line: corpus_id (the line number from 0), score, text.")
    rerank.add_argument("model", metavar="MODEL", help="cross-encoder folder or HuggingFace model id")
    rerank.add_argument("--query", "-q", required=True)
    rerank.add_argument("--docs", "-d", required=True, metavar="FILE",
                        help="the documents, one per line (- for stdin)")
    rerank.add_argument("--top-k", "-k", type=positive_int, metavar="K", help="print the best K only")
    rerank.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    rerank.add_argument("--max-length", type=positive_int, metavar="N",
                        help="truncate each (query, document) pair to N tokens")
    rerank.add_argument("--threads", type=positive_int, metavar="N")
    rerank.add_argument("--dtype", choices=DTYPES, default="float32")
    rerank.set_defaults(handler=run)


def read_lines(path, what):
    """The lines of FILE (- for stdin) without their line ends."""
    if path != "-" and not os.path.isfile(path):
        raise UserError(f"{path}: no such file" if not os.path.exists(path) else f"{path}: not a regular file")
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        data = stream.read()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
    lines = text.splitlines()
    if not lines:
        raise UserError(f"{path}: no {what}")
    return lines


def run(args):
    documents = read_lines(args.docs, "documents")
    from ..heads import CrossEncoder

    encoder = CrossEncoder.from_pretrained(args.model, max_length=args.max_length,
                                           num_threads=args.threads, dtype=args.dtype)
    if encoder.num_labels != 1:
        raise UserError(f"{args.model}: rerank needs a one-label cross-encoder; this model has "
                        f"{encoder.num_labels} labels (use bertcpu classify)")
    ranked = encoder.rank(args.query, documents, top_k=args.top_k, return_documents=True,
                          batch_size=args.batch_size)
    sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ranked))
