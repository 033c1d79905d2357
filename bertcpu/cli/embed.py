"""`bertcpu embed`: sentence embeddings for text arguments, a file or stdin, streamed in chunks."""
import argparse
import json
import os
import sys

import numpy as np

from ..model import DTYPES
from ._common import UserError, positive_int


def add_command(commands):
    embed = commands.add_parser(
        "embed", help="sentence embeddings for text arguments, a file or stdin",
        description="Embed sentences with a sentence-transformers (or plain BERT) model. Input: "
                    "TEXT arguments, or --input FILE (- for stdin) with one text per line, or JSON "
                    "lines with --field. Output: .npy, .jsonl, or JSON lines on stdout.")
    embed.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    embed.add_argument("--model", "-m", required=True, help="model folder or HuggingFace model id")
    embed.add_argument("--input", "-i", metavar="FILE",
                       help="read texts from FILE, one per line (- for stdin)")
    embed.add_argument("--field", metavar="NAME",
                       help="the input is JSON lines; embed the string in field NAME of each")
    embed.add_argument("--output", "-o", metavar="FILE",
                       help="write FILE.npy (float32 [n, dim]) or FILE.jsonl (text + embedding); "
                            "default: JSON lines on stdout")
    embed.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    embed.add_argument("--threads", type=positive_int, metavar="N",
                       help="engine and tokenizer threads (default: the CPUs available)")
    embed.add_argument("--max-length", type=positive_int, metavar="N",
                       help="truncate inputs to N tokens (default: the model's max_seq_length)")
    embed.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                       help="L2-normalize the vectors (default: as the model's pipeline does)")
    embed.add_argument("--prompt", help="text put before every input (e.g. 'query: ')")
    embed.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="what the dense layers compute in (default float32; bfloat16 and int8 "
                            "are faster and approximate)")
    embed.add_argument("--sparse", action="store_true",
                       help="SPLADE sparse embeddings (a SparseEncoder or BertForMaskedLM model): "
                            "JSON lines with the non-zero dimensions (indices) and their values")
    embed.add_argument("--max-active-dims", type=positive_int, metavar="K",
                       help="with --sparse: keep the K largest values of each vector")
    embed.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    embed.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run on a Ray cluster (ADDRESS, e.g. HOST:6379 or ray://HOST:10001; "
                            "without it, a running local cluster or a new one): --input is "
                            "Parquet or JSON lines (file, folder or URI), --output a folder of "
                            "such files, --field the text column (default text). Needs "
                            "bertcpu[ray]")
    embed.set_defaults(handler=run)


# Texts read and embedded at a time: enough batches to sort by length, bounded memory whatever
# the input's size.
_CHUNK_BATCHES = 64


def run(args):
    if args.ray is not None:
        if args.sparse:
            raise UserError("--sparse does not run on Ray (yet): embed without --ray")
        return _embed_on_ray(args)
    if args.texts and args.input is not None:
        raise UserError("give TEXT arguments or --input, not both")
    if not args.texts and args.input is None:
        raise UserError("nothing to embed: give TEXT arguments or --input FILE (- for stdin)")
    if args.field is not None and args.input is None:
        raise UserError("--field applies to --input (JSON lines); TEXT arguments are plain text")
    if args.input is not None and args.input != "-":
        if not os.path.isfile(args.input):
            raise UserError(f"{args.input}: no such file" if not os.path.exists(args.input)
                            else f"{args.input}: not a regular file")
        if args.field is None and args.input.endswith((".jsonl", ".ndjson")):
            raise UserError(f"{args.input} looks like JSON lines: name the text field with --field")
    output_kind = _output_kind(args.output)
    if args.sparse:
        return _embed_sparse(args, output_kind)
    if args.max_active_dims is not None:
        raise UserError("--max-active-dims applies to --sparse embeddings")

    from ..sentence import ProgressBar, SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(args.model, num_threads=args.threads,
                                              dtype=args.dtype)
    if args.max_length is not None:
        encoder.max_seq_length = args.max_length
    dimension = encoder.get_embedding_dimension()

    texts = iter(args.texts) if args.texts else _read_texts(args.input, args.field)
    progress = None
    if not args.quiet and sys.stderr.isatty():
        total = len(args.texts) if args.texts else _count_lines(args.input, args.field)
        progress = ProgressBar(total=total, unit="texts")

    writer = _open_writer(output_kind, args.output, dimension)
    try:
        chunk_size = args.batch_size * _CHUNK_BATCHES
        for chunk in _chunks(texts, chunk_size):
            vectors = encoder.encode(chunk, batch_size=args.batch_size,
                                     normalize_embeddings=args.normalize, prompt=args.prompt,
                                     show_progress_bar=progress)
            writer.write(chunk, vectors)
    except BaseException:
        writer.abort()
        raise
    finally:
        if progress is not None:
            progress.close()
    writer.close()


