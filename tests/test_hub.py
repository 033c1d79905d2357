"""Model name resolution: local folders, a fake HuggingFace cache laid out as huggingface_hub lays
it out (blobs + snapshot symlinks + refs), the optional download, and the errors."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import bertcpu
from bertcpu.hub import ModelNotFoundError, hf_hub_cache_dir, is_hub_id, resolve_model_path

COMMIT_MAIN = "a" * 40
COMMIT_V1 = "b" * 40


def make_cache_entry(cache, repo_id, commit, files, ref=None):
    """Store `files` ({name: bytes or source path}) for repo_id@commit the way huggingface_hub does:
    content in blobs/, the snapshot made of relative symlinks to it, refs/<ref> holding the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        data = pathlib.Path(content).read_bytes() if isinstance(content, pathlib.Path) else content
        blob = repo / "blobs" / f"{abs(hash((name, data))):x}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hf_env(monkeypatch, tmp_path):
    """A clean HuggingFace environment: no cache variables, offline, cwd in an empty folder."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return tmp_path


def test_local_folder_is_returned_as_is(hf_env):
    folder = hf_env / "model"
    folder.mkdir()
    assert resolve_model_path(folder) == folder
    assert resolve_model_path(str(folder)) == folder


def test_relative_local_folder_wins_over_the_cache(hf_env, monkeypatch):
    cache = hf_env / "cache"
    make_cache_entry(cache, "org/name", COMMIT_MAIN, {"config.json": b"{}"}, ref="main")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    local = pathlib.Path("org/name")
    local.mkdir(parents=True)
    assert resolve_model_path("org/name") == local


def test_cache_location_follows_the_environment(hf_env, monkeypatch):
    monkeypatch.setenv("HOME", str(hf_env / "home"))
    assert hf_hub_cache_dir() == hf_env / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(hf_env / "xdg"))
    assert hf_hub_cache_dir() == hf_env / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(hf_env / "hf_home"))
    assert hf_hub_cache_dir() == hf_env / "hf_home" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(hf_env / "legacy"))
    assert hf_hub_cache_dir() == hf_env / "legacy"
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_env / "hub_cache"))
    assert hf_hub_cache_dir() == hf_env / "hub_cache"


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
def test_hub_id_resolves_to_the_snapshot_of_refs_main(hf_env, monkeypatch, variable):
    root = hf_env / "hf"
    cache = root if variable == "HF_HUB_CACHE" else root / "hub"
    monkeypatch.setenv(variable, str(root))
    make_cache_entry(cache, "org/model", COMMIT_V1, {"config.json": b'{"v": 1}'}, ref="v1")
    main = make_cache_entry(cache, "org/model", COMMIT_MAIN, {"config.json": b'{"v": 0}'},
                            ref="main")
    assert resolve_model_path("org/model") == main
    assert (resolve_model_path("org/model") / "config.json").read_bytes() == b'{"v": 0}'


def test_revision_selects_a_ref_or_a_commit(hf_env, monkeypatch):
    cache = hf_env / "cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    v1 = make_cache_entry(cache, "org/model", COMMIT_V1, {"config.json": b"{}"}, ref="v1")
    main = make_cache_entry(cache, "org/model", COMMIT_MAIN, {"modules.json": b"[]"}, ref="main")
    assert resolve_model_path("org/model", revision="v1") == v1
    assert resolve_model_path("org/model", revision=COMMIT_V1) == v1
    assert resolve_model_path("org/model", revision="main") == main
    with pytest.raises(ModelNotFoundError, match="refs/v2"):
        resolve_model_path("org/model", revision="v2")
    with pytest.raises(ValueError, match="invalid revision"):
        resolve_model_path("org/model", revision="../../etc")


@pytest.mark.parametrize("revision", ["main\n", COMMIT_V1 + "\n"])
def test_revision_with_a_trailing_newline_is_invalid(hf_env, monkeypatch, revision):
    """A pattern's '$' also matches before a final newline: revisions must match as a whole."""
    cache = hf_env / "cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    make_cache_entry(cache, "org/model", COMMIT_V1, {"config.json": b"{}"}, ref="main")
    with pytest.raises(ValueError, match=re.escape(f"invalid revision {revision!r}")):
        resolve_model_path("org/model", revision=revision)


def test_hub_id_without_org(hf_env, monkeypatch):
    cache = hf_env / "cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    snapshot = make_cache_entry(cache, "bert-base-uncased", COMMIT_MAIN, {"config.json": b"{}"},
                                ref="main")
    assert resolve_model_path("bert-base-uncased") == snapshot


