"""The HTTP routes: each one validates its request, tokenizes, hands the sequences to the batcher
and formats the answer. Nothing here runs the model.

Every model answers /health, /info, /metrics, /tokenize and /decode; the model's kind adds its
own routes (ROUTES_BY_KIND): an embedding model /embed, /embed_all and /v1/embeddings, a reranker
/rerank and /predict, a classifier /predict, a sparse model /embed_sparse; TEI's POST / answers as
the kind's first route. Errors use TEI's body {"error": ..., "error_type": ...} whatever raised
them.
"""
import asyncio
import base64
import contextlib
import hmac
import logging
import time
from typing import List, Union

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response

from .. import __version__
from . import kinds
from .batcher import Batcher
from .metrics import CONTENT_TYPE, Metrics
from .schemas import (DecodeRequest, EmbedAllRequest, EmbedRequest, EmbedSparseRequest,
                      ErrorResponse, Info, OpenAIEmbeddingRequest, OpenAIEmbeddingResponse,
                      Prediction, PredictRequest, Rank, RerankRequest, ServiceError, SimpleToken,
                      SparseValue, TokenizeRequest, batch_size_error, empty_error,
                      error_responses)

logger = logging.getLogger("bertcpu.serve")

# Work done on the event loop itself below these sizes (a thread hand-off costs more than the
# work); above them tokenization and JSON encoding run in the loop's thread pool, so one large
# request never holds up the others.
_INLINE_CHARACTERS = 4096
_INLINE_FLOATS = 65536

# A status for requests whose client left before the answer (never sent; logs and metrics only).
_CLIENT_GONE = 499

_TEXT_ERRORS = error_responses(400, 401, 413, 422, 429)


def create_app(model, settings):
    """The ASGI app serving `model` (a kinds.py model) with `settings` (ServeSettings)."""
    metrics = Metrics()
    batcher = Batcher(model, settings.max_batch_tokens, settings.max_concurrent_requests, metrics)
    service = _Service(model, settings, batcher)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        try:
            yield
        finally:
            # Uvicorn has answered every request in flight by now.
            batcher.stop()

    app = FastAPI(title="bertcpu", version=__version__, lifespan=lifespan,
                  description=f"Embeddings from {model.name} on the bertcpu engine: TEI and "
                              f"OpenAI-compatible routes.")
    app.include_router(_common_routes(service, metrics))
    for position, routes in enumerate(ROUTES_BY_KIND[model.kind]):
        app.include_router(routes(service, root=position == 0))
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(_ClientGone, _client_gone)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(_Guard, api_key=settings.api_key, payload_limit=settings.payload_limit)
    app.add_middleware(_AccessLog, metrics=metrics)
    app.state.service = service
    return app


class _Service:
    """What the routes share: the model, the limits, the batcher."""

    def __init__(self, model, settings, batcher):
        self.model = model
        self.settings = settings
        self.batcher = batcher

    def check_batch(self, values, field):
        if not values:
            raise empty_error(field)
        if len(values) > self.settings.max_client_batch_size:
            raise batch_size_error(len(values), self.settings.max_client_batch_size)
        return values

    def check_texts(self, texts, field):
        self.check_batch(texts, field)
        for index, text in enumerate(texts):
            if not text:
                raise ServiceError(400, "empty", f"`{field}` item {index} is an empty string")
        return texts

    def truncate(self, requested):
        return self.settings.auto_truncate if requested is None else requested

    async def token_ids(self, texts, prompt, truncate, direction):
        if prompt:
            texts = [prompt + text for text in texts]
        return await _off_loop(sum(map(len, texts)) > _INLINE_CHARACTERS, self.model.token_ids,
                               texts, truncate, direction)

    async def infer(self, request, items, options):
        """The batcher's results for items, in order. A client that disconnects while its items
        wait has them dropped from the queue."""
        job = self.batcher.submit(items, options)
        request.state.job = job
        disconnect = asyncio.ensure_future(_disconnected(request.receive))
        try:
            await asyncio.wait((job.future, disconnect), return_when=asyncio.FIRST_COMPLETED)
        finally:
            disconnect.cancel()
            if not job.future.done():
                self.batcher.cancel(job)
        if job.future.cancelled():
            raise _ClientGone()
        return job.future.result()


