"""`bertcpu serve`: the model as an HTTP service (TEI and OpenAI routes, dynamic batching)."""
from ..model import DTYPES
from ._common import UserError, positive_int


def add_command(commands):
    from ..serve.settings import ServeSettings  # no third-party imports: the extra may be missing

    defaults = ServeSettings()
    serve = commands.add_parser(
        "serve", help="serve a model over HTTP (TEI- and OpenAI-compatible)",
        description="Serve MODEL over HTTP with TEI's routes (/embed, /embed_all, /tokenize, "
                    "/decode, /info, /health, /metrics) and OpenAI's /v1/embeddings, batching "
                    "concurrent requests into shared engine calls. Stops gracefully on SIGTERM "
                    "or Ctrl-C. Needs bertcpu[server].")
    serve.add_argument("model", metavar="MODEL", help="model folder or HuggingFace model id (cached)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="what the dense layers compute in (default float32)")
    serve.add_argument("--threads", type=positive_int, metavar="N",
                       help="engine and tokenizer threads (default: the CPUs available)")
    serve.add_argument("--max-batch-tokens", type=positive_int, metavar="N",
                       default=defaults.max_batch_tokens,
                       help=f"real tokens per engine batch, across requests (default "
                            f"{defaults.max_batch_tokens})")
    serve.add_argument("--max-client-batch-size", type=positive_int, metavar="N",
                       default=defaults.max_client_batch_size,
                       help=f"inputs per request; more answers 413 (default "
                            f"{defaults.max_client_batch_size})")
    serve.add_argument("--max-concurrent-requests", type=positive_int, metavar="N",
                       default=defaults.max_concurrent_requests,
                       help=f"requests in flight; more answers 429 (default "
                            f"{defaults.max_concurrent_requests})")
    serve.add_argument("--payload-limit", type=positive_int, metavar="BYTES",
                       default=defaults.payload_limit,
                       help=f"request body size; larger answers 413 (default {defaults.payload_limit})")
    serve.add_argument("--auto-truncate", action="store_true",
                       help="cut over-long inputs instead of answering 422 (a request's "
                            "`truncate` field still decides for it)")
    serve.add_argument("--api-key", metavar="KEY",
                       help="require `Authorization: Bearer KEY` on every route but /health")
    serve.add_argument("--served-model-name", metavar="NAME",
                       help="the model name /info and /v1/embeddings report (default: MODEL)")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                       help="info logs one line per request (default info)")
    serve.set_defaults(handler=run)


def run(args):
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0..65535, got {args.port}")
    try:
        from ..serve import serve
    except ImportError as error:
        raise UserError(f"bertcpu serve needs the server extra ({error.name} is missing): "
                        f"pip install 'bertcpu[server]'") from None
    serve(args.model, host=args.host, port=args.port, dtype=args.dtype, num_threads=args.threads,
          log_level=args.log_level, max_batch_tokens=args.max_batch_tokens,
          max_client_batch_size=args.max_client_batch_size,
          max_concurrent_requests=args.max_concurrent_requests, payload_limit=args.payload_limit,
          auto_truncate=args.auto_truncate, api_key=args.api_key,
          served_model_name=args.served_model_name)
