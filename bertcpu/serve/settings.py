"""The service's limits and switches: one place for each, with its default and its check.
`bertcpu serve` flags map onto these fields one to one."""
import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """max_batch_tokens: tokens (unpadded) the engine runs in one batch, across requests.
    max_client_batch_size: inputs one request may carry (more answers 413).
    max_concurrent_requests: requests admitted and not yet answered (more answers 429 at once).
    auto_truncate: cut over-long text inputs when the request does not say (TEI's default rule).
    api_key: when set, every route but /health needs `Authorization: Bearer <api_key>`.
    served_model_name: the model name /info and /v1/embeddings report (default: the folder).
    payload_limit: request body bytes (more answers 413)."""

    max_batch_tokens: int = 16384
    max_client_batch_size: int = 64
    max_concurrent_requests: int = 512
    auto_truncate: bool = False
    api_key: Optional[str] = None
    served_model_name: Optional[str] = None
    payload_limit: int = 2_000_000

    def __post_init__(self):
        for name in ("max_batch_tokens", "max_client_batch_size", "max_concurrent_requests",
                     "payload_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.auto_truncate, bool):
            raise ValueError(f"auto_truncate must be True or False, got {self.auto_truncate!r}")
        for name in ("api_key", "served_model_name"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
