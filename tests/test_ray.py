"""bertcpu.ray on a real local Ray cluster (127.0.0.1, 2 CPUs): the vectors of embed_dataset and
embed_files against single-process SentenceEncoder.encode of the same texts, row order, every
batch format, an actor killed mid-run, and the errors a user can meet.

Skipped only when Ray is not installed (it comes with the test extra).
"""
import json
import os
import random
import signal
import sys

import numpy as np
import pytest

# Ray replaces 127.0.0.1 by the machine's routable address unless told that it forms no
# multi-machine cluster; this keeps the test cluster on the loopback interface. It is read when
# Ray is first imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import bertcpu  # noqa: E402
import bertcpu.ray as bertcpu_ray  # noqa: E402  (after the skip: it needs Ray to run)
from bertcpu import SentenceEncoder  # noqa: E402
from bertcpu.ray import (SentenceEmbedder, embed_dataset, embed_files, file_format,  # noqa: E402
                         plan_actor_pool)

# Set before Ray starts, so every worker inherits it: the folder where DyingEmbedder looks for
# its "armed" file (and leaves the "died" file, once).
DEATH_FOLDER_VARIABLE = "BERTCPU_TEST_RAY_DEATH_FOLDER"

WORDS = ("the quick brown fox jumps over a lazy dog while ray cluster nodes embed sentences "
         "quickly on every cpu core Ünïcödé 中文 🙂 naïve café").split()