def _embed_sparse(args, output_kind):
    if output_kind == "npy":
        raise UserError("--sparse writes JSON lines (.jsonl or stdout), not .npy")
    if args.normalize is not None:
        raise UserError("--normalize does not apply to --sparse embeddings")
    from ..heads import SparseEncoder

    encoder = SparseEncoder.from_pretrained(args.model, max_seq_length=args.max_length,
                                            max_active_dims=args.max_active_dims,
                                            num_threads=args.threads, dtype=args.dtype)
    texts = iter(args.texts) if args.texts else _read_texts(args.input, args.field)
    writer = _JsonlWriter(args.output if output_kind == "jsonl" else None)
    try:
        for chunk in _chunks(texts, args.batch_size * _CHUNK_BATCHES):
            vectors = encoder.encode(chunk, batch_size=args.batch_size, prompt=args.prompt)
            writer.write_sparse(chunk, vectors)
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _embed_on_ray(args):
    if args.texts:
        raise UserError("--ray embeds files: give --input (Parquet or JSON lines), "
                        "not TEXT arguments")
    if args.input is None or args.input == "-":
        raise UserError("--ray needs --input: a Parquet or JSON lines file, folder or URI "
                        "(not stdin)")
    if args.output is None or args.output == "-":
        raise UserError("--ray needs --output: the folder to write Parquet or JSON lines "
                        "files into")
    try:
        import ray.exceptions
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'bertcpu[ray]'") from None
    from ..ray import embed_files, job_failure_message

    try:
        rows = embed_files(args.input, args.output, args.model, column=args.field or "text",
                           address=args.ray or None, num_threads=args.threads,
                           encode_batch_size=args.batch_size, normalize_embeddings=args.normalize,
                           prompt=args.prompt, max_seq_length=args.max_length, dtype=args.dtype)
    except ray.exceptions.RayError as error:
        raise UserError(f"the Ray job failed: {job_failure_message(error)}") from None
    if not args.quiet:
        sys.stderr.write(f"bertcpu: embedded {rows} rows into {args.output}\n")


def _output_kind(output):
    if output is None or output == "-":
        return "stdout"
    if output.endswith(".npy"):
        kind = "npy"
    elif output.endswith(".jsonl"):
        kind = "jsonl"
    else:
        raise UserError(f"--output {output}: unsupported format; name it .npy or .jsonl "
                        f"(or leave it out for JSON lines on stdout)")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UserError(f"--output {output}: folder {folder} does not exist")
    return kind


def _chunks(iterable, size):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _open_input(path):
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def _read_texts(path, field):
    """Texts of FILE (- for stdin), one per line, or the `field` of each JSON line; streamed."""
    name = "stdin" if path == "-" else path
    stream = _open_input(path)
    try:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise UserError(f"{name}: line {number} is not valid UTF-8 ({error.reason} at byte "
                                f"{error.start})") from None
            line = line.rstrip("\n").rstrip("\r")
            if field is None:
                yield line
            elif line.strip():  # JSON lines files may have blank lines (a trailing newline, ...)
                yield _field_of(line, field, name, number)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _field_of(line, field, name, number):
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{name}: line {number} is not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise UserError(f"{name}: line {number} is a JSON {type(record).__name__}, not an object")
    if field not in record:
        fields = ", ".join(map(repr, list(record)[:10])) or "none"
        raise UserError(f"{name}: line {number} has no field {field!r} (its fields: {fields})")
    value = record[field]
    if not isinstance(value, str):
        raise UserError(f"{name}: line {number}: field {field!r} is a {type(value).__name__}, "
                        f"not a string")
    return value


def _count_lines(path, field):
    """How many texts FILE holds (for the progress bar); None for stdin, which cannot be re-read."""
    if path == "-":
        return None
    count = 0
    with open(path, "rb") as f:
        if field is None:
            last = b"\n"
            while block := f.read(1 << 20):
                count += block.count(b"\n")
                last = block[-1:]
            return count + (last != b"\n")  # a last line without a newline
        return sum(1 for raw in f if raw.strip())


class _NpyWriter:
    """Streams float32 rows into a .npy file whose header is completed on close.

    The header is written first with a fixed size, then rewritten with the final row count; the
    file is built under a temporary name and renamed into place, so a failure leaves nothing.
    """

    _HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + the padded header dictionary

    def __init__(self, path, dimension):
        self.path = path
        self.partial = path + ".partial"
        self.dimension = dimension
        self.rows = 0
        self.file = open(self.partial, "wb")
        self.file.write(self._header())

    def _header(self):
        text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (
            self.rows, self.dimension)
        length = self._HEADER_BYTES - 10
        text = text.ljust(length - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + length.to_bytes(2, "little") + text.encode("latin1")

    def write(self, texts, vectors):
        self.file.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self.rows += len(vectors)

    def close(self):
        self.file.seek(0)
        self.file.write(self._header())
        self.file.close()
        os.replace(self.partial, self.path)

    def abort(self):
        self.file.close()
        os.remove(self.partial)


class _JsonlWriter:
    """One JSON object per text: {"text": ..., "embedding": [...]}, to a file or stdout."""

    def __init__(self, path):
        self.path = path
        if path is None:
            self.partial = None
            self.stream = sys.stdout
        else:
            self.partial = path + ".partial"
            self.stream = open(self.partial, "w", encoding="utf-8")

    def write(self, texts, vectors):
        lines = []
        for text, vector in zip(texts, vectors):
            # 9 significant digits: every float32 reads back exactly.
            numbers = ",".join("%.9g" % value for value in vector.tolist())
            lines.append('{"text":%s,"embedding":[%s]}\n' % (json.dumps(text, ensure_ascii=False),
                                                            numbers))
        self.stream.write("".join(lines))

    def write_sparse(self, texts, vectors):
        lines = []
        for text, vector in zip(texts, vectors):
            indices = ",".join(map(str, vector.indices.tolist()))
            values = ",".join("%.9g" % value for value in vector.values.tolist())
            lines.append('{"text":%s,"indices":[%s],"values":[%s]}\n'
                         % (json.dumps(text, ensure_ascii=False), indices, values))
        self.stream.write("".join(lines))

    def close(self):
        if self.partial is None:
            self.stream.flush()
            return
        self.stream.close()
        os.replace(self.partial, self.path)

    def abort(self):
        if self.partial is not None:
            self.stream.close()
            os.remove(self.partial)


def _open_writer(kind, path, dimension):
    if kind == "npy":
        return _NpyWriter(path, dimension)
    return _JsonlWriter(path if kind == "jsonl" else None)
