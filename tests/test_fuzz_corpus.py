"""Replays every input the fuzzers kept (fuzz/corpus/<target>/) through the fuzz targets, without
atheris: inputs that once reached new code, or once failed, stay fixed as regression tests."""
import importlib
import pathlib
import sys

import pytest

FUZZ_DIR = pathlib.Path(__file__).resolve().parent.parent / "fuzz"
TARGETS = {"loader": "fuzz_loader", "tokenizer": "fuzz_tokenizer"}


def corpus(target):
    folder = FUZZ_DIR / "corpus" / target
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def harnesses():
    sys.path.insert(0, str(FUZZ_DIR))
    try:
        modules = {target: importlib.import_module(name) for target, name in TARGETS.items()}
    finally:
        sys.path.remove(str(FUZZ_DIR))
    yield modules
    for module in modules.values():
        module.close_harness()


@pytest.mark.parametrize("target", list(TARGETS))
def test_corpus_is_kept_small_and_has_the_seeds(target):
    files = corpus(target)
    assert any(path.name.startswith("seed-") for path in files), f"no seeds in fuzz/corpus/{target}"
    assert len(files) < 200 and sum(path.stat().st_size for path in files) < 2 * 2**20


@pytest.mark.parametrize("target", list(TARGETS))
def test_replay_corpus(harnesses, target):
    check_input = harnesses[target].check_input
    for path in corpus(target):
        try:
            check_input(path.read_bytes())
        except BaseException as error:
            raise AssertionError(f"fuzz/corpus/{target}/{path.name}: {error!r}") from error
