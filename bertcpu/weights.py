"""Reading and writing BERT weights in the safetensors format, one tensor at a time.

Reading memory-maps each file and hands out one float32 tensor at a time, so that loading a model
costs the engine's packed copy of the weights plus a single tensor, never a second copy of the
whole checkpoint. The safetensors header is parsed and checked here (not by the safetensors
package) because bf16 tensors have no numpy dtype and must be widened by hand anyway, and because
a damaged header must become an error naming the file and tensor before any byte of data is read
or any buffer is sized from it.

Only safetensors is read: pickle-based checkpoints (pytorch_model.bin) can run arbitrary code when
loaded, so they are refused with an explanation instead.
"""
import json
import logging
import math
import mmap
import os

import numpy as np

from ._files import parse_json, read_json

logger = logging.getLogger("bertcpu")

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")

# Name prefixes under which task models (BertForMaskedLM, ...) or wrappers store the encoder.
_PREFIXES = ("bert.", "model.")

# Tensors a checkpoint may carry that the encoder does not use: buffers transformers saves, and
# the task heads of BertFor* models.
_IGNORED_NAMES = ("embeddings.position_ids", "embeddings.token_type_ids")
_IGNORED_HEADS = ("cls.", "classifier.", "qa_outputs.", "lm_head.")

# Byte size of every dtype the safetensors format defines, so that the size of any tensor (even one
# that is skipped) can be checked against its offsets.
_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
# The dtypes a weight may be stored in; all are computed in float32.
_LOADABLE_DTYPES = ("F32", "F16", "BF16")

# Missing tensors named in one error.
_MISSING_SHOWN = 5

# The safetensors package refuses headers above 100 MB; a BERT header is a few tens of kB.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class TensorEntry:
    """One tensor of a safetensors file: where its bytes are and what they mean."""

    __slots__ = ("file", "name", "dtype", "shape", "start", "end")

    def __init__(self, file, name, dtype, shape, start, end):
        self.file = file        # the SafetensorsFile holding it
        self.name = name        # the name as stored in the file (prefix included)
        self.dtype = dtype      # safetensors dtype string, e.g. "F32"
        self.shape = shape      # tuple of ints
        self.start = start      # absolute byte offsets in the file
        self.end = end


