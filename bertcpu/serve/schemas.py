"""What the routes accept and answer: request bodies (pydantic, so FastAPI validates them and the
OpenAPI document describes them), response shapes for the document, and the error type every
route raises.

Field names, defaults and shapes follow HuggingFace text-embeddings-inference (TEI) and, for
/v1/embeddings, OpenAI's embeddings API, so their clients work unchanged. Types are strict: a
number where a string belongs is an error, not converted.
"""
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class ServiceError(Exception):
    """A request the service refuses: answered with `status` and TEI's error body
    {"error": message, "error_type": error_type}."""

    def __init__(self, status, error_type, message):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def empty_error(field):
    return ServiceError(400, "empty", f"`{field}` cannot be empty")


def batch_size_error(size, limit):
    return ServiceError(413, "validation", f"batch size {size} > maximum allowed batch size {limit}")


class ErrorResponse(BaseModel):
    error: str
    error_type: str


_STRICT = ConfigDict(strict=True)

# TEI spells the directions "Right" / "Left"; huggingface_hub's client sends them lower-case.
TruncationDirection = Literal["Right", "Left", "right", "left"]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]


class _TextRequest(BaseModel):
    model_config = _STRICT
    inputs: Union[StrictStr, List[StrictStr]]
    truncate: Optional[StrictBool] = Field(
        None, description="Cut inputs longer than the model's limit instead of answering 422 "
                          "(default: the server's --auto-truncate).")
    truncation_direction: TruncationDirection = "Right"
    prompt_name: Optional[StrictStr] = Field(
        None, description="One of the model's configured prompts, put before every input.")

    def texts(self):
        return [self.inputs] if isinstance(self.inputs, str) else self.inputs


class EmbedRequest(_TextRequest):
    normalize: StrictBool = Field(True, description="L2-normalize the vectors; false also skips "
                                                    "the model's own Normalize module.")
    dimensions: Optional[Annotated[StrictInt, Field(ge=1)]] = Field(
        None, description="Keep only the first `dimensions` values (Matryoshka models), before "
                          "normalization.")


class EmbedAllRequest(_TextRequest):
    pass


class TokenizeRequest(BaseModel):
    model_config = _STRICT
    inputs: Union[StrictStr, List[StrictStr]]
    add_special_tokens: StrictBool = True
    prompt_name: Optional[StrictStr] = None

    def texts(self):
        return [self.inputs] if isinstance(self.inputs, str) else self.inputs


class DecodeRequest(BaseModel):
    model_config = _STRICT
    ids: Union[List[NonNegativeInt], List[List[NonNegativeInt]]]
    skip_special_tokens: StrictBool = True


class OpenAIEmbeddingRequest(BaseModel):
    model_config = _STRICT
    input: Union[StrictStr, List[StrictStr], List[NonNegativeInt], List[List[NonNegativeInt]]] = Field(
        description="A text, a list of texts, a list of token ids (as /tokenize returns them, "
                    "[CLS] and [SEP] included) or a list of such lists.")
    model: Optional[StrictStr] = Field(None, description="Accepted and ignored: the server runs "
                                                         "one model.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[Annotated[StrictInt, Field(ge=1)]] = None
    user: Optional[StrictStr] = None


class EmbedSparseRequest(_TextRequest):
    pass


class RerankRequest(BaseModel):
    model_config = _STRICT
    query: StrictStr
    texts: List[StrictStr]
    truncate: Optional[StrictBool] = None
    truncation_direction: TruncationDirection = "Right"
    raw_scores: StrictBool = Field(False, description="The logits, without the model's activation.")
    return_text: StrictBool = False


class PredictRequest(BaseModel):
    model_config = _STRICT
    inputs: Union[StrictStr, List[Union[StrictStr, List[StrictStr]]]] = Field(
        description="A text, a [text] or [text, text_pair] list, or a list of those (TEI's rule: a "
                    "list of one or two strings is one input).")
    truncate: Optional[StrictBool] = None
    truncation_direction: TruncationDirection = "Right"
    raw_scores: StrictBool = Field(False, description="The logits, without softmax / sigmoid.")


class Rank(BaseModel):
    index: int
    score: float
    text: Optional[str] = None


class Prediction(BaseModel):
    label: str
    score: float


class SparseValue(BaseModel):
    index: int
    value: float


class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: Optional[int] = None
    stop: Optional[int] = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: Union[List[float], str]
    index: int


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: List[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class Info(BaseModel):
    model_id: str
    model_dtype: str
    model_type: Dict[str, Dict[str, Any]]
    max_input_length: int
    max_batch_tokens: int
    max_client_batch_size: int
    max_concurrent_requests: int
    auto_truncate: bool
    version: str


def error_responses(*statuses):
    """The OpenAPI `responses` entry for the error statuses a route can answer."""
    descriptions = {400: "Empty input", 401: "Missing or wrong API key",
                    413: "Batch or body too large", 422: "Invalid request or input too long",
                    429: "Too many requests in flight"}
    return {status: {"model": ErrorResponse, "description": descriptions[status]}
            for status in statuses}
