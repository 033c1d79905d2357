"""Safetensors reading and writing: dtypes, prefixes, shards, and a clear error for every kind of
damaged or unsuitable file (never a crash, never an allocation sized by a corrupt header)."""
import json
import logging
import os

import numpy as np
import pytest
import safetensors.numpy

from bertcpu.weights import (Checkpoint, SafetensorsFile, canonical_name, checkpoint_files,
                             is_ignored, write_safetensors)


def write_raw(path, header, data=b"", header_size=None):
    """A safetensors file with exactly this header and data: the tool for making broken files."""
    raw = json.dumps(header).encode()
    size = len(raw) if header_size is None else header_size
    path.write_bytes(size.to_bytes(8, "little") + raw + data)
    return path


def f32_entry(shape, begin):
    end = begin + 4 * int(np.prod(shape))
    return {"dtype": "F32", "shape": list(shape), "data_offsets": [begin, end]}


@pytest.fixture
def folder(tmp_path):
    """A model folder holding model.safetensors with two F32 tensors, with `bert.` prefixes."""
    rng = np.random.default_rng(0)
    tensors = {
        "bert.embeddings.word_embeddings.weight": rng.standard_normal((7, 4), dtype=np.float32),
        "bert.pooler.dense.bias": rng.standard_normal(4, dtype=np.float32),
        "bert.embeddings.position_ids": np.arange(6, dtype=np.int64)[None],
        "cls.predictions.bias": rng.standard_normal(7, dtype=np.float32),
    }
    safetensors.numpy.save_file(tensors, str(tmp_path / "model.safetensors"))
    return tmp_path, tensors


def test_reads_f32_tensors_by_canonical_name(folder):
    path, tensors = folder
    expected = [("embeddings.word_embeddings.weight", (7, 4)), ("pooler.dense.bias", (4,))]
    with Checkpoint(path) as checkpoint:
        loaded = [(name, array.copy()) for name, array in checkpoint.iter_tensors(expected)]
    assert [name for name, _ in loaded] == [name for name, _ in expected]
    np.testing.assert_array_equal(loaded[0][1], tensors["bert.embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(loaded[1][1], tensors["bert.pooler.dense.bias"])
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for _, a in loaded)


def test_f32_tensors_are_read_only_views(folder):
    path, _ = folder
    with Checkpoint(path) as checkpoint:
        for _, array in checkpoint.iter_tensors([("pooler.dense.bias", (4,))]):
            assert not array.flags.writeable
            with pytest.raises(ValueError):
                array[0] = 1.0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_widened_exactly(tmp_path, dtype):
    torch = pytest.importorskip("torch")
    import safetensors.torch

    values = torch.randn(33, 5, generator=torch.Generator().manual_seed(1)) * 10
    values[0, :4] = torch.tensor([0.0, -0.0, float("inf"), 65504.0])
    stored = values.to(getattr(torch, dtype))
    safetensors.torch.save_file({"embeddings.LayerNorm.weight": stored},
                                str(tmp_path / "model.safetensors"))
    with Checkpoint(tmp_path) as checkpoint:
        (name, array), = list(checkpoint.iter_tensors([("embeddings.LayerNorm.weight", (33, 5))]))
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, stored.float().numpy())


def test_prefixes_and_ignored_names():
    assert canonical_name("bert.encoder.layer.0.output.dense.bias") == "encoder.layer.0.output.dense.bias"
    assert canonical_name("model.pooler.dense.weight") == "pooler.dense.weight"
    assert canonical_name("embeddings.LayerNorm.bias") == "embeddings.LayerNorm.bias"
    assert canonical_name("roberta.embeddings.LayerNorm.bias") == "roberta.embeddings.LayerNorm.bias"
    for name in ["embeddings.position_ids", "cls.predictions.bias", "cls.seq_relationship.weight",
                 "classifier.weight", "qa_outputs.bias"]:
        assert is_ignored(name), name
    assert not is_ignored("pooler.dense.weight")
    assert not is_ignored("encoder.layer.0.output.dense.bias")