class SafetensorsFile:
    """The validated header of one .safetensors file, and read access to its tensors."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.tensors = {}
        self.metadata = None
        self._mmap = None
        self._parse_header()

    def _error(self, message, tensor=None):
        where = f"{self.path}: tensor {tensor!r}: " if tensor is not None else f"{self.path}: "
        return ValueError(where + message)

    def _parse_header(self):
        file_size = os.path.getsize(self.path)
        if file_size < 8:
            raise self._error(f"truncated safetensors file: {file_size} bytes, fewer than the 8-byte "
                              f"header length")
        with open(self.path, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            if header_size > file_size - 8:
                raise self._error(f"truncated or corrupt safetensors file: header length "
                                  f"{header_size} exceeds the {file_size - 8} bytes after it")
            if header_size > _MAX_HEADER_BYTES:
                raise self._error(f"corrupt safetensors file: header length {header_size} is larger "
                                  f"than the {_MAX_HEADER_BYTES}-byte limit")
            raw_header = f.read(header_size)
        try:
            header = parse_json(raw_header)
        except ValueError as e:
            raise self._error(f"corrupt safetensors header: {e}") from None

        data_start = 8 + header_size
        data_size = file_size - data_start
        for name, entry in header.items():
            if name == "__metadata__":
                self.metadata = entry
                continue
            self.tensors[name] = self._parse_entry(name, entry, data_start, data_size)
        self._check_no_overlap()

    def _parse_entry(self, name, entry, data_start, data_size):
        if not isinstance(entry, dict):
            raise self._error("header entry is not a JSON object", name)
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            raise self._error(f"header entry has no dtype string (got {dtype!r})", name)
        if (not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise self._error(f"invalid shape {shape!r}: must be a list of non-negative integers", name)
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise self._error(f"invalid data_offsets {offsets!r}: must be [begin, end] integers", name)
        begin, end = offsets
        if not 0 <= begin <= end:
            raise self._error(f"invalid data_offsets {offsets!r}: need 0 <= begin <= end", name)
        if end > data_size:
            raise self._error(f"data_offsets {offsets!r} reach beyond the end of the file (the data "
                              f"section holds {data_size} bytes): the file is truncated or corrupt",
                              name)
        item_size = _DTYPE_SIZES.get(dtype)
        if item_size is not None:
            # Python integers: a hostile shape cannot overflow this product.
            needed = math.prod(shape) * item_size
            if needed != end - begin:
                raise self._error(f"impossible size: shape {shape} of {dtype} needs {needed} bytes but "
                                  f"data_offsets {offsets!r} span {end - begin}", name)
        return TensorEntry(self, name, dtype, tuple(shape), data_start + begin, data_start + end)

    def _check_no_overlap(self):
        entries = sorted((e for e in self.tensors.values() if e.end > e.start), key=lambda e: e.start)
        for previous, current in zip(entries, entries[1:]):
            if current.start < previous.end:
                raise self._error(f"corrupt safetensors header: the data of tensor {current.name!r} "
                                  f"overlaps that of tensor {previous.name!r}")

    def read(self, entry):
        """The tensor as a float32 C-contiguous array (shape from the header).

        An F32 tensor is a read-only view of the memory map; F16 and BF16 tensors are widened into
        a fresh array. Call release(entry) once the array is no longer needed.
        """
        if entry.dtype not in _LOADABLE_DTYPES:
            raise self._error(f"unsupported dtype {entry.dtype}: weights must be F32, F16 or BF16",
                              entry.name)
        if self._mmap is None:
            with open(self.path, "rb") as f:
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        count = math.prod(entry.shape)
        # Safetensors stores little-endian data; the explicit '<' keeps big-endian hosts correct.
        if entry.dtype == "F32":
            array = np.frombuffer(self._mmap, dtype="<f4", count=count, offset=entry.start)
            if array.dtype != np.float32:
                array = array.astype(np.float32)
        elif entry.dtype == "F16":
            array = np.frombuffer(self._mmap, dtype="<f2", count=count, offset=entry.start)
            array = array.astype(np.float32)
        else:
            # bfloat16 is the upper half of a float32: widen the 16 bits into the high half.
            raw = np.frombuffer(self._mmap, dtype="<u2", count=count, offset=entry.start)
            array = (raw.astype(np.uint32) << 16).view(np.float32)
        return array.reshape(entry.shape)

    def release(self, entry):
        """Drop the pages of entry's bytes from this process's resident memory.

        The data is file-backed, so the kernel re-reads it if it is touched again; without this,
        every byte read while loading would stay resident and loading would cost two copies.
        """
        if self._mmap is None or entry.end == entry.start or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        start = entry.start // page * page
        self._mmap.madvise(mmap.MADV_DONTNEED, start, entry.end - start)

    def close(self):
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                # A caller still holds a view of the map; it is unmapped when that view is freed.
                pass
            self._mmap = None


def canonical_name(name):
    """The name without a `bert.` / `model.` prefix, as in transformers' BertModel."""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def is_ignored(name):
    """Whether a tensor (canonical name) is something the encoder does not use."""
    return name in _IGNORED_NAMES or name.startswith(_IGNORED_HEADS)


