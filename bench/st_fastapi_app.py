"""The embedding service people write by hand: sentence-transformers behind FastAPI, one
`model.encode` per request, an OpenAI-style /v1/embeddings route. bench_server.py's baseline (c).

    python bench/st_fastapi_app.py MODEL_FOLDER --port 8082 --threads 2
"""
import argparse
from typing import List, Union

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer


class EmbeddingRequest(BaseModel):
    input: Union[str, List[str]]
    model: str = ""


def build_app(folder):
    model = SentenceTransformer(folder, device="cpu")
    app = FastAPI()

    # A plain `def`: FastAPI runs it in its thread pool, so the event loop stays free.
    @app.post("/v1/embeddings")
    def embeddings(request: EmbeddingRequest):
        texts = [request.input] if isinstance(request.input, str) else request.input
        vectors = model.encode(texts, normalize_embeddings=True)
        return {"object": "list", "model": request.model,
                "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                         for i, v in enumerate(vectors)]}

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    uvicorn.run(build_app(args.model), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