def test_unused_tensors_are_logged_but_ignored_ones_are_not(folder, tmp_path, caplog):
    path, tensors = folder
    tensors = dict(tensors, **{"bert.encoder.layer.7.output.dense.bias": np.zeros(4, np.float32)})
    safetensors.numpy.save_file(tensors, str(path / "model.safetensors"))
    with caplog.at_level(logging.WARNING, logger="bertcpu"):
        with Checkpoint(path) as checkpoint:
            checkpoint.check([("embeddings.word_embeddings.weight", (7, 4)), ("pooler.dense.bias", (4,))])
    assert "bert.encoder.layer.7.output.dense.bias" in caplog.text
    assert "position_ids" not in caplog.text and "cls.predictions" not in caplog.text


def test_missing_tensor_is_named(folder):
    path, _ = folder
    with Checkpoint(path) as checkpoint:
        with pytest.raises(ValueError, match=r"missing tensor\(s\) 'pooler.dense.weight'"):
            checkpoint.check([("pooler.dense.bias", (4,)), ("pooler.dense.weight", (4, 4))])


def test_missing_tensors_stop_the_walk_at_five(folder):
    """The expected tensors may be a generator far longer than the checkpoint (a config far larger
    than it): the check stops at the fifth missing one and says there may be more."""
    def far_too_many():
        yield "embeddings.word_embeddings.weight", (7, 4)
        for layer in range(10**6):
            yield f"encoder.layer.{layer}.output.dense.bias", (4,)

    path, _ = folder
    with Checkpoint(path) as checkpoint:
        with pytest.raises(ValueError, match=r"missing tensor\(s\) 'encoder.layer.0.output.dense.bias', "
                                             r"(.*), 'encoder.layer.4.output.dense.bias', \.\.\. "
                                             r"\(the checkpoint holds e.g. 'bert.embeddings"):
            checkpoint.check(far_too_many())
        # Exactly five missing and nothing after them: no "...".
        five = [(f"encoder.layer.{layer}.output.dense.bias", (4,)) for layer in range(5)]
        with pytest.raises(ValueError, match=r"'encoder.layer.4.output.dense.bias' \(the checkpoint"):
            checkpoint.check(five)


def test_missing_tensors_are_reported_before_a_wrong_shape(folder):
    path, _ = folder
    with Checkpoint(path) as checkpoint:
        with pytest.raises(ValueError, match=r"missing tensor\(s\) 'pooler.dense.weight' \("):
            checkpoint.check([("embeddings.word_embeddings.weight", (7, 8)), ("pooler.dense.weight", (4, 4))])


def test_shape_mismatch_names_tensor_expected_and_found(folder):
    path, _ = folder
    with Checkpoint(path) as checkpoint:
        with pytest.raises(ValueError, match=r"tensor 'bert.embeddings.word_embeddings.weight' has "
                                             r"shape \[7, 4\], expected \[7, 8\] from the config"):
            checkpoint.check([("embeddings.word_embeddings.weight", (7, 8))])


@pytest.mark.parametrize("dtype, array", [("F64", np.zeros(4, np.float64)), ("I32", np.zeros(4, np.int32))])
def test_unsupported_dtype_of_a_needed_tensor(tmp_path, dtype, array):
    safetensors.numpy.save_file({"pooler.dense.bias": array}, str(tmp_path / "model.safetensors"))
    with Checkpoint(tmp_path) as checkpoint:
        with pytest.raises(ValueError, match=f"tensor 'pooler.dense.bias': unsupported dtype {dtype}"):
            checkpoint.check([("pooler.dense.bias", (4,))])


def test_same_tensor_under_two_names_is_an_error(tmp_path):
    safetensors.numpy.save_file({"bert.pooler.dense.bias": np.zeros(4, np.float32),
                                 "pooler.dense.bias": np.ones(4, np.float32)},
                                str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="tensor 'pooler.dense.bias' is stored twice"):
        Checkpoint(tmp_path)


# --- damaged files: each must fail with the file and (where there is one) the tensor named ---

