"""Model names to local folders, the way HuggingFace tools resolve them.

A name is, in this order: an existing local folder; a hub id (``org/name`` or ``name``) whose snapshot
is already in the local HuggingFace cache; a hub id downloaded with the optional ``huggingface_hub``
package when it is installed and the network allows. Anything else is a ``ModelNotFoundError`` that
says everywhere it looked, on one line.

Hub ids are validated before they touch the file system, so a name such as ``../x`` or ``a/../../b``
can never select a folder outside the cache.
"""
import os
import re
from pathlib import Path

__all__ = ["ModelNotFoundError", "hf_hub_cache_dir", "is_hub_id", "resolve_model_path"]

# Each pattern must match a whole string (fullmatch: '$' would also match before a final newline).
# One part of a hub id: word characters, '.' and '-', at most 96 characters, neither starting nor
# ending with '.' or '-' (HuggingFace's own rule; it also forbids '--' and '..', checked below).
_ID_PART = re.compile(r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?", re.ASCII)
# Revisions are branch/tag names (which may contain '/', e.g. "refs/pr/1") or commit hashes.
_REVISION = re.compile(r"[\w.-]+(?:/[\w.-]+)*", re.ASCII)
_COMMIT = re.compile(r"[0-9a-f]{40}")
# What a snapshot must hold to be a model: a transformers config or a sentence-transformers pipeline.
_MODEL_MARKERS = ("config.json", "modules.json")
# The files bertcpu reads; anything else in a repository (ONNX exports, .bin weights) is not fetched.
_DOWNLOAD_PATTERNS = ["*.json", "*.txt", "*.safetensors"]


class ModelNotFoundError(FileNotFoundError):
    """No model folder could be found for a name; the message lists every place that was tried."""


def hf_hub_cache_dir():
    """The HuggingFace hub cache folder, chosen from the environment as ``huggingface_hub`` does."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(variable)
        if value:
            return Path(os.path.expanduser(value))
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(os.path.expanduser(hf_home)) / "hub"
    xdg_cache = os.environ.get("XDG_CACHE_HOME")
    if xdg_cache:
        return Path(os.path.expanduser(xdg_cache)) / "huggingface" / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def is_hub_id(name):
    """True if ``name`` is a well-formed hub model id (``name`` or ``org/name``) and nothing more."""
    if not isinstance(name, str):
        return False
    parts = name.split("/")
    if len(parts) > 2:
        return False
    return all(_ID_PART.fullmatch(part) and "--" not in part and ".." not in part for part in parts)


def _check_revision(revision):
    if not isinstance(revision, str) or not _REVISION.fullmatch(revision) or ".." in revision:
        raise ValueError(f"invalid revision {revision!r}: expected a branch, tag or commit hash")


def _cached_snapshot(cache_dir, repo_id, revision):
    """The snapshot folder of ``repo_id`` at ``revision`` in ``cache_dir``, and where it was sought.

    Returns (folder or None, description of the place looked at).
    """
    repo_folder = cache_dir / ("models--" + repo_id.replace("/", "--"))
    if _COMMIT.fullmatch(revision):
        commit = revision
    else:
        ref_file = repo_folder / "refs" / revision
        try:
            commit = ref_file.read_text(encoding="utf-8").strip()
        except OSError:
            return None, f"{ref_file} (missing)"
        if not _COMMIT.fullmatch(commit):
            return None, f"{ref_file} (does not hold a commit hash)"
    snapshot = repo_folder / "snapshots" / commit
    if not snapshot.is_dir():
        return None, f"{snapshot} (missing)"
    if not any((snapshot / marker).is_file() for marker in _MODEL_MARKERS):
        return None, f"{snapshot} (incomplete: no config.json or modules.json)"
    return snapshot, str(snapshot)


def _download(repo_id, revision, cache_dir):
    """Fetch ``repo_id`` with huggingface_hub. Returns (folder or None, why it was not fetched)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true"):
        return None, "download skipped (HF_HUB_OFFLINE is set)"
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None, "download skipped (huggingface_hub is not installed: pip install 'bertcpu[hub]')"
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=str(cache_dir),
                                   allow_patterns=_DOWNLOAD_PATTERNS)
    except Exception as error:  # network, authentication, missing repository: all mean "not here"
        reason = " ".join(str(error).split()) or type(error).__name__
        return None, f"download from the hub failed ({type(error).__name__}: {reason})"
    return Path(folder), None


def resolve_model_path(name_or_path, revision=None, cache_dir=None, download=True):
    """The local folder holding the model called ``name_or_path``.

    ``revision`` (default "main") selects a branch, tag or commit for hub ids; ``cache_dir`` overrides
    the HuggingFace cache folder; ``download=False`` never touches the network.
    Raises ModelNotFoundError (a FileNotFoundError) naming every place it looked.
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str):
        raise TypeError(f"model name must be a string or a path, got {type(name_or_path).__name__}")
    if not name_or_path:
        raise ModelNotFoundError("empty model name: give a model folder or a HuggingFace model id")
    revision = "main" if revision is None else revision
    _check_revision(revision)

    local = Path(os.path.expanduser(name_or_path))
    if local.is_dir():
        return local
    if local.exists():
        raise ModelNotFoundError(f"{name_or_path!r} is a file, not a model folder")
    looked = [f"no local folder {str(local.absolute())!r}"]
    if not is_hub_id(name_or_path):
        raise ModelNotFoundError(
            f"model {name_or_path!r} not found: {looked[0]}, and it is not a HuggingFace model id "
            "(expected 'name' or 'org/name')")

    cache = Path(cache_dir) if cache_dir is not None else hf_hub_cache_dir()
    snapshot, place = _cached_snapshot(cache, name_or_path, revision)
    if snapshot is not None:
        return snapshot
    looked.append(f"not in the HuggingFace cache: {place}")
    if download:
        folder, reason = _download(name_or_path, revision, cache)
        if folder is not None:
            return folder
        looked.append(reason)
    raise ModelNotFoundError(f"model {name_or_path!r} not found: " + "; ".join(looked))
