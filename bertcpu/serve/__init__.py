"""bertcpu serve: the bertcpu engine as an HTTP service, TEI- and OpenAI-compatible, with dynamic
batching across requests. Needs the `server` extra (pip install "bertcpu[server]").

Stages, one module each: settings (limits), schemas (request bodies, errors), kinds (what a model
folder is and its token-level batch call), batcher (bounded queue -> token-budget batches, the
engine thread), metrics (Prometheus), app (routes), server (uvicorn, signals).

The names below are imported on first use, so `bertcpu.serve.settings` (which the command line
reads for its defaults) loads without the extra installed.
"""
import importlib

_EXPORTS = {"ServeSettings": "settings", "create_app": "app", "load_model": "kinds",
            "serve": "server"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
