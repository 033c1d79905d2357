"""Running the service: load the model, build the app, serve it with uvicorn until SIGTERM/SIGINT.

On SIGTERM or Ctrl-C uvicorn stops accepting connections and finishes the requests in flight;
then the batcher's engine thread ends and serve() returns (the command exits 0).
"""
import logging
import signal

import uvicorn

from .app import create_app
from .kinds import load_model
from .settings import ServeSettings

LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve(model, host="127.0.0.1", port=8080, dtype="float32", num_threads=None,
          log_level="info", **settings):
    """Serve `model` (a folder or a cached hub id) on host:port. settings: ServeSettings fields
    (max_batch_tokens, max_client_batch_size, max_concurrent_requests, auto_truncate, api_key,
    served_model_name, payload_limit). Returns after a graceful shutdown."""
    if log_level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    settings = ServeSettings(**settings)
    logging.basicConfig(level=log_level.upper(), format=_LOG_FORMAT)
    loaded = load_model(model, dtype=dtype, num_threads=num_threads,
                        served_model_name=settings.served_model_name)
    logging.getLogger("bertcpu.serve").info("serving %s (%s, %s) on http://%s:%d", loaded.name,
                                            loaded.kind, loaded.dtype, host, port)
    config = uvicorn.Config(create_app(loaded, settings), host=host, port=port,
                            log_level=log_level, log_config=None, access_log=False,
                            lifespan="on")
    # Uvicorn re-raises the signal that stopped it once it is done, to the handler installed
    # before it ran: a no-op here, so a requested stop ends the command normally.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    uvicorn.Server(config).run()
