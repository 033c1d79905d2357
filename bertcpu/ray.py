"""Ray Data integration: embed a text column of a ``ray.data.Dataset`` with bertcpu on every worker.

    import ray
    from bertcpu.ray import embed_dataset

    ds = ray.data.read_parquet("s3://bucket/docs/")
    ds = embed_dataset(ds, "sentence-transformers/all-MiniLM-L6-v2", column="text")
    ds.write_parquet("s3://bucket/embeddings/")

``SentenceEmbedder`` is the callable class ``Dataset.map_batches`` runs in a pool of actors: each
actor loads the model once, then turns batches of rows into the same rows plus a vector column.
``embed_dataset`` sizes that pool for the cluster's CPUs; ``embed_files`` is the whole job from
Parquet or JSON lines files to Parquet or JSON lines files (what ``bertcpu embed --ray`` runs).

Every node must be able to load the model: a folder at the same path on each node (shared storage),
or a HuggingFace id in each node's cache or downloadable there.

Ray is an optional dependency (``pip install bertcpu[ray]``); it is imported only when these
functions run, so ``import bertcpu`` never needs it. (This module is ``bertcpu.ray``; ``import ray``
inside it is an absolute import and gets the Ray package.)
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import NamedTuple

__all__ = ["DEFAULT_THREADS_PER_ACTOR", "ActorPoolPlan", "SentenceEmbedder", "embed_dataset",
           "embed_files", "file_format", "job_failure_message", "plan_actor_pool"]

# Engine threads per actor when none are given: one actor per core. The work around the engine
# (pooling, Ray's batch handling) runs on one thread, so smaller actors keep the cores busier: on
# 2 cores, two 1-thread actors embedded 12-23% more rows/s than one 2-thread actor
# (bench/RESULTS.md). The price is memory: each actor holds its own copy of the model (BERT-base
# about 0.45 GB, BERT-large 1.3 GB, plus Ray's worker process); with a large model on nodes short
# of memory per core, pass num_threads=2 or 4.
DEFAULT_THREADS_PER_ACTOR = 1

BATCH_FORMATS = ("numpy", "pandas", "pyarrow")
FILE_FORMATS = ("parquet", "jsonl")
_FORMAT_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4", ".br", ".snappy")

# SentenceEmbedder's options, besides the model and the columns.
_EMBEDDER_OPTIONS = ("encode_batch_size", "normalize_embeddings", "prompt", "prompt_name",
                     "truncate_dim", "pooling", "max_seq_length", "revision", "cache_dir", "dtype")


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_column_names(column, output_column):
    for name, value in (("column", column), ("output_column", output_column)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if column == output_column:
        raise ValueError(f"output_column must differ from the text column ({column!r}); the "
                         f"texts are kept beside their vectors")


class SentenceEmbedder:
    """Callable class for ``ray.data.Dataset.map_batches``: text column in, vector column out.

    Ray builds one instance per actor, so the model is loaded once per actor and reused for every
    batch that actor receives. Each batch comes back with all its columns plus ``output_column``:
    float32 vectors equal to ``SentenceEncoder.encode`` of the same texts. With
    ``batch_format="numpy"`` (Ray's default) or ``"pandas"`` that column is a Ray tensor column
    of shape [dim]; with ``"pyarrow"`` it is a plain Arrow ``fixed_size_list<float>[dim]``,
    which any Parquet reader understands.

    model, pooling, max_seq_length, revision, cache_dir, dtype: as
      ``SentenceEncoder.from_pretrained``.
    num_threads: engine threads in this actor; by default the CPUs Ray reserved for the actor
      (``num_cpus`` of ``map_batches``), or bertcpu's default outside Ray.
    encode_batch_size, normalize_embeddings, prompt, prompt_name, truncate_dim: as the
      ``batch_size``, ``normalize_embeddings``, ... of ``SentenceEncoder.encode``. Ray's batches
      (``map_batches(batch_size=...)``) are split into engine batches of ``encode_batch_size``
      texts, longest first; the vectors do not depend on how rows are grouped.
    """

    def __init__(self, model, column="text", output_column="embedding", *, num_threads=None,
                 encode_batch_size=32, normalize_embeddings=None, prompt=None, prompt_name=None,
                 truncate_dim=None, pooling=None, max_seq_length=None, revision=None,
                 cache_dir=None, dtype="float32"):
        from bertcpu.sentence import SentenceEncoder

        _check_column_names(column, output_column)
        _check_positive_int("num_threads", num_threads, allow_none=True)
        if num_threads is None:
            num_threads = _cpus_reserved_by_ray()
        self.column = column
        self.output_column = output_column
        self.encoder = SentenceEncoder.from_pretrained(
            model, num_threads=num_threads, pooling=pooling, max_seq_length=max_seq_length,
            revision=revision, cache_dir=cache_dir, dtype=dtype)
        self.encode_options = {"batch_size": encode_batch_size,
                               "normalize_embeddings": normalize_embeddings, "prompt": prompt,
                               "prompt_name": prompt_name, "truncate_dim": truncate_dim}
        # Encoding nothing checks every option (and the prompt against this model) now, so a
        # mistake fails the actor's start rather than its first batch.
        self.dimension = self.encoder.encode([], **self.encode_options).shape[1]

    def __call__(self, batch):
        texts = self._texts(batch)
        vectors = self.encoder.encode(texts, **self.encode_options)
        if isinstance(batch, dict):
            result = dict(batch)
            result[self.output_column] = vectors
            return result
        if _is_arrow_table(batch):
            import pyarrow as pa

            column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)),
                                                        self.dimension)
            return batch.append_column(self.output_column, column)
        return batch.assign(**{self.output_column: list(vectors)})

    def _texts(self, batch):
        if isinstance(batch, dict):
            columns = list(batch)
        elif _is_arrow_table(batch) or _is_pandas_frame(batch):
            columns = list(batch.column_names if _is_arrow_table(batch) else batch.columns)
        else:
            raise TypeError(f"SentenceEmbedder takes batches in the formats "
                            f"{', '.join(BATCH_FORMATS)}; got {type(batch).__name__}")
        if self.column not in columns:
            raise KeyError(f"no column {self.column!r} to embed; the dataset's columns are "
                           f"{', '.join(map(repr, columns))}")
        if self.output_column in columns:
            raise ValueError(f"the dataset already has a column {self.output_column!r}; choose "
                             f"another output_column (or drop that column first)")
        if _is_arrow_table(batch):
            texts = batch.column(self.column).to_pylist()
        else:
            texts = batch[self.column].tolist()
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"column {self.column!r} holds {text!r} (of type "
                                f"{type(text).__name__}); every value must be a string (drop or "
                                f"fill the missing texts first)")
        return texts


def _is_arrow_table(batch):
    return type(batch).__module__.startswith("pyarrow") and hasattr(batch, "column_names")


def _is_pandas_frame(batch):
    return type(batch).__module__.startswith("pandas") and hasattr(batch, "columns")


def _cpus_reserved_by_ray():
    """The CPUs Ray reserved for the calling actor, rounded up to whole threads; None outside an
    actor or when it reserved none."""
    import ray

    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    if context.get_actor_id() is None:  # the driver, which has no reservation
        return None
    cpus = context.get_assigned_resources().get("CPU")
    return math.ceil(cpus) if cpus else None


def _node_cpus():
    """Whole CPUs of each live node of the connected cluster."""
    import ray

    return [int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]


class ActorPoolPlan(NamedTuple):
    """How embed_dataset lays out its actors on a cluster."""

    num_threads: int  # engine threads in each actor
    num_cpus: float   # CPUs each actor reserves from Ray
    size: int         # actors


def plan_actor_pool(node_cpus=None, num_threads=None):
    """The actor pool for a cluster whose live nodes have node_cpus CPUs (default: the connected
    cluster's).

    Threads per actor: num_threads, by default DEFAULT_THREADS_PER_ACTOR. Actors: as many as
    fit node by node (an actor's threads cannot span two machines). Each actor reserves a little
    less than its threads so that every node keeps one CPU for the dataset's read and write
    tasks, which take one CPU each: a pool holding every CPU would wait forever for the reads
    that feed it. Those tasks are short next to the embedding, so the actors still run a thread
    per core. (On a cluster of unequal nodes the smallest fitting node sets that reservation;
    Ray Data spreads the actors over the nodes, and ``num_cpus`` can be given to embed_dataset to
    place them exactly.)
    """
    node_cpus = _node_cpus() if node_cpus is None else list(node_cpus)
    largest = max(node_cpus, default=0)
    if largest < 1:
        raise RuntimeError("the Ray cluster has no node with a CPU to run the model on")
    _check_positive_int("num_threads", num_threads, allow_none=True)
    threads = DEFAULT_THREADS_PER_ACTOR if num_threads is None else num_threads
    if threads > largest:
        raise ValueError(f"num_threads={threads} is more than the CPUs of any node of the "
                         f"cluster (the largest has {largest})")
    actors_per_node = [(cpus, cpus // threads) for cpus in node_cpus if cpus >= threads]
    reserved = min([threads] + [(cpus - 1) / actors for cpus, actors in actors_per_node])
    # Ray counts resources in units of 1/10000.
    reserved = math.floor(reserved * 10000) / 10000
    return ActorPoolPlan(threads, reserved, sum(actors for _, actors in actors_per_node))


def embed_dataset(ds, model, column="text", output_column="embedding", *, batch_size=512,
                  num_threads=None, concurrency=None, num_cpus=None, batch_format="numpy",
                  encode_batch_size=32, normalize_embeddings=None, prompt=None, prompt_name=None,
                  truncate_dim=None, pooling=None, max_seq_length=None, revision=None,
                  cache_dir=None, dtype="float32", **map_batches_args):
    """``ds`` plus a vector column: a lazy ``ray.data.Dataset`` that embeds ``column`` with
    ``model`` in a pool of actors when it runs.

    batch_size: rows Ray hands an actor at a time (``map_batches``' batch_size).
    num_threads, concurrency, num_cpus: engine threads per actor, actors in the pool (an int, or
      a (min, max) range for an autoscaling pool) and CPUs each actor reserves; by default as
      ``plan_actor_pool`` lays them out on the cluster as it is now.
    batch_format: how batches reach the actors, "numpy", "pandas" or "pyarrow"; it decides the
      vector column's type (see ``SentenceEmbedder``).
    map_batches_args: further arguments for ``map_batches`` (``memory``, ``resources``,
      ``runtime_env``, ...).
    The other options are ``SentenceEmbedder``'s.

    A dead actor is restarted by Ray (its model loaded again) and the batches it held are run
    again, so no row is lost or repeated: Ray Data's actor pools restart and retry by default.
    Rows come out in input order when Ray is asked to keep it:
    ``ray.data.DataContext.get_current().execution_options.preserve_order = True`` before the
    dataset is created. (Ray's ``write_parquet`` may still interleave the blocks inside a file;
    ``embed_files`` writes in order.)

    A model folder given by a relative path is made absolute here, since Ray's workers need not
    run in the driver's working directory.
    """
    import ray
    import ray.data

    _check_column_names(column, output_column)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("encode_batch_size", encode_batch_size)
    if batch_format not in BATCH_FORMATS:
        raise ValueError(f"batch_format must be one of {', '.join(BATCH_FORMATS)}, "
                         f"got {batch_format!r}")
    if not ray.is_initialized():
        # map_batches would start a local Ray anyway; starting it here lets the pool be sized
        # from that instance's CPUs.
        ray.init()
    if isinstance(model, (str, os.PathLike)) and os.path.isdir(model):
        model = os.path.abspath(model)
    plan = plan_actor_pool(num_threads=num_threads)
    if concurrency is None:
        pool = ray.data.ActorPoolStrategy(size=plan.size)
    elif isinstance(concurrency, tuple):
        if len(concurrency) != 2:
            raise ValueError(f"concurrency must be a number of actors or a (min, max) pair, got "
                             f"{concurrency!r}")
        for value in concurrency:
            _check_positive_int("concurrency", value)
        if concurrency[0] > concurrency[1]:
            raise ValueError(f"concurrency (min, max) has min > max: {concurrency!r}")
        pool = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    else:
        _check_positive_int("concurrency", concurrency)
        pool = ray.data.ActorPoolStrategy(size=concurrency)
    embedder_options = {
        "column": column, "output_column": output_column, "num_threads": plan.num_threads,
        "encode_batch_size": encode_batch_size, "normalize_embeddings": normalize_embeddings,
        "prompt": prompt, "prompt_name": prompt_name, "truncate_dim": truncate_dim,
        "pooling": pooling, "max_seq_length": max_seq_length, "revision": revision,
        "cache_dir": cache_dir, "dtype": dtype,
    }
    return ds.map_batches(
        SentenceEmbedder, fn_constructor_args=(model,), fn_constructor_kwargs=embedder_options,
        batch_size=batch_size, batch_format=batch_format, compute=pool,
        num_cpus=plan.num_cpus if num_cpus is None else num_cpus, **map_batches_args)


def file_format(path, role):
    """'parquet' or 'jsonl' for a file or folder path, from its suffix (a compression suffix such
    as .gz ignored) or, for a local folder, from the files in it; None when it cannot tell."""
    if isinstance(path, (list, tuple)):
        formats = {file_format(p, role) for p in path}
        return formats.pop() if len(formats) == 1 else None
    name = str(path).rstrip("/")
    lowered = name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if lowered.endswith(suffix):
            lowered = lowered[:-len(suffix)]
    extension = os.path.splitext(lowered)[1]
    if extension in _FORMAT_SUFFIXES:
        return _FORMAT_SUFFIXES[extension]
    if role == "input" and os.path.isdir(name):
        found = {file_format(entry.name, role) for entry in os.scandir(name) if entry.is_file()}
        found.discard(None)
        if len(found) == 1:
            return found.pop()
    return None


def _output_location(output):
    """(pyarrow filesystem, path in it) for a local path or a URI."""
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(output if "://" in output else os.path.abspath(output))


def _check_output_is_new(output):
    """Refuse an output folder that already holds files: the rows of an earlier run would be read
    back with the new ones."""
    import pyarrow.fs

    filesystem, path = _output_location(output)
    info = filesystem.get_file_info(path)
    if info.type == pyarrow.fs.FileType.File:
        raise FileExistsError(f"{output} is a file; the output is a folder of files")
    if info.type == pyarrow.fs.FileType.Directory:
        if filesystem.get_file_info(pyarrow.fs.FileSelector(path, recursive=False)):
            raise FileExistsError(f"{output} already holds files; remove them or choose another "
                                  f"output folder")


def _json_lines(table, vector_column):
    """JSON lines for an Arrow table: pandas writes the other columns (whatever their types);
    the vectors are written here with 9 significant digits, so every float32 reads back exactly
    (pandas rounds to 15 decimal places, which loses small components)."""
    vectors = table.column(vector_column).combine_chunks()
    values = vectors.flatten().to_numpy(zero_copy_only=False).reshape(len(vectors), -1).tolist()
    others = table.drop_columns([vector_column])
    if others.num_columns:
        frame = others.to_pandas()
        records = frame.to_json(orient="records", lines=True, force_ascii=False,
                                date_format="iso").split("\n")[:table.num_rows]
    else:
        records = ["{}"] * table.num_rows
    key = json.dumps(vector_column, ensure_ascii=False)
    lines = []
    for record, vector in zip(records, values):
        numbers = ",".join("%.9g" % value for value in vector)
        separator = "," if record != "{}" else ""
        lines.append(f"{record[:-1]}{separator}{key}:[{numbers}]}}\n")
    return "".join(lines)


def _ordered_files_datasink(output, file_format, rows_per_file, vector_column):
    """A Ray Datasink writing one file per write task, named by the task's position
    (part-00000000.parquet, ...), its blocks in the order they arrive.

    Ray's own Parquet writer (pyarrow's multi-threaded dataset writer) may interleave the blocks
    of one file even when Ray is asked to preserve order; here each file is written block after
    block, and the file names sort in task order, which is input order when order is preserved.
    A retried write task rewrites its own file, so no row is written twice.
    """
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class OrderedFilesDatasink(Datasink):
        def __init__(self):
            self.output = output
            self.rows_written = 0

        @property
        def min_rows_per_write(self):
            return rows_per_file

        def on_write_start(self, *args, **kwargs):
            filesystem, path = _output_location(self.output)
            filesystem.create_dir(path, recursive=True)

        def write(self, blocks, ctx):
            import pyarrow.parquet

            tables = [BlockAccessor.for_block(block).to_arrow() for block in blocks]
            tables = [table for table in tables if table.num_rows]
            if not tables:
                return 0
            filesystem, folder = _output_location(self.output)
            path = f"{folder.rstrip('/')}/part-{ctx.task_idx:08d}.{file_format}"
            with filesystem.open_output_stream(path) as stream:
                if file_format == "parquet":
                    schema = tables[0].schema
                    with pyarrow.parquet.ParquetWriter(stream, schema) as writer:
                        for table in tables:
                            writer.write_table(table if table.schema.equals(schema)
                                               else table.cast(schema))
                else:
                    for table in tables:
                        stream.write(_json_lines(table, vector_column).encode("utf-8"))
            return sum(table.num_rows for table in tables)

        def on_write_complete(self, write_result):
            # Ray passes a WriteResult (2.40 and later) or the list of write() returns.
            returns = getattr(write_result, "write_returns", write_result)
            self.rows_written = sum(returns)

    return OrderedFilesDatasink()


def _check_input_columns(schema, input, column, output_column):
    import pyarrow.types

    names = list(schema.names)
    if column not in names:
        raise ValueError(f"{input}: no column {column!r} to embed; its columns are "
                         f"{', '.join(map(repr, names))}")
    if output_column in names:
        raise ValueError(f"{input} already has a column {output_column!r}; choose another name "
                         f"for the vectors")
    kind = schema.types[names.index(column)]
    if not (pyarrow.types.is_string(kind) or pyarrow.types.is_large_string(kind)):
        raise ValueError(f"{input}: column {column!r} holds {kind}, not text")


def embed_files(input, output, model, *, column="text", output_column="embedding",
                input_format=None, output_format=None, address=None, preserve_order=True,
                rows_per_file=50_000, check_on_driver=True, **options):
    """Embed the ``column`` of Parquet or JSON lines files into a folder of Parquet or JSON lines
    files, on a Ray cluster: what ``bertcpu embed --ray`` runs. Returns the number of rows
    written.

    input: a file, a folder or a list of them, local or any URI Ray's readers accept (s3://,
      gs://, ...). Every node must be able to read it.
    output: a folder (created; refused if it already holds files), local or a URI every node can
      write to, that receives part-00000000.parquet (or .jsonl), part-00000001..., each with every
      input column plus ``output_column``. In Parquet the vectors are
      ``fixed_size_list<float>[dim]``; in JSON lines, lists of numbers that read back exactly.
    input_format, output_format: "parquet" or "jsonl"; by default from the paths' suffixes
      (.parquet; .jsonl, .json, .ndjson) or, for a local input folder, its files; the output
      takes the input's format when its name does not tell.
    address: the cluster to connect to when Ray is not initialized yet (``ray.init(address)``:
      None finds a running local cluster or starts one, "auto", "HOST:6379", "ray://HOST:10001").
    preserve_order: rows in input order, the file names sorting in that order (Ray's
      preserve_order, for this job only).
    rows_per_file: rows gathered into each output file (the last one of a job may have fewer).
    check_on_driver: load the model here before starting the job, so that a missing model or a
      bad option fails at once with its own message rather than in every actor; turn it off when
      this machine cannot see the model (a Ray Client driver outside the cluster).
    options: any option of ``embed_dataset`` (num_threads, concurrency, batch_size,
      normalize_embeddings, prompt, ...).
    The input's columns are checked before the job starts; an error inside the job (a value that
    is not a string, say) raises Ray's exception, which ``job_failure_message`` shortens.
    """
    import ray
    import ray.data

    input_format = input_format or file_format(input, "input")
    if input_format is None:
        raise ValueError(f"cannot tell the format of {input!r}: name it .parquet or .jsonl, or "
                         f"give the input format ({' or '.join(FILE_FORMATS)})")
    if input_format not in FILE_FORMATS:
        raise ValueError(f"input format must be {' or '.join(FILE_FORMATS)}, got {input_format!r}")
    if not isinstance(output, str) or not output:
        raise ValueError(f"output must be a folder path, got {output!r}")
    output_format = output_format or file_format(output, "output") or input_format
    if output_format not in FILE_FORMATS:
        raise ValueError(f"output format must be {' or '.join(FILE_FORMATS)}, "
                         f"got {output_format!r}")
    _check_positive_int("rows_per_file", rows_per_file)
    _check_output_is_new(output)
    if check_on_driver:
        from bertcpu import runtime

        embedder_options = {name: value for name, value in options.items()
                            if name in _EMBEDDER_OPTIONS}
        # Loading sets the process-wide thread count: keep the caller's.
        threads = runtime.get_num_threads()
        try:
            SentenceEmbedder(model, column, output_column, num_threads=1, **embedder_options)
        finally:
            runtime.set_num_threads(threads)

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address)
    elif address is not None:
        raise RuntimeError(f"Ray is already initialized; cannot connect to {address!r} as well")
    # Datasets take a copy of the current DataContext when created (and older Ray versions read
    # it while running), so setting it for the duration of this call leaves the caller's own
    # datasets as they were.
    context = ray.data.DataContext.get_current()
    previous_order = context.execution_options.preserve_order
    context.execution_options.preserve_order = preserve_order
    try:
        if input_format == "parquet":
            ds = ray.data.read_parquet(input)
        else:
            ds = ray.data.read_json(input)
        _check_input_columns(ds.schema(), input, column, output_column)
        # Arrow batches give a plain fixed_size_list vector column, the portable form in files.
        ds = embed_dataset(ds, model, column, output_column, batch_format="pyarrow", **options)
        sink = _ordered_files_datasink(output, output_format, rows_per_file, output_column)
        ds.write_datasink(sink)
        return sink.rows_written
    finally:
        context.execution_options.preserve_order = previous_order
        if started_here:
            ray.shutdown()


# An exception line of a traceback: "TypeError: ...", "bertcpu.hub.ModelNotFoundError: ...".
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception)): (.+)$")


def job_failure_message(error):
    """The first exception raised by bertcpu or user code inside a failed Ray job, as
    "TypeError: column 'text' holds None ...", from the traceback text Ray carries back (Ray does
    not keep the exception object); Ray's own summary line when there is none."""
    lines = str(error).splitlines()
    for line in lines:
        match = _EXCEPTION_LINE.match(line.strip())
        if match and not line.strip().startswith("ray."):
            return f"{match.group(1)}: {match.group(2)}"
    for line in lines:
        match = _EXCEPTION_LINE.match(line.strip())
        if match:
            return f"{match.group(1)}: {match.group(2)}"
    return next((line.strip() for line in lines if line.strip()), type(error).__name__)
