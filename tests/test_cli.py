"""The `bertcpu` command end to end, through `python -m bertcpu` in a subprocess: every output is
checked against the Python API (itself checked against sentence-transformers) or transformers,
and every user mistake must end in one line on stderr, a non-zero exit and no traceback."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import bertcpu
from bertcpu import SentenceEncoder

REPO = pathlib.Path(bertcpu.__file__).resolve().parent.parent
TEXTS = ["The first sentence.", "", "Ünïcödé and 中文", "a somewhat longer sentence " * 5, "last"]

TINY_BERT = dict(hidden_size=32, num_attention_heads=2, intermediate_size=37, num_hidden_layers=2,
                 vocab_size=30522, max_position_embeddings=64)


def run_cli(*args, stdin=None, cwd=None, env=None, timeout=600):
    environment = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "bertcpu", *map(str, args)], input=stdin,
                          capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=timeout)


def assert_ok(result):
    assert result.returncode == 0, f"exit {result.returncode}, stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def assert_user_error(result, *fragments, status=1):
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("bertcpu"), lines[0]
    assert "error:" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def read_jsonl(text):
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r["text"] for r in records], np.array([r["embedding"] for r in records], dtype=np.float32)


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return SentenceEncoder.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def tiny_dir(bert_dir_factory, minilm_dir, tmp_path_factory):
    """A plain random BERT folder (mean pooling), small enough for fast CLI runs."""
    folder = tmp_path_factory.mktemp("tiny")
    shutil.copytree(bert_dir_factory(**TINY_BERT), folder, dirs_exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_dir / name, folder / name)
    return folder


# ---------------------------------------------------------------------------------------------
# embed
# ---------------------------------------------------------------------------------------------

def test_embed_arguments_to_stdout(minilm_dir, minilm):
    result = assert_ok(run_cli("embed", "--model", minilm_dir, *TEXTS))
    texts, vectors = read_jsonl(result.stdout)
    assert texts == TEXTS
    np.testing.assert_allclose(vectors, minilm.encode(TEXTS), atol=1e-6)
    assert result.stderr == ""  # not a terminal: no progress bar


def test_embed_file_to_npy(minilm_dir, minilm, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    output = tmp_path / "vectors.npy"
    assert_ok(run_cli("embed", "-m", minilm_dir, "--input", source, "--output", output,
                      "--batch-size", 2))
    vectors = np.load(output)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(vectors, minilm.encode(TEXTS), atol=1e-6)
    assert not list(tmp_path.glob("*.partial"))


def test_embed_windows_line_endings_and_no_final_newline(minilm_dir, minilm, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_bytes("\r\n".join(TEXTS).encode("utf-8"))
    result = assert_ok(run_cli("embed", "-m", minilm_dir, "--input", source))
    texts, vectors = read_jsonl(result.stdout)
    assert texts == TEXTS
    np.testing.assert_allclose(vectors, minilm.encode(TEXTS), atol=1e-6)


def test_embed_stdin_jsonl_to_jsonl(minilm_dir, minilm, tmp_path):
    records = [{"id": i, "body": text} for i, text in enumerate(TEXTS)]
    stdin = "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n"
    output = tmp_path / "out.jsonl"
    assert_ok(run_cli("embed", "-m", minilm_dir, "--input", "-", "--field", "body", "--output",
                      output, stdin=stdin))
    texts, vectors = read_jsonl(output.read_text(encoding="utf-8"))
    assert texts == TEXTS
    np.testing.assert_allclose(vectors, minilm.encode(TEXTS), atol=1e-6)


def test_embed_stdin_lines_to_npy(minilm_dir, minilm, tmp_path):
    output = tmp_path / "out.npy"
    assert_ok(run_cli("embed", "-m", minilm_dir, "-i", "-", "-o", output,
                      stdin="\n".join(TEXTS) + "\n"))
    np.testing.assert_allclose(np.load(output), minilm.encode(TEXTS), atol=1e-6)


def test_embed_options(minilm_dir, tmp_path):
    result = assert_ok(run_cli("embed", "-m", minilm_dir, "--no-normalize", "--max-length", 8,
                               "--threads", 1, "--prompt", "query: ", *TEXTS))
    _, vectors = read_jsonl(result.stdout)
    encoder = SentenceEncoder.from_pretrained(minilm_dir, max_seq_length=8)
    expected = encoder.encode(TEXTS, normalize_embeddings=False, prompt="query: ")
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert np.all(np.abs(np.linalg.norm(vectors, axis=1) - 1) > 1e-3)


def test_embed_streams_many_lines_in_chunks(tiny_dir, tmp_path):
    """Far more lines than one chunk (batch size x 64): rows stay aligned across chunk borders
    and the .npy header gets the final count."""
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    lines = [" ".join(rng.choice(words, size=rng.integers(0, 12))) for _ in range(1100)]
    source = tmp_path / "many.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "many.npy"
    assert_ok(run_cli("embed", "-m", tiny_dir, "-i", source, "-o", output, "--batch-size", 4))
    vectors = np.load(output)
    assert vectors.shape == (1100, 32)
    expected = SentenceEncoder.from_pretrained(tiny_dir).encode(lines, batch_size=4)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def run_with_terminal_stderr(*args):
    """run_cli with stderr on a pseudo-terminal; returns (exit status, what stderr showed)."""
    import pty

    primary, secondary = pty.openpty()
    environment = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    process = subprocess.Popen([sys.executable, "-m", "bertcpu", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=secondary, env=environment)
    os.close(secondary)
    shown = b""
    while True:
        try:
            block = os.read(primary, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not block:
            break
        shown += block
    os.close(primary)
    return process.wait(timeout=600), shown.decode("utf-8", "replace")


def test_embed_progress_bar_only_on_a_terminal(tiny_dir, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(f"text number {i}" for i in range(300)) + "\n")
    status, shown = run_with_terminal_stderr("embed", "-m", tiny_dir, "-i", source, "-o",
                                             tmp_path / "out.npy", "--batch-size", 8)
    assert status == 0, shown
    assert "300/300 texts" in shown and "100%" in shown
    status, shown = run_with_terminal_stderr("embed", "-m", tiny_dir, "-i", source, "-o",
                                             tmp_path / "out.npy", "--quiet")
    assert status == 0 and shown == ""


def test_embed_empty_input(tiny_dir, tmp_path):
    source = tmp_path / "empty.txt"
    source.write_text("")
    output = tmp_path / "empty.npy"
    assert_ok(run_cli("embed", "-m", tiny_dir, "-i", source, "-o", output))
    assert np.load(output).shape == (0, 32)


# ---------------------------------------------------------------------------------------------
# tokenize
# ---------------------------------------------------------------------------------------------

def test_tokenize_matches_transformers(minilm_dir):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(minilm_dir))
    texts = ["Hello, World!", "Ünïcödé tokenization of unaffable words"]
    result = assert_ok(run_cli("tokenize", "-m", minilm_dir, "--json", *texts))
    for item, text in zip(json.loads(result.stdout), texts):
        ids = reference(text)["input_ids"]
        assert item["text"] == text
        assert item["ids"] == ids
        assert item["tokens"] == reference.convert_ids_to_tokens(ids)

    table = assert_ok(run_cli("tokenize", "-m", minilm_dir, "Hello, World!")).stdout
    assert "[CLS]" in table and "101" in table and "7592" in table and "[SEP]" in table


def test_tokenize_truncates_like_embed(minilm_dir):
    result = assert_ok(run_cli("tokenize", "-m", minilm_dir, "--json", "--max-length", 5,
                               "one two three four five six"))
    item = json.loads(result.stdout)[0]
    assert len(item["ids"]) == 5 and item["tokens"][0] == "[CLS]" and item["tokens"][-1] == "[SEP]"


# ---------------------------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------------------------

def transformers_parameters(**config):
    """(name, shape) of every parameter of transformers' BertModel for this config, built on the
    meta device (no memory, no initialization)."""
    import torch
    import transformers

    with torch.device("meta"):
        model = transformers.BertModel(transformers.BertConfig(**config))
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def expected_totals(parameters):
    total = sum(int(np.prod(shape)) for _, shape in parameters)
    biases = sum(int(np.prod(shape)) for name, shape in parameters if name.endswith(".bias"))
    return total, total - biases


def test_inspect_bert_base_exact_totals():
    parameters = transformers_parameters()
    total, without_biases = expected_totals(parameters)
    assert total == 109_482_240  # the well-known BERT-base count, as a sanity check

    report = json.loads(assert_ok(run_cli("inspect", "--config", "bert-base", "--json")).stdout)
    assert [(t["name"], tuple(t["shape"])) for t in report["tensors"]] == parameters
    assert report["totals"]["parameters"] == total
    assert report["totals"]["without_biases"] == without_biases
    assert report["totals"]["embeddings_without_layernorm"] == 23_835_648
    assert report["config"]["num_hidden_layers"] == 12

    text = assert_ok(run_cli("inspect", "--config", "bert-base")).stdout
    assert "embeddings.word_embeddings.weight" in text and "30522 x 768" in text
    assert "23,835,648" in text                  # embeddings without LayerNorm
    assert "encoder (12 layers x 7,087,872)" in text
    assert f"{total:,}" in text and f"{without_biases:,}" in text and "109.5M" in text
    for part in ("attention.self.query.weight", "attention.output.LayerNorm.bias",
                 "intermediate.dense.weight", "output.dense.weight", "pooler.dense.weight",
                 "[layer 11 feed-forward]"):
        assert part in text


def test_inspect_flops_match_the_benchmark_harness():
    from bertcpu.benchmark import encoder_flops
    from bertcpu.config import BertConfig

    report = json.loads(assert_ok(run_cli("inspect", "--config", "bert-base", "--json",
                                          "--seq", 128)).stdout)
    assert report["flops_per_token"]["total"] * 128 == encoder_flops(BertConfig(), [128])
    assert report["flops_per_token"]["dense"] == 2 * 12 * (4 * 768 * 768 + 2 * 768 * 3072)


def test_inspect_sentence_transformers_folder(minilm_dir):
    config = json.loads((minilm_dir / "config.json").read_text())
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "vocab_size", "max_position_embeddings", "type_vocab_size")
    total, _ = expected_totals(transformers_parameters(**{k: config[k] for k in keys}))
    report = json.loads(assert_ok(run_cli("inspect", minilm_dir, "--json")).stdout)
    assert report["totals"]["parameters"] == total == 22_713_216
    assert report["sentence_transformers_modules"] == ["Transformer", "Pooling", "Normalize"]
    text = assert_ok(run_cli("inspect", minilm_dir)).stdout
    assert "Transformer -> Pooling -> Normalize" in text and "22,713,216" in text


def test_inspect_config_file_and_folder_without_pooler(tmp_path, bert_dir_factory):
    config = dict(hidden_size=96, num_attention_heads=3, intermediate_size=200,
                  num_hidden_layers=3, vocab_size=1000, max_position_embeddings=128)
    (tmp_path / "config.json").write_text(json.dumps(config))
    total, without_biases = expected_totals(transformers_parameters(**config))
    report = json.loads(assert_ok(run_cli("inspect", tmp_path / "config.json", "--json")).stdout)
    assert (report["totals"]["parameters"], report["totals"]["without_biases"]) == (
        total, without_biases)

    no_pooler = bert_dir_factory(**config, pooler=False)
    report = json.loads(assert_ok(run_cli("inspect", no_pooler, "--json")).stdout)
    assert report["with_pooler"] is False
    assert report["totals"]["parameters"] == total - (96 * 96 + 96)


# ---------------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------------

def test_bench_tiny_model(tiny_dir, tmp_path):
    output = tmp_path / "bench.json"
    result = assert_ok(run_cli("bench", "--model", tiny_dir, "--batch", 2, "--seq", 16,
                               "--threads", 1, "--rounds", 2, "--json", output, "--quiet"))
    assert "latency ms" in result.stdout and "tokens/s" in result.stdout
    assert "GFLOP/s" in result.stdout and "bertcpu" in result.stdout
    report = json.loads(output.read_text())
    assert report["threads"] == 1
    shape = report["shapes"][0]
    assert (shape["batch"], shape["padded_seq"], shape["rounds"]) == (2, 16, 2)
    system = shape["systems"][0]
    assert system["system"] == "bertcpu" and system["median_ms"] > 0
    assert system["tokens_per_s"] == pytest.approx(32 / (system["median_ms"] / 1e3))


def test_bench_compare_with_torch(tiny_dir):
    result = assert_ok(run_cli("bench", "--model", tiny_dir, "--batch", 1, "--seq", 8,
                               "--rounds", 2, "--compare", "torch", "--quiet"))
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "bertcpu" in rows and "torch" in rows
    assert "(reference)" in rows["torch"]
    # bertcpu's max abs difference against torch, the last column
    assert float(rows["bertcpu"].split()[-1]) <= 1e-4


def test_bench_default_random_bert_base():
    result = assert_ok(run_cli("bench", "--batch", 1, "--seq", 8, "--rounds", 1))
    assert "random-weight BERT-base (12 layers, hidden 768)" in result.stdout
    assert "preparing bertcpu" in result.stderr  # progress messages go to stderr


# ---------------------------------------------------------------------------------------------
# Errors: one line, non-zero exit, no traceback
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    (tmp_path / "records.jsonl").write_text('{"body": "a"}\n{"text": "b"}\n')
    (tmp_path / "broken.jsonl").write_text('{"body": "a"}\n{"body": \n')
    (tmp_path / "numbers.jsonl").write_text('{"body": 3}\n')
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "lines.txt").write_text("hello\n")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "bad_config.json").write_text("{not json")
    (tmp_path / "roberta.json").write_text(json.dumps({"model_type": "roberta"}))
    return tmp_path


ERROR_CASES = {
    "missing model folder": (["embed", "-m", "{tmp}/no-such-model", "x"], "not found"),
    "missing hub id": (["embed", "-m", "org/no-such-model", "x"], "not in the HuggingFace cache"),
    "missing input file": (["embed", "-m", "{tiny}", "-i", "{tmp}/nope.txt"], "nope.txt: no such file"),
    "input is a folder": (["embed", "-m", "{tiny}", "-i", "{tmp}/a_dir"], "not a regular file"),
    "bad field name": (["embed", "-m", "{tiny}", "-i", "{tmp}/records.jsonl", "--field", "body"],
                       "line 2 has no field 'body'"),
    "invalid json line": (["embed", "-m", "{tiny}", "-i", "{tmp}/broken.jsonl", "--field", "body"],
                          "line 2 is not valid JSON"),
    "field not a string": (["embed", "-m", "{tiny}", "-i", "{tmp}/numbers.jsonl", "--field", "body"],
                           "field 'body' is a int"),
    "jsonl without field": (["embed", "-m", "{tiny}", "-i", "{tmp}/records.jsonl"], "--field"),
    "not utf-8": (["embed", "-m", "{tiny}", "-i", "{tmp}/latin1.txt"], "line 1 is not valid UTF-8"),
    "field with texts": (["embed", "-m", "{tiny}", "--field", "x", "hello"], "--field applies"),
    "nothing to embed": (["embed", "-m", "{tiny}"], "nothing to embed"),
    "texts and input": (["embed", "-m", "{tiny}", "-i", "{tmp}/lines.txt", "x"], "not both"),
    "bad output format": (["embed", "-m", "{tiny}", "-o", "{tmp}/out.csv", "x"], ".npy or .jsonl"),
    "output folder missing": (["embed", "-m", "{tiny}", "-o", "{tmp}/no/out.npy", "x"],
                              "does not exist"),
    "max length too long": (["embed", "-m", "{tiny}", "--max-length", "100000", "x"],
                            "max_position_embeddings"),
    "broken module": (["embed", "-m", "{broken_st}", "x"], "is not supported"),
    "tokenize missing model": (["tokenize", "-m", "{tmp}/nothing", "x"], "not found"),
    "inspect nothing": (["inspect"], "nothing to inspect"),
    "inspect broken config": (["inspect", "{tmp}/bad_config.json"], "not valid JSON"),
    "inspect unsupported model type": (["inspect", "{tmp}/roberta.json"], "'roberta'"),
    "inspect model and config": (["inspect", "{tiny}", "--config", "bert-base"], "not both"),
    "bench unknown peer": (["bench", "--compare", "tensorflow"], "peers are torch"),
    "bench sequence too long": (["bench", "-m", "{tiny}", "--seq", "100", "--quiet"],
                                "max_position_embeddings"),
    "bench json folder missing": (["bench", "--json", "{tmp}/no/r.json"], "does not exist"),
}


@pytest.fixture(scope="module")
def broken_st(tiny_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("broken_st")
    shutil.copytree(tiny_dir, folder, dirs_exist_ok=True)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_CNN", "type": "sentence_transformers.models.CNN"}]))
    return folder


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_user_errors(case, files, tiny_dir, broken_st):
    args, fragment = ERROR_CASES[case]
    args = [a.format(tmp=files, tiny=tiny_dir, broken_st=broken_st) for a in args]
    assert_user_error(run_cli(*args, cwd=files), fragment)


@pytest.mark.parametrize("args, fragment", [
    (["embed", "-m", "x", "--batch-size", "0", "y"], "--batch-size: expected a positive integer"),
    (["embed", "x"], "--model"),
    (["tokenize", "-m", "x"], "TEXT"),
    (["inspect", "--config", "bert-huge"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_malformed_command_lines(args, fragment):
    assert_user_error(run_cli(*args), fragment, status=2)


def test_failed_npy_output_leaves_no_file(tiny_dir, files):
    output = files / "out.npy"
    result = run_cli("embed", "-m", tiny_dir, "-i", files / "records.jsonl", "--field", "body",
                     "-o", output)
    assert_user_error(result, "no field")
    assert not output.exists() and not list(files.glob("*.partial"))


def test_version():
    result = assert_ok(run_cli("--version"))
    assert result.stdout.strip() == f"bertcpu {bertcpu.__version__}"
