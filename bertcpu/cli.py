"""The `bertcpu` command: embed, tokenize, inspect, bench.

    bertcpu embed --model M [TEXT ... | --input FILE|-] [--field NAME] [--output FILE]
    bertcpu tokenize --model M TEXT ...
    bertcpu inspect [M | config.json | --config bert-base]
    bertcpu bench [--model M] [--batch B] [--seq S] [--threads T] [--compare torch,...] [--json FILE]

Mistakes a user can make (a missing model, an unreadable file, a bad field name, a bad option)
end the command with one line on stderr and exit status 1 (2 for a malformed command line), never
with a traceback.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

from . import __version__
from .benchmark import SYSTEMS
from .model import DTYPES

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away

_BUILTIN_CONFIGS = ("bert-base",)


class UserError(Exception):
    """A mistake in what the user asked for; reported as one line, without a traceback."""


# ---------------------------------------------------------------------------------------------
# Command-line parsing
# ---------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, but a malformed command line is one line on stderr rather than usage + error."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser():
    parser = _Parser(prog="bertcpu", description="Fast, faithful CPU inference for BERT encoders.")
    parser.add_argument("--version", action="version", version=f"bertcpu {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

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
    embed.add_argument("--batch-size", type=_positive_int, default=32, metavar="N")
    embed.add_argument("--threads", type=_positive_int, metavar="N",
                       help="engine and tokenizer threads (default: the CPUs available)")
    embed.add_argument("--max-length", type=_positive_int, metavar="N",
                       help="truncate inputs to N tokens (default: the model's max_seq_length)")
    embed.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                       help="L2-normalize the vectors (default: as the model's pipeline does)")
    embed.add_argument("--prompt", help="text put before every input (e.g. 'query: ')")
    embed.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="what the dense layers compute in (default float32; bfloat16 and int8 "
                            "are faster and approximate)")
    embed.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    embed.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run on a Ray cluster (ADDRESS, e.g. HOST:6379 or ray://HOST:10001; "
                            "without it, a running local cluster or a new one): --input is "
                            "Parquet or JSON lines (file, folder or URI), --output a folder of "
                            "such files, --field the text column (default text). Needs "
                            "bertcpu[ray]")
    embed.set_defaults(handler=cmd_embed)

    tokenize = commands.add_parser(
        "tokenize", help="show the tokens and ids a model sees for some text",
        description="Tokenize TEXT as `embed` would (lowercasing and truncation included) and "
                    "print each token with its id.")
    tokenize.add_argument("texts", nargs="+", metavar="TEXT")
    tokenize.add_argument("--model", "-m", required=True, help="model folder or HuggingFace model id")
    tokenize.add_argument("--max-length", type=_positive_int, metavar="N",
                          help="truncate to N tokens (default: the model's max_seq_length)")
    tokenize.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tokenize.set_defaults(handler=cmd_tokenize)

    inspect = commands.add_parser(
        "inspect", help="configuration, parameter table and FLOPs of a model",
        description="Print a model's configuration, every parameter tensor with its shape, the "
                    "parameter count per part with totals, and the FLOPs per token. MODEL is a "
                    "model folder, a HuggingFace model id or a config.json file.")
    inspect.add_argument("model", nargs="?", metavar="MODEL")
    inspect.add_argument("--config", choices=_BUILTIN_CONFIGS,
                         help="inspect a built-in configuration instead of a model")
    inspect.add_argument("--seq", type=_positive_int, default=128, metavar="S",
                         help="sequence length for the attention FLOPs (default 128)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of tables")
    inspect.set_defaults(handler=cmd_inspect)

    bench = commands.add_parser(
        "bench", help="measure latency and throughput",
        description="Time the encoder on random token ids. Without --model, a random-weight "
                    "BERT-base built in memory (no download).")
    bench.add_argument("--model", "-m", help="model folder or HuggingFace model id")
    bench.add_argument("--batch", type=_positive_int, default=8, metavar="B")
    bench.add_argument("--seq", type=_positive_int, default=128, metavar="S")
    bench.add_argument("--threads", type=_positive_int, metavar="T")
    bench.add_argument("--rounds", type=_positive_int, default=10, metavar="R",
                       help="timed runs after the warm-up (default 10); the median is reported")
    bench.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="what bertcpu's dense layers compute in (default float32)")
    bench.add_argument("--compare", metavar="PEERS",
                       help="also run these peers, comma-separated: " + ",".join(_PEERS))
    bench.add_argument("--json", metavar="FILE", help="also write the full report as JSON to FILE")
    bench.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except UserError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(_describe_os_error(error))
    except ValueError as error:
        # The library's ValueErrors describe bad input (a broken config, an unreadable file).
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    return 0


def _fail(message, status=EXIT_ERROR):
    if isinstance(sys.exc_info()[1], BrokenPipeError):
        # The reader of our output went away (e.g. `| head`): nothing left to tell it.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    first_line = " ".join(message.split())
    sys.stderr.write(f"bertcpu: error: {first_line}\n")
    sys.stderr.flush()
    return status


def _silence_stdout():
    # Point stdout at /dev/null so the interpreter's final flush does not raise again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _describe_os_error(error):
    if isinstance(error, BrokenPipeError):
        return "broken pipe"
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return error.strerror or str(error)


# ---------------------------------------------------------------------------------------------
# embed
# ---------------------------------------------------------------------------------------------

# Texts read and embedded at a time: enough batches to sort by length, bounded memory whatever
# the input's size.
_CHUNK_BATCHES = 64


def cmd_embed(args):
    if args.ray is not None:
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

    from .sentence import ProgressBar, SentenceEncoder

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
    from .ray import embed_files, job_failure_message

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


# ---------------------------------------------------------------------------------------------
# tokenize
# ---------------------------------------------------------------------------------------------

def cmd_tokenize(args):
    from .sentence import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(args.model)
    if args.max_length is not None:
        encoder.max_seq_length = args.max_length
    encoded = encoder.tokenize(args.texts)
    results = []
    for row, text in enumerate(args.texts):
        length = int(encoded["attention_mask"][row].sum())
        ids = [int(i) for i in encoded["input_ids"][row, :length]]
        results.append({"text": text, "tokens": encoder.tokenizer.convert_ids_to_tokens(ids),
                        "ids": ids})
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return
    for number, result in enumerate(results):
        if number:
            print()
        print(f"{json.dumps(result['text'], ensure_ascii=False)}: {len(result['ids'])} tokens")
        width = max(len(str(i)) for i in result["ids"])
        for position, (token, token_id) in enumerate(zip(result["tokens"], result["ids"])):
            print(f"  {position:4d}  {token_id:>{width}d}  {token}")


# ---------------------------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------------------------

def parameter_table(config, with_pooler=True):
    """Every parameter tensor of a BERT encoder: (group, name, shape), in transformers' order.

    Groups: "embeddings", "layer {i} attention", "layer {i} feed-forward", "pooler".
    """
    hidden, inner = config.hidden_size, config.intermediate_size
    table = [
        ("embeddings", "embeddings.word_embeddings.weight", (config.vocab_size, hidden)),
        ("embeddings", "embeddings.position_embeddings.weight",
         (config.max_position_embeddings, hidden)),
        ("embeddings", "embeddings.token_type_embeddings.weight", (config.type_vocab_size, hidden)),
        ("embeddings", "embeddings.LayerNorm.weight", (hidden,)),
        ("embeddings", "embeddings.LayerNorm.bias", (hidden,)),
    ]
    for i in range(config.num_hidden_layers):
        prefix = f"encoder.layer.{i}."
        attention = f"layer {i} attention"
        for name in ("query", "key", "value"):
            table.append((attention, f"{prefix}attention.self.{name}.weight", (hidden, hidden)))
            table.append((attention, f"{prefix}attention.self.{name}.bias", (hidden,)))
        table += [
            (attention, f"{prefix}attention.output.dense.weight", (hidden, hidden)),
            (attention, f"{prefix}attention.output.dense.bias", (hidden,)),
            (attention, f"{prefix}attention.output.LayerNorm.weight", (hidden,)),
            (attention, f"{prefix}attention.output.LayerNorm.bias", (hidden,)),
        ]
        ffn = f"layer {i} feed-forward"
        table += [
            (ffn, f"{prefix}intermediate.dense.weight", (inner, hidden)),
            (ffn, f"{prefix}intermediate.dense.bias", (inner,)),
            (ffn, f"{prefix}output.dense.weight", (hidden, inner)),
            (ffn, f"{prefix}output.dense.bias", (hidden,)),
            (ffn, f"{prefix}output.LayerNorm.weight", (hidden,)),
            (ffn, f"{prefix}output.LayerNorm.bias", (hidden,)),
        ]
    if with_pooler:
        table += [("pooler", "pooler.dense.weight", (hidden, hidden)),
                  ("pooler", "pooler.dense.bias", (hidden,))]
    return table


def flops_per_token(config, seq_len):
    """Floating-point operations per token of one forward pass over a sequence of seq_len tokens,
    as {"dense", "attention", "total"} (the counts of bertcpu.benchmark.encoder_flop_counts)."""
    from .benchmark import encoder_flop_counts

    counts = encoder_flop_counts(config, [seq_len])
    return {part: count // seq_len for part, count in counts.items()}


def _inspect_source(args):
    """(description, BertConfig, with_pooler, sentence pipeline or None) for inspect's argument."""
    from .config import BertConfig

    if args.config is not None:
        if args.model is not None:
            raise UserError("give MODEL or --config, not both")
        return f"built-in {args.config} configuration", BertConfig(), True, None
    if args.model is None:
        raise UserError("nothing to inspect: give a model folder, a model id, a config.json file "
                        "or --config bert-base")
    if os.path.isfile(args.model):
        return args.model, BertConfig.from_json_file(args.model), True, None

    from .hub import resolve_model_path
    from .sentence import find_transformer_folder, read_modules_json
    from .weights import Checkpoint

    root = resolve_model_path(args.model)
    folder = find_transformer_folder(root)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder}: no config.json (not a BERT model folder)")
    config = BertConfig.from_json_file(config_file)
    try:
        with Checkpoint(folder) as checkpoint:
            with_pooler = "pooler.dense.weight" in checkpoint
    except FileNotFoundError:
        with_pooler = True  # a config without weights: a transformers BertModel has a pooler
    pipeline = None
    if (root / "modules.json").is_file():
        pipeline = [str(entry.get("type")).rsplit(".", 1)[-1] for entry in read_modules_json(root)]
    return str(root), config, with_pooler, pipeline


