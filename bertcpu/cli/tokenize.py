"""`bertcpu tokenize`: the tokens and ids a model sees for some text."""
import json

from ._common import positive_int


def add_command(commands):
    tokenize = commands.add_parser(
        "tokenize", help="show the tokens and ids a model sees for some text",
        description="Tokenize TEXT as `embed` would (lowercasing and truncation included) and "
                    "print each token with its id.")
    tokenize.add_argument("texts", nargs="+", metavar="TEXT")
    tokenize.add_argument("--model", "-m", required=True,
                          help="model folder or HuggingFace model id")
    tokenize.add_argument("--max-length", type=positive_int, metavar="N",
                          help="truncate to N tokens (default: the model's max_seq_length)")
    tokenize.add_argument("--json", action="store_true", help="print JSON instead of a table")
    tokenize.set_defaults(handler=run)


def run(args):
    from ..sentence import SentenceEncoder

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
