"""`bertcpu inspect`: a model's configuration, parameter table and FLOPs per token."""
import json
import math
import os

from .._files import read_json
from ._common import UserError, positive_int

BUILTIN_CONFIGS = ("bert-base",)


def add_command(commands):
    inspect = commands.add_parser(
        "inspect", help="configuration, parameter table and FLOPs of a model",
        description="Print a model's configuration, every parameter tensor with its shape, the "
                    "parameter count per part with totals, and the FLOPs per token. MODEL is a "
                    "model folder, a HuggingFace model id or a config.json file.")
    inspect.add_argument("model", nargs="?", metavar="MODEL")
    inspect.add_argument("--config", choices=BUILTIN_CONFIGS,
                         help="inspect a built-in configuration instead of a model")
    inspect.add_argument("--seq", type=positive_int, default=128, metavar="S",
                         help="sequence length for the attention FLOPs (default 128)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of tables")
    inspect.set_defaults(handler=run)


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
    from ..benchmark import encoder_flop_counts

    counts = encoder_flop_counts(config, [seq_len])
    return {part: count // seq_len for part, count in counts.items()}


def _inspect_source(args):
    """(description, BertConfig, with_pooler, sentence pipeline or None, head description or None)
    for inspect's argument."""
    from ..config import BertConfig

    if args.config is not None:
        if args.model is not None:
            raise UserError("give MODEL or --config, not both")
        return f"built-in {args.config} configuration", BertConfig(), True, None, None
    if args.model is None:
        raise UserError("nothing to inspect: give a model folder, a model id, a config.json file "
                        "or --config bert-base")
    if os.path.isfile(args.model):
        return args.model, BertConfig.from_json_file(args.model), True, None, None

    from ..hub import resolve_model_path
    from ..sentence import find_transformer_folder, read_modules_json
    from ..weights import Checkpoint

    root = resolve_model_path(args.model)
    folder = find_transformer_folder(root)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"{folder}: no config.json (not a BERT model folder)")
    config = BertConfig.from_json_file(config_file)
    head = None
    try:
        with Checkpoint(folder) as checkpoint:
            with_pooler = "pooler.dense.weight" in checkpoint
            head = describe_head(read_json(config_file), checkpoint)
    except FileNotFoundError:
        with_pooler = True  # a config without weights: a transformers BertModel has a pooler
    pipeline = None
    if (root / "modules.json").is_file():
        pipeline = [str(entry.get("type")).rsplit(".", 1)[-1] for entry in read_modules_json(root)]
    return str(root), config, with_pooler, pipeline, head


def describe_head(raw_config, checkpoint):
    """The task head a checkpoint carries, by its tensors (and the config's architectures and
    labels): e.g. "BertForSequenceClassification: 3 labels (neg, neutral, pos)"; "none" for a bare
    encoder."""
    architectures = raw_config.get("architectures") or []
    named = architectures[0] if isinstance(architectures, list) and architectures else None
    if "classifier.weight" in checkpoint:
        kind = named if named in ("BertForSequenceClassification", "BertForTokenClassification") \
            else "classifier"
        labels = raw_config.get("id2label") or {}
        count = checkpoint.tensors["classifier.weight"].shape[0]
        names = ", ".join(str(labels[k]) for k in sorted(labels, key=lambda k: int(k))) if labels else ""
        problem = raw_config.get("problem_type")
        return (f"{kind}: {count} label(s)" + (f" ({names})" if names else "")
                + (f", problem_type {problem}" if problem else ""))
    if "cls.predictions.transform.dense.weight" in checkpoint:
        tied = raw_config.get("tie_word_embeddings", True)
        return ("BertForMaskedLM: decoder " + ("tied to the word embeddings" if tied else "untied")
                + " (fill-mask, SPLADE)")
    return "none (encoder only)"


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


def run(args):
    description, config, with_pooler, pipeline, head = _inspect_source(args)
    report = inspect_report(config, with_pooler, args.seq)
    report["source"] = description
    if head is not None:
        report["head"] = head
    if pipeline is not None:
        report["sentence_transformers_modules"] = pipeline
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"model: {description}")
    if head is not None:
        print(f"head: {head}")
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
