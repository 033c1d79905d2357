"""Dynamic batching: requests' token sequences wait in one queue; a single engine thread per model
takes as many as fit a token budget and runs them in one engine call.

While the engine runs one batch, new requests pile up and become the next batch, so one client
gets the engine to itself and 32 clients share a few large batches. The one wait on purpose: when
fewer items are queued than the last batch held, the engine thread gives the clients it has just
answered a moment to come back (until the queue holds as many, at most 5% of the last batch's run
time and 5 ms). Without it, closed-loop clients split into a group that arrives while a batch runs
and a group that arrives just after it, and the engine alternates a small batch with a large one.
The budget counts real tokens (the engine skips padding). A request whose inputs exceed the budget
is split across consecutive batches; its answer is sent when the last part is done.

Threads: routes call submit() and await the job on the event loop; only the engine thread calls
the model. Results go back to the loop with call_soon_threadsafe, so a forward pass never blocks
the loop.
"""
import asyncio
import collections
import threading
import time

from .schemas import ServiceError

_MAX_GATHER_SECONDS = 0.02


class Job:
    """One request's items, their results as they arrive, and how the request is doing."""

    __slots__ = ("items", "costs", "options", "future", "loop", "results", "taken", "done",
                 "cancelled", "batch_size")

    def __init__(self, items, costs, options, loop):
        self.items = items
        self.costs = costs
        self.options = options
        self.loop = loop
        self.future = loop.create_future()
        self.results = [None] * len(items)
        self.taken = 0          # items handed to the engine
        self.done = 0           # items with results
        self.cancelled = False  # set on the loop; the engine thread skips what is left
        self.batch_size = 0     # the largest engine batch (in items) this job's items ran in


class Batcher:
    """The bounded queue in front of one model and the thread that owns its engine.

    model: a kind from kinds.py (num_tokens(item), run(options, items)).
    max_batch_tokens: the token budget of one engine call (one item always fits, whatever its size).
    max_concurrent_requests: jobs admitted and unanswered; submit() refuses more with a 429.
    metrics: a metrics.Metrics (batch sizes, tokens, queue depth)."""

    def __init__(self, model, max_batch_tokens, max_concurrent_requests, metrics):
        self._model = model
        self._budget = max_batch_tokens
        self._limit = max_concurrent_requests
        self._metrics = metrics
        self._jobs = collections.deque()
        self._queued_items = 0
        self._condition = threading.Condition()
        self._closing = False
        self._last_batch = (0, 0.0)  # (items, seconds) of the last engine call
        self._active = 0  # read and written on the event loop only
        self._thread = threading.Thread(target=self._work, name="bertcpu-engine", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        """Run what is queued, then end the engine thread."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join()

    @property
    def alive(self):
        return self._thread.is_alive()

    # -- the event loop's side -------------------------------------------------------------

    def submit(self, items, options):
        """Queue a request's items (all run with `options`); returns its Job, whose future gets the
        results in item order. A 429 ServiceError when max_concurrent_requests are in flight."""
        if self._active >= self._limit:
            self._metrics.rejected()
            raise ServiceError(429, "overloaded", "Model is overloaded")
        job = Job(items, [self._model.num_tokens(item) for item in items], options,
                  asyncio.get_running_loop())
        self._active += 1
        job.future.add_done_callback(self._release)
        with self._condition:
            self._jobs.append(job)
            self._queued_items += len(items)
            self._metrics.queue_depth(self._queued_items)
            self._condition.notify()
        return job

    def cancel(self, job):
        """Drop a job whose client went away: its items not yet run are skipped."""
        job.cancelled = True
        job.future.cancel()

    def _release(self, _future):
        self._active -= 1

    # -- the engine thread -------------------------------------------------------------------

    def _work(self):
        while True:
            with self._condition:
                while not self._jobs and not self._closing:
                    self._condition.wait()
                if not self._jobs:
                    return
                self._gather()
                batch = self._take()
                self._metrics.queue_depth(self._queued_items)
            if batch:
                self._execute(batch)

    def _gather(self):
        """Wait (the lock held by the caller) while fewer items are queued than the last batch had,
        at most 5% of its run time and 5 ms."""
        items, seconds = self._last_batch
        deadline = time.perf_counter() + min(0.1 * seconds, _MAX_GATHER_SECONDS)
        while self._queued_items < items and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._condition.wait(remaining)

    def _take(self):
        """Items from the head of the queue up to the token budget: a list of (job, start, stop)."""
        batch, tokens = [], 0
        while self._jobs:
            job = self._jobs[0]
            if job.cancelled:
                self._jobs.popleft()
                self._queued_items -= len(job.items) - job.taken
                continue
            start = stop = job.taken
            while stop < len(job.items) and (tokens == 0 or tokens + job.costs[stop] <= self._budget):
                tokens += job.costs[stop]
                stop += 1
            if stop > start:
                batch.append((job, start, stop))
                job.taken = stop
                self._queued_items -= stop - start
            if stop < len(job.items):
                break  # the budget is spent
            self._jobs.popleft()
        return batch

    def _execute(self, batch):
        started = time.perf_counter()
        size = sum(stop - start for _, start, stop in batch)
        tokens = 0
        groups = {}
        for entry in batch:
            groups.setdefault(entry[0].options, []).append(entry)
        for options, entries in groups.items():
            items = [item for job, start, stop in entries for item in job.items[start:stop]]
            tokens += sum(job.costs[i] for job, start, stop in entries for i in range(start, stop))
            try:
                results = self._model.run(options, items)
            except Exception as error:  # a fault in the engine or model: fail these requests only
                for job, _, _ in entries:
                    job.cancelled = True
                    job.loop.call_soon_threadsafe(_fail, job, error)
                continue
            offset = 0
            for job, start, stop in entries:
                job.results[start:stop] = results[offset:offset + stop - start]
                offset += stop - start
                job.done += stop - start
                job.batch_size = max(job.batch_size, size)
                if job.done == len(job.items):
                    job.loop.call_soon_threadsafe(_resolve, job)
        seconds = time.perf_counter() - started
        self._last_batch = (size, seconds)
        self._metrics.batch(size, tokens, seconds)


def _resolve(job):
    if not job.future.done():
        job.future.set_result(job.results)


def _fail(job, error):
    if not job.future.done():
        job.future.set_exception(error)