def inspect_report(config, with_pooler, seq_len):
    """The numbers inspect prints, as a dictionary (also the --json output)."""
    table = parameter_table(config, with_pooler)
    tensors = [{"group": group, "name": name, "shape": list(shape), "count": math.prod(shape)}
               for group, name, shape in table]
    groups = {}
    for tensor in tensors:
        groups[tensor["group"]] = groups.get(tensor["group"], 0) + tensor["count"]
    total = sum(t["count"] for t in tensors)
    biases = sum(t["count"] for t in tensors if t["name"].endswith(".bias"))
    embeddings_without_layernorm = sum(t["count"] for t in tensors if t["group"] == "embeddings"
                                       and "LayerNorm" not in t["name"])
    return {
        "config": {key: value for key, value in config.to_dict().items() if key != "architectures"},
        "with_pooler": with_pooler,
        "tensors": tensors,
        "groups": groups,
        "totals": {
            "parameters": total,
            "without_biases": total - biases,
            "biases": biases,
            "embeddings_without_layernorm": embeddings_without_layernorm,
            "per_layer": groups["layer 0 attention"] + groups["layer 0 feed-forward"],
        },
        "seq_len": seq_len,
        "flops_per_token": flops_per_token(config, seq_len),
    }


def cmd_inspect(args):
    description, config, with_pooler, pipeline = _inspect_source(args)
    report = inspect_report(config, with_pooler, args.seq)
    report["source"] = description
    if pipeline is not None:
        report["sentence_transformers_modules"] = pipeline
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"model: {description}")
    if pipeline is not None:
        print(f"sentence-transformers pipeline: {' -> '.join(pipeline)}")
    print("\nconfig:")
    for key, value in report["config"].items():
        print(f"  {key:<26} {value}")

    print("\nparameters:")
    name_width = max(len(t["name"]) for t in report["tensors"]) + 2
    print(f"  {'tensor':<{name_width}}{'shape':>14}{'count':>15}")
    current_group = None
    for tensor in report["tensors"]:
        if tensor["group"] != current_group:
            if current_group is not None:
                _print_subtotal(current_group, report["groups"][current_group], name_width)
            current_group = tensor["group"]
            print(f"  [{current_group}]")
        shape = " x ".join(str(d) for d in tensor["shape"])
        print(f"  {tensor['name']:<{name_width}}{shape:>14}{tensor['count']:>15,}")
        if tensor["name"] == "embeddings.token_type_embeddings.weight":
            print(f"  {'  embeddings without LayerNorm':<{name_width}}{'':>14}"
                  f"{report['totals']['embeddings_without_layernorm']:>15,}")
    _print_subtotal(current_group, report["groups"][current_group], name_width)
    if not with_pooler:
        print("  (no pooler weights in this checkpoint)")

    totals = report["totals"]
    layers = config.num_hidden_layers
    print("\ntotals:")
    rows = [
        ("embeddings", report["groups"]["embeddings"]),
        (f"encoder ({layers} layers x {totals['per_layer']:,})", totals["per_layer"] * layers),
    ]
    if with_pooler:
        rows.append(("pooler", report["groups"]["pooler"]))
    rows += [
        ("all parameters", totals["parameters"]),
        ("without biases", totals["without_biases"]),
        ("biases (Linear and LayerNorm)", totals["biases"]),
    ]
    for label, value in rows:
        print(f"  {label:<40}{value:>17,}")
    print(f"  {'':<40}{'(' + _millions(totals['parameters']) + ')':>17}")

    flops = report["flops_per_token"]
    print(f"\nFLOPs per token (multiply-add = 2), sequence length {args.seq}:")
    print(f"  {'dense layers':<40}{flops['dense']:>17,}")
    print(f"  {'attention (grows with the sequence)':<40}{flops['attention']:>17,}")
    print(f"  {'total':<40}{flops['total']:>17,}  ({flops['total'] / 1e9:.3f} GFLOP)")


