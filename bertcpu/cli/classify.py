"""`bertcpu classify`: labels for texts (sequence classification) or entities in them (token
classification), by the model's architecture."""
import json
import sys

from .._files import read_json
from ..model import DTYPES
from ..hub import resolve_model_path
from ..heads.token_classification import AGGREGATION_STRATEGIES
from ._common import UserError, positive_int
from .rerank import read_lines


def add_command(commands):
    classify = commands.add_parser(
        "classify", help="labels for texts, or the entities in them (NER)",
        description="Run a BertForSequenceClassification model (labels with scores, as "
                    "transformers' text-classification pipeline) or a BertForTokenClassification "
                    "model (entities with character offsets, as its token-classification "
                    "pipeline) on TEXT arguments or --input FILE (one text per line). One JSON "
                    "object per text on stdout.")
    classify.add_argument("model", metavar="MODEL", help="model folder or HuggingFace model id")
    classify.add_argument("texts", nargs="*", metavar="TEXT")
    classify.add_argument("--input", "-i", metavar="FILE", help="texts, one per line (- for stdin)")
    classify.add_argument("--top-k", "-k", type=positive_int, default=1, metavar="K",
                          help="labels per text (sequence classification; default 1)")
    classify.add_argument("--aggregation", choices=AGGREGATION_STRATEGIES, default="simple",
                          help="how tokens become entities (token classification; default simple)")
    classify.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    classify.add_argument("--threads", type=positive_int, metavar="N")
    classify.add_argument("--dtype", choices=DTYPES, default="float32")
    classify.set_defaults(handler=run)


def head_architecture(folder):
    """The BertFor* class a folder's config.json names (architectures[0]), or None."""
    config = read_json(folder / "config.json")
    architectures = config.get("architectures") or []
    return architectures[0] if isinstance(architectures, list) and architectures else None


def run(args):
    if args.texts and args.input is not None:
        raise UserError("give TEXT arguments or --input, not both")
    if not args.texts and args.input is None:
        raise UserError("nothing to classify: give TEXT arguments or --input FILE (- for stdin)")
    texts = args.texts or read_lines(args.input, "texts")
    folder = resolve_model_path(args.model)
    architecture = head_architecture(folder)
    from ..heads import BertForSequenceClassification, BertForTokenClassification

    options = dict(num_threads=args.threads, dtype=args.dtype)
    if architecture == "BertForTokenClassification":
        model = BertForTokenClassification.from_pretrained(folder, **options)
        results = model.predict(texts, aggregation_strategy=args.aggregation, batch_size=args.batch_size)
        records = [{"text": text, "entities": [_plain(e) for e in entities]}
                   for text, entities in zip(texts, results)]
    elif architecture == "BertForSequenceClassification":
        model = BertForSequenceClassification.from_pretrained(folder, **options)
        results = model.classify(texts, top_k=args.top_k, batch_size=args.batch_size)
        records = [{"text": text, "labels": [r] if args.top_k == 1 else r}
                   for text, r in zip(texts, results)]
    else:
        raise UserError(f"{folder}: config.json names architecture {architecture!r}; classify runs "
                        f"BertForSequenceClassification and BertForTokenClassification models")
    sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _plain(entity):
    """An entity with Python numbers (the pipeline's scores are numpy floats)."""
    return {key: (float(value) if key == "score" else value) for key, value in entity.items()}
