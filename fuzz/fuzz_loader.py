#!/usr/bin/env python
"""Coverage-guided fuzzing of the model-folder loaders with atheris (libFuzzer for Python).

Each input is one file of a model folder, fuzzed while the rest of the folder stays valid:

    input = [target byte] + [the file's bytes]

    target % 6   file                              loaded with
    0            model.safetensors                 BertModel.from_pretrained
    1            config.json                       BertModel.from_pretrained
    2            model.safetensors.index.json      BertModel.from_pretrained (two valid shards)
    3            modules.json                      SentenceEncoder.from_pretrained
    4            1_Pooling/config.json             SentenceEncoder.from_pretrained
    5            sentence_bert_config.json         SentenceEncoder.from_pretrained

The property: loading either succeeds, and the model then embeds a fixed input with the expected
shape, or it raises ValueError / FileNotFoundError (a clear, expected error). Any other exception,
a crash, a hang (-timeout) or a huge allocation (-rss_limit_mb) is a finding.

    pip install atheris
    fuzz/run.sh 60            # both targets, 60 s each, from the kept corpus (read only)
    fuzz/fuzz_loader.py NEW_DIR fuzz/corpus/loader -max_total_time=60   # this one, by hand

fuzz/corpus/loader/ holds the inputs kept (fuzz/run.sh SECONDS --keep merges new coverage into
it); tests/test_fuzz_corpus.py replays each through check_input(), without atheris.
`fuzz/fuzz_loader.py --write-seeds DIR` writes the valid starting inputs.
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np

from scratch import make_scratch_folder

TARGET_FILES = ("model.safetensors", "config.json", "model.safetensors.index.json", "modules.json",
                os.path.join("1_Pooling", "config.json"), "sentence_bert_config.json")

# A model small enough that loading it costs about a millisecond.
TINY_CONFIG = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=12,
                   vocab_size=12, max_position_embeddings=16, type_vocab_size=2)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s", "."]
MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
           {"idx": 1, "name": "1", "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling"},
           {"idx": 2, "name": "2", "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize"}]
POOLING = {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True}
SENTENCE_BERT_CONFIG = {"max_seq_length": 16, "do_lower_case": False}

EXPECTED_ERRORS = (ValueError, FileNotFoundError)


SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def build_folders(root):
    """Under root: "model", a valid sentence-transformers folder holding the tiny model, and
    "sharded", the same config with the weights split over two shard files (and no index: the
    index is the fuzzed file). Returns (model folder, sharded folder, a valid index's bytes)."""
    import safetensors.numpy

    from bertcpu import BertModel

    folder = os.path.join(root, "model")
    BertModel.from_config(TINY_CONFIG, seed=0).save_pretrained(folder)
    os.makedirs(os.path.join(folder, "1_Pooling"))
    write_text(folder, "vocab.txt", "\n".join(VOCAB) + "\n")
    write_text(folder, "modules.json", json.dumps(MODULES))
    write_text(folder, os.path.join("1_Pooling", "config.json"), json.dumps(POOLING))
    write_text(folder, "sentence_bert_config.json", json.dumps(SENTENCE_BERT_CONFIG))

    sharded = os.path.join(root, "sharded")
    os.makedirs(sharded)
    shutil.copy(os.path.join(folder, "config.json"), sharded)
    tensors = safetensors.numpy.load_file(os.path.join(folder, "model.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    for position, shard in enumerate(SHARDS):
        shard_names = names[position::len(SHARDS)]
        safetensors.numpy.save_file({n: tensors[n] for n in shard_names}, os.path.join(sharded, shard))
        weight_map.update((n, shard) for n in shard_names)
    index = json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}).encode()
    return folder, sharded, index


def write_text(folder, name, text):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write(text)


def seeds(root):
    """The valid starting inputs, one per target: (name, bytes)."""
    folder, _, index = build_folders(root)
    contents = [read_bytes(folder, name) if name != TARGET_FILES[2] else index
                for name in TARGET_FILES]
    return [(f"seed-{target}", bytes([target]) + content) for target, content in enumerate(contents)]


def read_bytes(folder, name):
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


class Harness:
    """Owns the scratch folders; check(data) runs one input."""

    def __init__(self):
        self.scratch = make_scratch_folder("loader")
        self.folder, self.sharded, _ = build_folders(self.scratch)
        self.originals = {name: read_bytes(self.folder, name) for name in TARGET_FILES
                          if os.path.exists(os.path.join(self.folder, name))}
        self.ids = np.array([[2, 5, 6, 7, 3]])

    def check(self, data):
        from bertcpu import BertModel, SentenceEncoder

        if not data:
            return
        target, content = data[0] % len(TARGET_FILES), data[1:]
        name = TARGET_FILES[target]
        folder = self.sharded if target == 2 else self.folder
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(content)
        try:
            if target <= 2:
                model = BertModel.from_pretrained(folder)
                out = model(self.ids)
                assert out.last_hidden_state.shape == (1, 5, model.config.hidden_size)
            else:
                encoder = SentenceEncoder.from_pretrained(folder)
                vectors = encoder.encode(["the cat sat on the mats .", "the"])
                assert vectors.shape == (2, encoder.get_embedding_dimension())
        except EXPECTED_ERRORS:
            pass
        finally:
            # The next input starts from the valid folder again.
            if target == 2:
                os.remove(path)
            else:
                with open(path, "wb") as f:
                    f.write(self.originals[name])


_harness = None


def check_input(data):
    """The fuzz target: raises (an AssertionError or an unexpected exception) on a finding."""
    global _harness
    if _harness is None:
        _harness = Harness()
    _harness.check(data)


def close_harness():
    """Remove the scratch folder (a replay calls this; a fuzzing run ends in exit() instead)."""
    global _harness
    if _harness is not None:
        shutil.rmtree(_harness.scratch, ignore_errors=True)
        _harness = None


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        os.makedirs(sys.argv[2], exist_ok=True)
        root = tempfile.mkdtemp()
        try:
            for name, content in seeds(root):
                with open(os.path.join(sys.argv[2], name), "wb") as f:
                    f.write(content)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    import atheris

    with atheris.instrument_imports(include=["bertcpu"]):
        import bertcpu  # noqa: F401  (instrumented for coverage before check_input imports it)
    atheris.Setup(sys.argv, check_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