def make_texts(count, seed=0):
    """Short texts of 0-14 words (an empty one included), one long enough to be truncated and one
    with characters that JSON lines writers must escape."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14))) for _ in range(count)]
    texts[count // 2] = "a very long text " * 80
    texts[3] = 'two\nlines, a "quote", a tab\t and a line separator \u2028 here'
    return texts


TEXTS = make_texts(2000)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    death_folder = tmp_path_factory.mktemp("ray-death")
    os.environ[DEATH_FOLDER_VARIABLE] = str(death_folder)
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False,
             object_store_memory=200 * 1024 * 1024)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    try:
        yield death_folder
    finally:
        ray.shutdown()
        del os.environ[DEATH_FOLDER_VARIABLE]


@pytest.fixture()
def preserve_order(ray_cluster):
    """Ask Ray to keep row order for datasets created in the test."""
    options = ray.data.DataContext.get_current().execution_options
    previous = options.preserve_order
    options.preserve_order = True
    yield
    options.preserve_order = previous


@pytest.fixture(scope="module")
def encoder(minilm_dir):
    return SentenceEncoder.from_pretrained(minilm_dir, num_threads=2)


@pytest.fixture(scope="module")
def reference(encoder):
    """Single-process vectors of TEXTS, the ones every Ray run must reproduce."""
    return encoder.encode(TEXTS)


def dataset_of(texts):
    return ray.data.from_items([{"id": i, "text": text} for i, text in enumerate(texts)])


def vectors_and_ids(rows, column="embedding"):
    return np.stack([row[column] for row in rows]), [row["id"] for row in rows]


# ---------------------------------------------------------------------------------------------
# Results against the single-process encoder
# ---------------------------------------------------------------------------------------------

def test_embed_dataset_in_order_equals_single_process(minilm_dir, reference, preserve_order):
    embedded = embed_dataset(dataset_of(TEXTS), minilm_dir, batch_size=256)
    vectors, ids = vectors_and_ids(embedded.take_all())
    assert ids == list(range(len(TEXTS)))
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape
    # The engine's results do not depend on how texts are grouped into batches or on the thread
    # count (checked when this test was written), so Ray's batches give the very same bits.
    np.testing.assert_array_equal(vectors, reference)


def test_two_actors_unordered_every_row_once(minilm_dir, reference, ray_cluster):
    texts = TEXTS[:1000]
    embedded = embed_dataset(dataset_of(texts), minilm_dir, batch_size=100, num_threads=1,
                             concurrency=2)
    vectors, ids = vectors_and_ids(embedded.take_all())
    assert sorted(ids) == list(range(len(texts)))
    np.testing.assert_array_equal(vectors, reference[ids])


def test_pandas_batches_and_encode_options(minilm_dir, encoder, preserve_order):
    # (Arrow batches, the third format, are what embed_files runs: tested below.)
    texts = TEXTS[:300]
    options = {"normalize_embeddings": False, "prompt": "query: ", "truncate_dim": 100,
               "encode_batch_size": 7}
    embedded = embed_dataset(dataset_of(texts), minilm_dir, "text", "vector", batch_size=64,
                             batch_format="pandas", **options)
    vectors, ids = vectors_and_ids(embedded.take_all(), "vector")
    assert ids == list(range(len(texts)))
    expected = encoder.encode(texts, normalize_embeddings=False, prompt="query: ", truncate_dim=100)
    np.testing.assert_array_equal(vectors, expected)


# ---------------------------------------------------------------------------------------------
# A worker dies mid-run
# ---------------------------------------------------------------------------------------------

class DyingEmbedder(SentenceEmbedder):
    """SentenceEmbedder whose process kills itself (SIGKILL, as the OOM killer would) on its
    third batch, once per armed test: the first process to create the "died" file dies."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        folder = os.environ[DEATH_FOLDER_VARIABLE]
        if self.calls == 3 and os.path.exists(os.path.join(folder, "armed")):
            try:
                os.close(os.open(os.path.join(folder, "died"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(batch)


def test_killed_actor_is_restarted_without_losing_or_repeating_rows(minilm_dir, reference,
                                                                      ray_cluster, monkeypatch):
    texts = TEXTS[:600]
    # Ray's workers cannot import this test module: send DyingEmbedder's code along with it.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    (ray_cluster / "armed").touch()
    # embed_dataset builds its pool from bertcpu.ray.SentenceEmbedder; the dying subclass takes
    # its place, with every option and the fault tolerance embed_dataset sets up.
    monkeypatch.setattr(bertcpu_ray, "SentenceEmbedder", DyingEmbedder)
    try:
        embedded = embed_dataset(dataset_of(texts), minilm_dir, batch_size=50, num_threads=1,
                                 concurrency=2)
        vectors, ids = vectors_and_ids(embedded.take_all())
    finally:
        (ray_cluster / "armed").unlink()
    assert (ray_cluster / "died").exists(), "no actor was killed: the test tested nothing"
    assert sorted(ids) == list(range(len(texts)))
    np.testing.assert_array_equal(vectors, reference[ids])


# ---------------------------------------------------------------------------------------------
# Files (what `bertcpu embed --ray` runs)
# ---------------------------------------------------------------------------------------------

def read_output(folder, file_format_name):
    files = sorted(os.listdir(folder))
    assert files and all(f.startswith("part-") and f.endswith("." + file_format_name)
                         for f in files)
    if file_format_name == "parquet":
        table = pa.concat_tables(pq.read_table(os.path.join(folder, f)) for f in files)
        assert table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
        return (np.stack(table.column("embedding").to_numpy(zero_copy_only=False)),
                table.column("id").to_pylist(), table.column("text").to_pylist())
    rows = [json.loads(line) for f in files
            for line in open(os.path.join(folder, f), encoding="utf-8")]
    return (np.array([row["embedding"] for row in rows], dtype=np.float32),
            [row["id"] for row in rows], [row["text"] for row in rows])


@pytest.mark.parametrize("input_format,output_format", [("parquet", "jsonl"), ("jsonl", "parquet")])
def test_embed_files_keeps_order_and_values(minilm_dir, reference, ray_cluster, tmp_path,
                                            input_format, output_format):
    texts = TEXTS[:500]
    if input_format == "parquet":
        source = tmp_path / "input"
        source.mkdir()
        for part, start in enumerate(range(0, len(texts), 200)):
            chunk = texts[start:start + 200]
            pq.write_table(pa.table({"id": list(range(start, start + len(chunk))), "text": chunk}),
                           source / f"part-{part}.parquet")
    else:
        source = tmp_path / "input.jsonl"
        with open(source, "w", encoding="utf-8") as f:
            for i, text in enumerate(texts):
                f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    output = tmp_path / f"output.{output_format}"
    # One 2-thread actor: the default pool (an actor per core) is tested above; fewer actor
    # start-ups keep this test short.
    threads = bertcpu.get_num_threads()
    rows = embed_files(str(source), str(output), minilm_dir, batch_size=100, rows_per_file=150,
                       num_threads=2)
    assert rows == len(texts)
    # The model check on the driver leaves this process's engine as it was.
    assert bertcpu.get_num_threads() == threads
    vectors, ids, read_texts = read_output(output, output_format)
    assert ids == list(range(len(texts)))
    assert read_texts == texts
    np.testing.assert_array_equal(vectors, reference[:len(texts)])
    with pytest.raises(FileExistsError, match="already holds files"):
        embed_files(str(source), str(output), minilm_dir)


def test_embed_files_rejects_unknown_formats(minilm_dir, tmp_path):
    (tmp_path / "texts.csv").write_text("text\nhello\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        embed_files(str(tmp_path / "texts.csv"), str(tmp_path / "out"), minilm_dir)
    with pytest.raises(ValueError, match="output format must be parquet or jsonl"):
        embed_files(str(tmp_path / "texts.csv"), str(tmp_path / "out"), minilm_dir,
                    input_format="parquet", output_format="csv")


def run_cli(*args, cwd=None):
    import subprocess

    return subprocess.run([sys.executable, "-m", "bertcpu", "embed", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_embeds_files_on_the_cluster(minilm_dir, reference, ray_cluster, tmp_path):
    texts = TEXTS[:300]
    source = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": list(range(len(texts))), "body": texts}), source)
    output = tmp_path / "vectors"
    address = ray.get_runtime_context().gcs_address
    # A relative model folder: the actors run elsewhere, so embed_dataset makes it absolute.
    result = run_cli("--ray", address, "--model", minilm_dir.name, "--input", source,
                     "--field", "body", "--output", output, "--threads", 2, cwd=minilm_dir.parent)
    assert result.returncode == 0, result.stderr
    assert f"embedded {len(texts)} rows into {output}" in result.stderr
    table = pa.concat_tables(pq.read_table(output / name) for name in sorted(os.listdir(output)))
    assert table.column("id").to_pylist() == list(range(len(texts)))
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(vectors, reference[:len(texts)])


def test_cli_errors_are_one_line(minilm_dir, ray_cluster, tmp_path):
    address = ray.get_runtime_context().gcs_address
    source = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["fine", None]}), source)
    cases = [
        (["--input", source, "--output", tmp_path / "a", "--field", "body"],
         "no column 'body' to embed; its columns are 'text'"),
        (["--input", source, "--output", tmp_path / "b"],
         "the Ray job failed: TypeError: column 'text' holds None"),
        (["--input", "-", "--output", tmp_path / "c"], "--ray needs --input"),
    ]
    for arguments, message in cases:
        result = run_cli("--ray", address, "--model", minilm_dir, "--threads", 2, *arguments)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("bertcpu: error: ") and message in lines[-1], result.stderr
        assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# Errors inside the job
# ---------------------------------------------------------------------------------------------

def test_missing_text_column_names_the_columns(minilm_dir, ray_cluster):
    ds = ray.data.from_items([{"body": "hello"}])
    with pytest.raises(Exception, match="no column 'text' to embed.*'body'"):
        embed_dataset(ds, minilm_dir).take_all()


def test_missing_model_fails_the_job(ray_cluster, tmp_path):
    ds = ray.data.from_items([{"text": "hello"}])
    with pytest.raises(Exception, match="no-such-model"):
        embed_dataset(ds, str(tmp_path / "no-such-model")).take_all()


# ---------------------------------------------------------------------------------------------
# SentenceEmbedder called directly (no cluster) and the pool layout
# ---------------------------------------------------------------------------------------------

def test_embedder_batches_without_ray(minilm_dir, encoder):
    texts = TEXTS[:20]
    embedder = SentenceEmbedder(minilm_dir, num_threads=1)
    ids = np.arange(len(texts))
    batch = {"id": ids, "text": np.array(texts, dtype=object)}
    result = embedder(batch)
    assert set(result) == {"id", "text", "embedding"} and set(batch) == {"id", "text"}
    np.testing.assert_array_equal(result["embedding"], encoder.encode(texts))
    import pandas

    frame = pandas.DataFrame({"text": texts})
    result = embedder(frame)
    assert list(frame.columns) == ["text"]
    np.testing.assert_array_equal(np.stack(result["embedding"]), encoder.encode(texts))


def test_embedder_input_errors(minilm_dir):
    embedder = SentenceEmbedder(minilm_dir, num_threads=1)
    with pytest.raises(TypeError, match="holds None \\(of type NoneType\\)"):
        embedder({"text": np.array(["a", None], dtype=object)})
    with pytest.raises(TypeError, match="holds 1 \\(of type int\\)"):
        embedder({"text": np.array([1, 2])})
    with pytest.raises(ValueError, match="already has a column 'embedding'"):
        embedder({"text": np.array(["a"], dtype=object), "embedding": np.zeros(1)})
    with pytest.raises(TypeError, match="batches in the formats"):
        embedder(["a", "b"])
    with pytest.raises(ValueError, match="output_column must differ"):
        SentenceEmbedder(minilm_dir, "text", "text")
    with pytest.raises(ValueError, match="prompt_name 'query'"):
        SentenceEmbedder(minilm_dir, prompt_name="query")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        SentenceEmbedder(minilm_dir, encode_batch_size=0)


@pytest.mark.parametrize("node_cpus,num_threads,expected", [
    ([2], None, (1, 0.5, 2)),             # an actor per core, one CPU left for reads in all
    ([2], 2, (2, 1.0, 1)),
    ([64], None, (1, 0.9843, 64)),        # 64 actors reserve 62.9952 CPUs
    ([64], 4, (4, 3.9375, 16)),
    ([8, 2], 4, (4, 3.5, 2)),             # the 2-CPU node cannot hold a 4-thread actor
    ([8, 4, 4], 2, (2, 1.5, 8)),
    ([1], None, (1, 0.0, 1)),
    ([0, 16], 3, (3, 3.0, 5)),            # a head node without CPUs holds no actor
])
def test_plan_actor_pool(node_cpus, num_threads, expected):
    assert tuple(plan_actor_pool(node_cpus, num_threads)) == expected


def test_plan_actor_pool_errors():
    with pytest.raises(ValueError, match="num_threads=8 is more than the CPUs of any node"):
        plan_actor_pool([4, 4], 8)
    with pytest.raises(RuntimeError, match="no node with a CPU"):
        plan_actor_pool([0])
    with pytest.raises(ValueError, match="num_threads must be a positive integer"):
        plan_actor_pool([4], 0)


def test_file_format(tmp_path):
    assert file_format("s3://bucket/docs.parquet", "input") == "parquet"
    assert file_format("docs.JSONL.gz", "input") == "jsonl"
    assert file_format(["a.json", "b.ndjson"], "input") == "jsonl"
    assert file_format(["a.json", "b.parquet"], "input") is None
    (tmp_path / "part-0.parquet").touch()
    assert file_format(str(tmp_path), "input") == "parquet"
    assert file_format(str(tmp_path), "output") is None