def test_incomplete_snapshot_is_not_a_model(hf_env, monkeypatch):
    cache = hf_env / "cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    make_cache_entry(cache, "org/model", COMMIT_MAIN, {"README.md": b"hi"}, ref="main")
    with pytest.raises(ModelNotFoundError, match="incomplete"):
        resolve_model_path("org/model")


def test_missing_model_error_lists_every_place_looked(hf_env, monkeypatch):
    cache = hf_env / "cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model_path("org/missing")
    message = str(error.value)
    assert "\n" not in message
    assert str(pathlib.Path("org/missing").absolute()) in message       # the local folder
    assert str(cache / "models--org--missing" / "refs" / "main") in message  # the cache
    assert "HF_HUB_OFFLINE" in message                                    # why no download
    assert isinstance(error.value, FileNotFoundError)


def test_missing_huggingface_hub_is_reported(hf_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_env / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(ModelNotFoundError, match="huggingface_hub is not installed"):
        resolve_model_path("org/missing")


def test_download_disabled_by_argument(hf_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_env / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model_path("org/missing", download=False)
    assert "download skipped" not in str(error.value)
    assert "download from the hub" not in str(error.value)


def test_unreachable_hub_fails_cleanly(hf_env):
    """The real huggingface_hub, pointed at a port nothing listens on: a clear error, quickly."""
    repo = pathlib.Path(bertcpu.__file__).resolve().parent.parent  # bertcpu importable from there
    env = dict(os.environ, HF_HUB_CACHE=str(hf_env / "cache"), HF_ENDPOINT="http://127.0.0.1:9",
               PYTHONPATH=str(repo))
    env.pop("HF_HUB_OFFLINE", None)
    code = ("from bertcpu.hub import resolve_model_path\n"
            "try:\n    resolve_model_path('org/missing')\n"
            "except FileNotFoundError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "download from the hub failed" in result.stdout
    assert str(hf_env / "cache") in result.stdout


@pytest.mark.parametrize("name", ["bert-base-uncased", "org/name", "BAAI/bge-small-en-v1.5",
                                  "intfloat/e5_small.v2", "a", "x/y"])
def test_valid_hub_ids(name):
    assert is_hub_id(name)


@pytest.mark.parametrize("name", ["../x", "a/../../b", "/abs/path", "a/b/c", "org/--x",
                                  "x..y", "a--b", "-x", "x-", ".x", "org/", "", "a\\b",
                                  "a/b\x00", "a b", "~/x", "org/na me", "x" * 97, "org/name\n", "name\n"])
def test_escapes_and_malformed_ids_are_rejected(hf_env, monkeypatch, name):
    assert not is_hub_id(name)
    cache = hf_env / "cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(ModelNotFoundError):
        resolve_model_path(name)


def test_escape_never_reaches_a_folder_outside_the_cache(hf_env, monkeypatch):
    """A snapshot-shaped folder beside the cache is not reachable through '..' in an id (relative
    to the cache), although it would be a valid cache entry there."""
    cache = hf_env / "deep" / "cache"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    outside = make_cache_entry(hf_env / "deep", "evil", COMMIT_MAIN, {"config.json": b"{}"},
                               ref="main")
    assert outside.is_dir()
    for name in ("../models--evil", "../evil", "org/../../evil"):
        with pytest.raises(ModelNotFoundError, match="not a HuggingFace model id"):
            resolve_model_path(name)


def test_a_file_is_not_a_model_folder(hf_env):
    path = hf_env / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model_path(path)


def test_bad_name_types():
    with pytest.raises(TypeError):
        resolve_model_path(123)
    with pytest.raises(ModelNotFoundError, match="empty"):
        resolve_model_path("")


def test_sentence_encoder_loads_a_hub_id_from_the_cache(hf_env, monkeypatch, minilm_dir):
    """A realistic cache entry (symlinked snapshot, nested 1_Pooling) loads and embeds exactly as
    the folder it was copied from."""
    from bertcpu import SentenceEncoder

    cache = hf_env / "cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    files = {str(p.relative_to(minilm_dir)): p for p in minilm_dir.rglob("*") if p.is_file()}
    make_cache_entry(cache, "sentence-transformers/all-MiniLM-L6-v2", COMMIT_MAIN, files,
                     ref="main")
    from_cache = SentenceEncoder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    from_folder = SentenceEncoder.from_pretrained(minilm_dir)
    sentences = ["The cache holds this model.", "A second sentence."]
    np.testing.assert_array_equal(from_cache.encode(sentences), from_folder.encode(sentences))
    shutil.rmtree(cache)
