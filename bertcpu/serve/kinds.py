"""What a served model folder is, and what each kind of model needs from the service.

A model kind is a library object (here SentenceEncoder) wrapped with three things: the routes it
answers (app.py maps kind -> routes), how a request's texts become token sequences (tokenization
with TEI's truncation rules, run by the routes, off the engine thread), and `run(options, items)`,
the token-level batch call the batcher makes on the engine thread for items of many requests at
once. A new kind (rerankers, classifiers, sparse encoders) is a class with the same members and
its routes.
"""
import collections

from .. import __version__
from ..sentence import SentenceEncoder
from .schemas import ServiceError

# What the items of one engine call must share; items with different options run in separate
# calls of the same batch.
EmbedOptions = collections.namedtuple(
    "EmbedOptions", "output_value normalize_embeddings prompt_length truncate_dim")


class _TextModel:
    """What every kind shares: a BERT tokenizer and an input length limit."""

    def __init__(self, tokenizer, max_input_length, name):
        self.tokenizer = tokenizer
        self.max_input_length = max_input_length
        self.name = name
        self._special_ids = frozenset(tokenizer.all_special_ids)

    @staticmethod
    def num_tokens(item):
        """What an item costs in the batcher's token budget."""
        return len(item)

    def token_ids(self, texts, truncate, direction):
        """Each text's token ids, [CLS] and [SEP] included; over max_input_length, cut on the
        `direction` side ("Right"/"Left", either case) when truncate, else a 422 naming the input."""
        sequences = self.tokenizer(texts)["input_ids"]
        limit = self.max_input_length
        for index, ids in enumerate(sequences):
            if len(ids) <= limit:
                continue
            if not truncate:
                raise ServiceError(422, "validation",
                                   f"input {index} has {len(ids)} tokens, more than the model's "
                                   f"maximum of {limit}; shorten it or send truncate=true")
            # The tokenizer's own rule: the special tokens stay, the text between them is cut.
            if direction in ("Right", "right"):
                sequences[index] = ids[:limit - 1] + ids[-1:]
            else:
                sequences[index] = ids[:1] + ids[len(ids) - limit + 1:]
        return sequences

    def check_token_ids(self, sequences):
        """Token-id inputs as the engine takes them: 1..max_input_length ids, each in the vocabulary."""
        vocab_size = self.tokenizer.vocab_size
        for index, ids in enumerate(sequences):
            if not ids:
                raise ServiceError(400, "empty", f"input {index} has no token ids")
            if len(ids) > self.max_input_length:
                raise ServiceError(422, "validation",
                                   f"input {index} has {len(ids)} tokens, more than the model's "
                                   f"maximum of {self.max_input_length}")
            largest = max(ids)
            if largest >= vocab_size:
                raise ServiceError(422, "validation", f"input {index}: token id {largest} is not "
                                                      f"in the vocabulary (size {vocab_size})")

    def tokens(self, texts, add_special_tokens):
        """/tokenize's answer: per text, its tokens as {id, text, special, start, stop}; a special
        token added around the text has no span (start and stop null)."""
        encoded = self.tokenizer(texts, add_special_tokens=add_special_tokens,
                                 return_offsets_mapping=True)
        answer = []
        for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
            tokens = []
            for token_id, (start, stop) in zip(ids, offsets):
                if token_id in self._special_ids and start == stop:
                    tokens.append({"id": token_id, "special": True, "start": None, "stop": None,
                                   "text": self.tokenizer.convert_ids_to_tokens(token_id)})
                else:
                    tokens.append({"id": token_id, "special": False, "start": start, "stop": stop,
                                   "text": text[start:stop]})
            answer.append(tokens)
        return answer

    def decode(self, sequences, skip_special_tokens):
        vocab_size = self.tokenizer.vocab_size
        for index, ids in enumerate(sequences):
            if ids and max(ids) >= vocab_size:
                raise ServiceError(422, "validation", f"ids {index}: token id {max(ids)} is not in "
                                                      f"the vocabulary (size {vocab_size})")
        return [self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
                for ids in sequences]


class EmbeddingModel(_TextModel):
    """A SentenceEncoder: /embed, /embed_all and /v1/embeddings."""

    kind = "embedding"

    def __init__(self, encoder, name):
        super().__init__(encoder.tokenizer, encoder.max_seq_length, name)
        self.encoder = encoder
        self.dimension = encoder.get_embedding_dimension()

    @property
    def dtype(self):
        return self.encoder.model.dtype

    def model_type(self):
        pooling = next((m[len("Pooling("):-1].split(",")[0] for m in self.encoder.modules
                        if m.startswith("Pooling(")), None)
        return {"embedding": {"pooling": pooling, "dimension": self.dimension}}

    def prompt(self, prompt_name):
        """The text put before each input: the named prompt, else the model's default, else None."""
        try:
            return self.encoder.resolve_prompt(prompt_name=prompt_name)
        except ValueError as error:
            raise ServiceError(422, "validation", str(error)) from None

    def embed_options(self, prompt, output_value, normalize, dimensions):
        """normalize: True, False, or None for the model's own pipeline."""
        if dimensions is not None and dimensions > self.dimension:
            raise ServiceError(422, "validation", f"dimensions {dimensions} is more than the "
                                                  f"model's {self.dimension}")
        prompt_length = self.encoder.prompt_length(prompt) if prompt else None
        return EmbedOptions(output_value, normalize, prompt_length, dimensions)

    def run(self, options, sequences):
        """The engine call: one row (or token matrix) per sequence."""
        return self.encoder.encode_tokens(sequences, **options._asdict())


KINDS = {EmbeddingModel.kind: EmbeddingModel}


def load_model(name_or_path, dtype="float32", num_threads=None, served_model_name=None):
    """The served model: a SentenceEncoder folder (sentence-transformers or plain BERT) or a hub
    id in the local cache, loaded as its kind."""
    encoder = SentenceEncoder.from_pretrained(name_or_path, num_threads=num_threads, dtype=dtype)
    return EmbeddingModel(encoder, served_model_name or str(name_or_path))


def info(model, settings):
    """/info's answer."""
    return {"model_id": model.name, "model_dtype": model.dtype, "model_type": model.model_type(),
            "max_input_length": model.max_input_length,
            "max_batch_tokens": settings.max_batch_tokens,
            "max_client_batch_size": settings.max_client_batch_size,
            "max_concurrent_requests": settings.max_concurrent_requests,
            "auto_truncate": settings.auto_truncate, "version": __version__}