def test_file_shorter_than_the_length_prefix(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match=r"model.safetensors: truncated safetensors file: 3 bytes"):
        Checkpoint(tmp_path)


def test_header_length_beyond_the_file(tmp_path):
    write_raw(tmp_path / "model.safetensors", {}, header_size=10**15)
    with pytest.raises(ValueError, match="header length 1000000000000000 exceeds the"):
        Checkpoint(tmp_path)


def test_header_is_not_json(tmp_path):
    (tmp_path / "model.safetensors").write_bytes((5).to_bytes(8, "little") + b"{nope")
    with pytest.raises(ValueError, match="model.safetensors: corrupt safetensors header: not valid JSON"):
        Checkpoint(tmp_path)


def test_header_is_not_an_object(tmp_path):
    write_raw(tmp_path / "model.safetensors", [1, 2])
    with pytest.raises(ValueError, match=r"corrupt safetensors header: not a JSON object \(got list\)"):
        Checkpoint(tmp_path)


def test_truncated_data(tmp_path):
    header = {"a": f32_entry((4, 4), 0), "pooler.dense.bias": f32_entry((4,), 64)}
    write_raw(tmp_path / "model.safetensors", header, b"\0" * 70)
    with pytest.raises(ValueError, match=r"tensor 'pooler.dense.bias': data_offsets \[64, 80\] reach "
                                         r"beyond the end of the file \(the data section holds 70 bytes\)"):
        Checkpoint(tmp_path)


def test_overlapping_tensors(tmp_path):
    header = {"first": f32_entry((4,), 0), "second": f32_entry((4,), 8)}
    write_raw(tmp_path / "model.safetensors", header, b"\0" * 24)
    with pytest.raises(ValueError, match="the data of tensor 'second' overlaps that of tensor 'first'"):
        Checkpoint(tmp_path)


def test_size_that_does_not_match_the_shape(tmp_path):
    header = {"pooler.dense.bias": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}}
    write_raw(tmp_path / "model.safetensors", header, b"\0" * 16)
    with pytest.raises(ValueError, match=r"tensor 'pooler.dense.bias': impossible size: shape \[5\] "
                                         r"of F32 needs 20 bytes but data_offsets \[0, 16\] span 16"):
        Checkpoint(tmp_path)


def test_huge_shape_fails_without_allocating(tmp_path):
    # 2**62 elements: any attempt to size a buffer from this header would fail or exhaust memory.
    header = {"embeddings.word_embeddings.weight":
              {"dtype": "F32", "shape": [2**31, 2**31], "data_offsets": [0, 16]}}
    write_raw(tmp_path / "model.safetensors", header, b"\0" * 16)
    with pytest.raises(ValueError, match="impossible size: shape"):
        Checkpoint(tmp_path)


@pytest.mark.parametrize("entry, message", [
    ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}, r"invalid shape \[-1\]"),
    ({"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}, "invalid shape '4'"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}, r"invalid data_offsets \[16, 0\]"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [0]}, r"invalid data_offsets \[0\]"),
    ({"dtype": "F32", "shape": [4]}, "invalid data_offsets None"),
    ({"shape": [4], "data_offsets": [0, 16]}, "header entry has no dtype string"),
    ([1, 2], "header entry is not a JSON object"),
])
def test_malformed_header_entries(tmp_path, entry, message):
    write_raw(tmp_path / "model.safetensors", {"pooler.dense.bias": entry}, b"\0" * 16)
    with pytest.raises(ValueError, match=f"tensor 'pooler.dense.bias': {message}"):
        Checkpoint(tmp_path)


def test_unknown_dtype_of_an_unused_tensor_is_tolerated(tmp_path):
    header = {"pooler.dense.bias": f32_entry((4,), 0),
              "cls.extra": {"dtype": "F4_FUTURE", "shape": [3], "data_offsets": [16, 18]}}
    write_raw(tmp_path / "model.safetensors", header, b"\0" * 18)
    with Checkpoint(tmp_path) as checkpoint:
        (_, array), = list(checkpoint.iter_tensors([("pooler.dense.bias", (4,))]))
        np.testing.assert_array_equal(array, np.zeros(4, np.float32))