def _print_subtotal(group, count, name_width):
    print(f"  {'  ' + group + ' total':<{name_width}}{'':>14}{count:>15,}")


def _millions(count):
    return f"{count / 1e6:.1f}M"


# ---------------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------------

def cmd_bench(args):
    from . import benchmark, runtime
    from .config import BertConfig

    peers = _parse_peers(args.compare)
    if args.json is not None:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise UserError(f"--json {args.json}: folder {folder} does not exist")
    installed = benchmark.installed_systems()
    for peer in [p for p in peers if p not in installed]:
        sys.stderr.write(f"bertcpu: {peer} is not installed: left out of the comparison\n")
    ours = {"float32": "bertcpu", "bfloat16": "bertcpu-bf16", "int8": "bertcpu-int8"}[args.dtype]
    systems = [ours] + [p for p in peers if p in installed]

    if args.model is None:
        model, model_name = BertConfig(), "random-weight BERT-base"
    else:
        from .hub import resolve_model_path
        from .sentence import find_transformer_folder

        model = find_transformer_folder(resolve_model_path(args.model))
        model_name = args.model
    threads = args.threads if args.threads is not None else runtime.get_num_threads()
    log = None if args.quiet else _log
    report = benchmark.run_benchmark(model, systems=systems, shapes=[f"{args.batch}x{args.seq}"],
                                     threads=threads, rounds=args.rounds, reduce_big_rounds=False,
                                     model_name=model_name, log=log)
    _print_bench(report)
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=2)
            f.write("\n")