def checkpoint_files(folder):
    """The safetensors files of a model folder: model.safetensors, or the shards its
    model.safetensors.index.json names."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"model folder not found: {folder}")
    single = os.path.join(folder, SINGLE_FILE)
    index = os.path.join(folder, INDEX_FILE)
    if os.path.isfile(single):
        return [single]
    if os.path.isfile(index):
        return _shards_from_index(folder, index)
    pickles = [name for name in _PICKLE_FILES if os.path.isfile(os.path.join(folder, name))]
    if pickles:
        raise ValueError(
            f"{folder} holds {pickles[0]} but no {SINGLE_FILE}: only safetensors weights are "
            f"supported (pickle files can run arbitrary code when loaded). Convert it once with "
            f"transformers: AutoModel.from_pretrained(folder).save_pretrained(folder)")
    raise FileNotFoundError(f"{folder}: no {SINGLE_FILE} or {INDEX_FILE}")


def _shards_from_index(folder, index_path):
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path}: no 'weight_map' object naming the shard of each tensor")
    shards = []
    for tensor, shard in weight_map.items():
        # A shard is a file next to the index; a path could point anywhere on the disk.
        if not isinstance(shard, str) or os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise ValueError(f"{index_path}: tensor {tensor!r} maps to {shard!r}, which is not a "
                             f"file name in the model folder")
        if shard not in shards:
            shards.append(shard)
    paths = [os.path.join(folder, shard) for shard in shards]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{index_path} names shard {os.path.basename(path)!r}, which "
                                    f"does not exist in {folder}")
    return paths


class Checkpoint:
    """All tensors of a model folder's safetensors file(s), by canonical (prefix-free) name."""

    def __init__(self, folder):
        self.files = [SafetensorsFile(path) for path in checkpoint_files(folder)]
        self.tensors = {}
        for file in self.files:
            for name, entry in file.tensors.items():
                canonical = canonical_name(name)
                if canonical in self.tensors:
                    other = self.tensors[canonical]
                    raise ValueError(f"tensor {canonical!r} is stored twice: as {other.name!r} in "
                                     f"{other.file.path} and as {name!r} in {file.path}")
                self.tensors[canonical] = entry

    def __contains__(self, name):
        return name in self.tensors

    def check(self, expected):
        """Check, before any data is read, that each expected (name, shape) is present, of that
        shape and loadable; log the tensors that are neither expected nor known to be unused.

        Missing tensors are reported first (up to five of them), otherwise the first tensor of the
        wrong shape or dtype. expected is walked in order and may be a generator describing far more
        than the checkpoint holds (a config.json much larger than its checkpoint): the walk stops at
        the fifth missing tensor, so it costs at most the checkpoint's size.
        """
        missing, expected_names, wrong = [], set(), None
        remaining = iter(expected)
        for name, shape in remaining:
            entry = self.tensors.get(name)
            if entry is None:
                missing.append(name)
                if len(missing) == _MISSING_SHOWN:
                    break
            elif wrong is None and (entry.shape != tuple(shape) or entry.dtype not in _LOADABLE_DTYPES):
                wrong = entry, shape
            expected_names.add(name)
        if missing:
            # Past the fifth, the rest is not walked: there may be more.
            more = ", ..." if len(missing) == _MISSING_SHOWN and next(remaining, None) is not None else ""
            sample = ", ".join(repr(e.name) for e in list(self.tensors.values())[:3])
            holds = f"the checkpoint holds e.g. {sample}" if sample else "the checkpoint holds no tensors"
            raise ValueError(f"{self._where()}: missing tensor(s) {', '.join(map(repr, missing))}{more} "
                             f"({holds})")
        if wrong is not None:
            entry, shape = wrong
            if entry.shape != tuple(shape):
                raise ValueError(f"{entry.file.path}: tensor {entry.name!r} has shape "
                                 f"{list(entry.shape)}, expected {list(shape)} from the config")
            raise ValueError(f"{entry.file.path}: tensor {entry.name!r}: unsupported dtype "
                             f"{entry.dtype}: weights must be F32, F16 or BF16")
        unused = [entry.name for name, entry in self.tensors.items()
                  if name not in expected_names and not is_ignored(name)]
        if unused:
            logger.warning("%s: %d tensor(s) not used by the encoder: %s", self._where(), len(unused),
                           ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else ""))

    def iter_tensors(self, expected):
        """Yield (name, float32 array) for each expected (name, shape), one at a time; check(expected)
        must have passed.

        Each array is only valid until the next one is requested: its pages are released then, to
        keep resident memory at one tensor.
        """
        for name, _ in expected:
            entry = self.tensors[name]
            array = entry.file.read(entry)
            yield name, array
            del array
            entry.file.release(entry)

    def read_tensor(self, name, shape, what):
        """A float32 copy of tensor `name` (canonical), which must have `shape`. what: the part
        of the model it belongs to, for the error when it is missing (e.g. "the
        sequence-classification head")."""
        entry = self.tensors.get(name)
        if entry is None:
            heads = sorted({n.split(".")[0] for n in self.tensors if is_ignored(n)})
            holds = f"its head tensors start with {', '.join(h + '.' for h in heads)}" if heads else \
                "it holds no task-head tensors"
            raise ValueError(f"{self._where()}: no tensor {name!r}, which {what} needs: this checkpoint "
                             f"was not saved with that head ({holds})")
        if entry.shape != tuple(shape):
            raise ValueError(f"{entry.file.path}: tensor {entry.name!r} has shape {list(entry.shape)}, "
                             f"expected {list(shape)} for {what}")
        array = np.array(entry.file.read(entry), dtype=np.float32)  # a copy: the map is released
        entry.file.release(entry)
        return array

    def close(self):
        for file in self.files:
            file.close()

    def _where(self):
        return self.files[0].path if len(self.files) == 1 else os.path.dirname(self.files[0].path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_safetensors(path, tensors, fetch, metadata=None):
    """Write a float32 safetensors file one tensor at a time.

    tensors: list of (name, shape); fetch(name) returns that tensor as a float32 array. Only one
    tensor is in memory at a time, so saving a model does not double its footprint. The file is
    written next to its destination and renamed into place, so a failure leaves no partial file.
    """
    header = {}
    offset = 0
    for name, shape in tensors:
        size = math.prod(shape) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Pad with spaces (valid JSON whitespace) so the data starts 8-byte aligned, as the
    # safetensors package writes it.
    header_bytes += b" " * (-len(header_bytes) % 8)

    partial = os.fspath(path) + ".partial"
    try:
        with open(partial, "wb") as f:
            f.write(len(header_bytes).to_bytes(8, "little"))
            f.write(header_bytes)
            for name, shape in tensors:
                array = np.ascontiguousarray(fetch(name), dtype="<f4")
                if array.shape != tuple(shape):
                    raise ValueError(f"tensor {name!r} has shape {list(array.shape)}, expected "
                                     f"{list(shape)}")
                f.write(array.data)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