# --- folders: single file, shards, pickle-only ---

def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not loaded")
    with pytest.raises(ValueError, match="holds pytorch_model.bin but no model.safetensors: only "
                                         "safetensors weights are supported"):
        checkpoint_files(tmp_path)


def test_folder_without_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.safetensors or model.safetensors.index.json"):
        checkpoint_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        checkpoint_files(tmp_path / "absent")


def make_shards(folder):
    rng = np.random.default_rng(3)
    first = {"embeddings.LayerNorm.weight": rng.standard_normal(4, dtype=np.float32)}
    second = {"embeddings.LayerNorm.bias": rng.standard_normal(4, dtype=np.float32)}
    safetensors.numpy.save_file(first, str(folder / "model-00001-of-00002.safetensors"))
    safetensors.numpy.save_file(second, str(folder / "model-00002-of-00002.safetensors"))
    index = {"metadata": {}, "weight_map": {"embeddings.LayerNorm.weight": "model-00001-of-00002.safetensors",
                                            "embeddings.LayerNorm.bias": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return {**first, **second}


def test_sharded_checkpoint(tmp_path):
    tensors = make_shards(tmp_path)
    expected = [("embeddings.LayerNorm.bias", (4,)), ("embeddings.LayerNorm.weight", (4,))]
    with Checkpoint(tmp_path) as checkpoint:
        for name, array in checkpoint.iter_tensors(expected):
            np.testing.assert_array_equal(array, tensors[name])


def test_shard_missing_from_the_folder(tmp_path):
    make_shards(tmp_path)
    os.remove(tmp_path / "model-00002-of-00002.safetensors")
    with pytest.raises(FileNotFoundError, match="names shard 'model-00002-of-00002.safetensors', "
                                                "which does not exist"):
        Checkpoint(tmp_path)


@pytest.mark.parametrize("index, message", [
    ({"weight_map": {"a": "../elsewhere.safetensors"}}, "maps to '../elsewhere.safetensors', which is not a file name"),
    ({"weight_map": {"a": "/etc/passwd"}}, "maps to '/etc/passwd', which is not a file name"),
    ({"weight_map": {}}, "no 'weight_map' object"),
    ({"metadata": {}}, "no 'weight_map' object"),
    ([], r"model.safetensors.index.json: not a JSON object \(got list\)"),
])
def test_bad_index_file(tmp_path, index, message):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=message):
        Checkpoint(tmp_path)


def test_index_file_is_not_json(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text("{")
    with pytest.raises(ValueError, match="model.safetensors.index.json: not valid JSON"):
        Checkpoint(tmp_path)


# --- writing ---

def test_written_file_reads_back_with_the_safetensors_package(tmp_path):
    rng = np.random.default_rng(5)
    tensors = {"b.weight": rng.standard_normal((3, 5), dtype=np.float32),
               "a.bias": rng.standard_normal(3, dtype=np.float32),
               "odd": rng.standard_normal(1, dtype=np.float32)}
    spec = [(name, array.shape) for name, array in tensors.items()]
    path = tmp_path / "model.safetensors"
    write_safetensors(path, spec, tensors.__getitem__, metadata={"format": "pt"})
    loaded = safetensors.numpy.load_file(str(path))
    assert loaded.keys() == tensors.keys()
    for name in tensors:
        np.testing.assert_array_equal(loaded[name], tensors[name])
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    assert header_size % 8 == 0
    assert SafetensorsFile(path).metadata == {"format": "pt"}
    assert not (tmp_path / "model.safetensors.partial").exists()


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "model.safetensors"

    def fetch(name):
        return np.zeros(2, np.float32)  # not the announced shape

    with pytest.raises(ValueError, match=r"tensor 'w' has shape \[2\], expected \[3\]"):
        write_safetensors(path, [("w", (3,))], fetch)
    assert os.listdir(tmp_path) == []