def _common_routes(service, metrics):
    router = APIRouter()
    model = service.model

    @router.get("/health", responses={503: {"model": ErrorResponse}})
    async def health():
        """200 while the engine thread runs."""
        if not service.batcher.alive:
            raise ServiceError(503, "unhealthy", "the engine thread has stopped")
        return Response()

    @router.get("/info", response_model=Info, responses=error_responses(401))
    async def info():
        return _json(kinds.info(model, service.settings))

    @router.get("/metrics", response_class=PlainTextResponse, responses=error_responses(401))
    async def prometheus_metrics():
        """Prometheus text: requests by route and status, latency, queue depth, batch sizes and
        tokens."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @router.post("/tokenize", response_model=List[List[SimpleToken]],
                 responses=error_responses(400, 401, 413, 422))
    async def tokenize(body: TokenizeRequest):
        """The tokens of each input, with character offsets into it (prompt included)."""
        texts = service.check_batch(body.texts(), "inputs")
        prompt = model.prompt(body.prompt_name)
        if prompt:
            texts = [prompt + text for text in texts]
        tokens = await _off_loop(sum(map(len, texts)) > _INLINE_CHARACTERS, model.tokens, texts,
                                 body.add_special_tokens)
        return _json(tokens)

    @router.post("/decode", response_model=List[str], responses=error_responses(400, 401, 413, 422))
    async def decode(body: DecodeRequest):
        """The text of each list of token ids."""
        single = not body.ids or isinstance(body.ids[0], int)
        sequences = service.check_batch([body.ids] if single and body.ids else body.ids, "ids")
        return _json(model.decode(sequences, body.skip_special_tokens))

    return router


def _embedding_routes(service, root):
    router = APIRouter()
    model = service.model

    async def embed(body: EmbedRequest, request: Request):
        """One vector per input (TEI's /embed)."""
        texts = service.check_texts(body.texts(), "inputs")
        prompt = model.prompt(body.prompt_name)
        options = model.embed_options(prompt, "sentence_embedding", body.normalize, body.dimensions)
        sequences = await service.token_ids(texts, prompt, service.truncate(body.truncate),
                                            body.truncation_direction)
        rows = await service.infer(request, sequences, options)
        return await _json_off_loop(rows, len(rows) * len(rows[0]))

    _add_route(router, "/embed", embed, List[List[float]], root)

    @router.post("/embed_all", response_model=List[List[List[float]]], responses=_TEXT_ERRORS)
    async def embed_all(body: EmbedAllRequest, request: Request):
        """Every token's vector, per input (TEI's /embed_all): the transformer's output, special
        tokens included."""
        texts = service.check_texts(body.texts(), "inputs")
        prompt = model.prompt(body.prompt_name)
        options = model.embed_options(prompt, "token_embeddings", None, None)
        sequences = await service.token_ids(texts, prompt, service.truncate(body.truncate),
                                            body.truncation_direction)
        matrices = await service.infer(request, sequences, options)
        return await _json_off_loop(matrices, sum(m.size for m in matrices))

    @router.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse, responses=_TEXT_ERRORS)
    async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request):
        """OpenAI's embeddings API: unit-length vectors (also when shortened with `dimensions`),
        as floats or base64 (little-endian float32)."""
        inputs = body.input
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if inputs and isinstance(inputs[0], str):
            texts = service.check_texts(inputs, "input")
            sequences = await service.token_ids(texts, None, service.truncate(None), "Right")
        else:
            sequences = service.check_batch(inputs, "input")
            model.check_token_ids(sequences)
        options = model.embed_options(None, "sentence_embedding", True, body.dimensions)
        rows = await service.infer(request, sequences, options)
        if body.encoding_format == "base64":
            rows = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in rows]
        tokens = sum(map(len, sequences))
        answer = {"object": "list", "model": model.name,
                  "data": [{"object": "embedding", "embedding": row, "index": index}
                           for index, row in enumerate(rows)],
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return await _json_off_loop(answer, len(rows) * model.dimension)

    return router


def _rerank_routes(service, root):
    router = APIRouter()
    model = service.model

    async def rerank(body: RerankRequest, request: Request):
        """The texts ranked by their score against the query, best first (TEI's /rerank)."""
        texts = service.check_batch(body.texts, "texts")
        tokens = await _off_loop(len(body.query) * len(texts) + sum(map(len, texts)) > _INLINE_CHARACTERS,
                                 model.pair_tokens, [body.query] * len(texts), texts,
                                 service.truncate(body.truncate), body.truncation_direction)
        scores = await service.infer(request, tokens, kinds.ScoreOptions("rerank", body.raw_scores))
        ranks = [{"index": index, "score": float(score)} for index, score in enumerate(scores)]
        if body.return_text:
            for rank in ranks:
                rank["text"] = texts[rank["index"]]
        ranks.sort(key=lambda rank: -rank["score"])
        return _json(ranks)

    _add_route(router, "/rerank", rerank, List[Rank], root)
    return router


def _predict_routes(service, root):
    router = APIRouter()
    model = service.model

    async def predict(body: PredictRequest, request: Request):
        """Label scores of a text or a (text, text_pair) pair, or of a list of them, best first
        (TEI's /predict)."""
        inputs = body.inputs
        single = isinstance(inputs, str) or (1 <= len(inputs) <= 2 and all(isinstance(i, str) for i in inputs))
        sequences = [[inputs] if isinstance(inputs, str) else inputs] if single else [
            [item] if isinstance(item, str) else item for item in inputs]
        service.check_batch(sequences, "inputs")
        for index, sequence in enumerate(sequences):
            if not 1 <= len(sequence) <= 2:
                raise ServiceError(422, "validation", f"inputs[{index}] must be a text or a [text, "
                                                      f"text_pair] list, got {len(sequence)} strings")
        pairs = [sequence for sequence in sequences if len(sequence) == 2]
        if pairs and len(pairs) != len(sequences):
            raise ServiceError(422, "validation", "inputs mixes single texts and pairs; send one kind "
                                                  "per request")
        firsts = [sequence[0] for sequence in sequences]
        seconds = [sequence[1] for sequence in pairs] if pairs else None
        tokens = await _off_loop(sum(len(text) for sequence in sequences for text in sequence)
                                 > _INLINE_CHARACTERS, model.pair_tokens, firsts, seconds,
                                 service.truncate(body.truncate), body.truncation_direction)
        rows = await service.infer(request, tokens, kinds.ScoreOptions("predict", body.raw_scores))
        predictions = [sorted(({"label": label, "score": float(score)}
                               for label, score in zip(model.labels, row)),
                              key=lambda prediction: -prediction["score"]) for row in rows]
        return _json(predictions[0] if single else predictions)

    _add_route(router, "/predict", predict, Union[List[Prediction], List[List[Prediction]]], root)
    return router


def _sparse_routes(service, root):
    router = APIRouter()
    model = service.model

    async def embed_sparse(body: EmbedSparseRequest, request: Request):
        """The non-zero (vocabulary index, value) pairs of each input's sparse vector, by index
        (TEI's /embed_sparse)."""
        texts = service.check_texts(body.texts(), "inputs")
        prompt = model.prompt(body.prompt_name)
        sequences = await service.token_ids(texts, prompt, service.truncate(body.truncate),
                                            body.truncation_direction)
        vectors = await service.infer(request, sequences, None)
        return _json([[{"index": int(index), "value": float(value)}
                       for index, value in zip(vector.indices, vector.values)]
                      for vector in vectors])

    _add_route(router, "/embed_sparse", embed_sparse, List[List[SparseValue]], root)
    return router


def _add_route(router, path, endpoint, response_model, root):
    router.add_api_route(path, endpoint, methods=["POST"], response_model=response_model,
                         responses=_TEXT_ERRORS)
    if root:
        # TEI answers POST / with the model's main route; huggingface_hub's InferenceClient
        # posts there.
        router.add_api_route("/", endpoint, methods=["POST"], response_model=response_model,
                             responses=_TEXT_ERRORS, summary=f"{path} (TEI's root route)")


ROUTES_BY_KIND = {"embedding": [_embedding_routes], "reranker": [_rerank_routes, _predict_routes],
                  "classifier": [_predict_routes], "sparse": [_sparse_routes]}


# -- responses -------------------------------------------------------------------------------

def _json(content, status=200):
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


async def _json_off_loop(content, floats):
    if floats <= _INLINE_FLOATS:
        return _json(content)
    body = await asyncio.get_running_loop().run_in_executor(
        None, orjson.dumps, content, None, orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, media_type="application/json")


async def _off_loop(large, function, *args):
    if not large:
        return function(*args)
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def _disconnected(receive):
    """Returns when the client has gone (the request body is read by now, so the next ASGI
    message is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class _ClientGone(Exception):
    pass


def _error(status, error_type, message):
    return _json({"error": message, "error_type": error_type}, status)


async def _service_error(_request, error):
    return _error(error.status, error.error_type, error.message)


async def _validation_error(_request, error):
    problems = []
    for problem in error.errors()[:3]:
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        problems.append(f"{where}: {problem.get('msg')}" if where else str(problem.get("msg")))
    return _error(422, "validation", "; ".join(problems) or "invalid request")


async def _http_error(_request, error):
    return _error(error.status_code, "validation", str(error.detail))


async def _client_gone(_request, _error_):
    return Response(status_code=_CLIENT_GONE)


async def _internal_error(_request, error):
    logger.exception("internal error", exc_info=error)
    return _error(500, "backend", f"internal error: {type(error).__name__}")


# -- middleware (plain ASGI: a few microseconds per request) ----------------------------------

class _Guard:
    """The API key (Authorization: Bearer KEY, every route but /health) and the body size limit:
    a Content-Length over it is refused before reading; a body without one is read up to it."""

    def __init__(self, app, api_key, payload_limit):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.payload_limit = payload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.expected is not None and scope["path"] != "/health":
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                return await _error(401, "unauthorized", "missing or wrong API key")(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.payload_limit:
                return await self._too_large(scope, receive, send)
            return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        # A chunked body: read it here, within the limit, then replay it to the app.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.payload_limit:
                return await self._too_large(scope, receive, send)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_then_receive():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replay_then_receive, send)

    async def _too_large(self, scope, receive, send):
        response = _error(413, "validation", f"request body larger than the limit of "
                                             f"{self.payload_limit} bytes")
        await response(scope, receive, send)


class _AccessLog:
    """One log line and the request metrics per request: method, route, status, the largest
    engine batch its inputs ran in, milliseconds."""

    def __init__(self, app, metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = _CLIENT_GONE

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = 500  # answered by Starlette's outermost error handler
            raise
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            route = route.path if route is not None and hasattr(route, "path") else "other"
            job = scope.get("state", {}).get("job")
            self.metrics.request(scope["method"], route, status, seconds)
            if logger.isEnabledFor(logging.INFO):
                logger.info("%s %s %d batch=%d %.1fms", scope["method"], route, status,
                            job.batch_size if job is not None else 0, seconds * 1000)