def _log(message):
    sys.stderr.write(f"bertcpu bench: {message}\n")
    sys.stderr.flush()


def _print_bench(report):
    config = report.config
    shape = report.shapes[0]
    print(f"model: {report.model} ({config['num_hidden_layers']} layers, hidden "
          f"{config['hidden_size']}), batch {shape.batch} x seq {shape.padded_seq}, "
          f"{report.threads} thread(s), median of {shape.rounds} runs, "
          f"{shape.gflop:.2f} GFLOP per batch")
    if report.peak:
        print(f"fp32 peak: {report.peak.gflops:.1f} GFLOP/s ({report.peak.method})")
    header = (f"{'system':<17}{'latency ms':>11}{'seq/s':>10}{'tokens/s':>11}{'GFLOP/s':>9}"
              f"{'% peak':>8}{'bertcpu speedup':>17}{'max abs diff':>14}")
    print(header)
    for result in shape.systems:
        peak = f"{result.percent_of_peak:.0f}%" if result.percent_of_peak is not None else "n/a"
        # speedup_of_bertcpu: this system's time over bertcpu's.
        speed = ("" if result.system.startswith("bertcpu") or result.speedup_of_bertcpu is None
                 else f"{result.speedup_of_bertcpu:.2f}x")
        if result.system == report.reference:
            diff = "(reference)"
        else:
            diff = f"{result.max_abs_diff:.1e}" if result.max_abs_diff is not None else ""
        print(f"{result.system:<17}{result.median_ms:>11.2f}{result.sequences_per_s:>10.1f}"
              f"{result.tokens_per_s:>11.0f}{result.gflops:>9.1f}{peak:>8}{speed:>17}{diff:>14}")


_PEERS = tuple(name for name in SYSTEMS if not name.startswith("bertcpu"))


def _parse_peers(text):
    if text is None:
        return []
    peers = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in peers if name not in _PEERS]
    if unknown or not peers:
        raise UserError(f"--compare {text!r}: peers are {', '.join(_PEERS)} (comma-separated)")
    return list(dict.fromkeys(peers))
