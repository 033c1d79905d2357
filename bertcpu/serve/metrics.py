"""The service's Prometheus metrics (GET /metrics), in a registry of its own per app.

Requests by route and status, request latency, queue depth, rejected requests, and per engine
batch: its size in inputs, its real tokens, and its run time. Routes are labelled by their path
template, unmatched paths as "other", so a scanner cannot grow the label set.
"""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self._requests = Counter("bertcpu_requests", "HTTP requests answered, by route and status",
                                 ["method", "route", "status"], registry=self.registry)
        self._latency = Histogram("bertcpu_request_duration_seconds",
                                  "Time from request to answer, by route", ["route"],
                                  buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._rejected = Counter("bertcpu_rejected_requests",
                                 "Requests refused with 429 (max concurrent requests in flight)",
                                 registry=self.registry)
        self._queue = Gauge("bertcpu_queue_depth", "Inputs waiting for the engine",
                            registry=self.registry)
        self._batch_size = Histogram("bertcpu_batch_size", "Inputs per engine batch",
                                     buckets=_SIZE_BUCKETS, registry=self.registry)
        self._batch_tokens = Histogram("bertcpu_batch_tokens", "Real tokens per engine batch",
                                       buckets=_TOKEN_BUCKETS, registry=self.registry)
        self._batch_seconds = Histogram("bertcpu_batch_duration_seconds",
                                        "Engine time per batch (forward pass and pooling)",
                                        buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._tokens = Counter("bertcpu_tokens", "Real tokens run through the engine",
                               registry=self.registry)

    def request(self, method, route, status, seconds):
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def rejected(self):
        self._rejected.inc()

    def queue_depth(self, items):
        self._queue.set(items)

    def batch(self, size, tokens, seconds):
        self._batch_size.observe(size)
        self._batch_tokens.observe(tokens)
        self._batch_seconds.observe(seconds)
        self._tokens.inc(tokens)

    def render(self):
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
