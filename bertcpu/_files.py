"""Reading the text and JSON files of a model folder.

Whatever is wrong with such a file (not UTF-8, not JSON, nested beyond reason, the wrong kind of
value at the top) becomes one ValueError that names the file and says what is wrong, rather than a
UnicodeDecodeError or RecursionError from deep inside the standard library. Every JSON file the
package reads goes through here.
"""
import json
import os

# No model file nests deeper than a few levels (a tokenizer.json: 5). Refusing more keeps every
# accepted value far inside Python's recursion limit, so nothing that walks or prints it (an error
# message's repr of a field) can hit that limit either.
MAX_JSON_DEPTH = 100

_JSON_KINDS = {dict: "object", list: "array"}


def is_int(value):
    """Whether value is an integer as JSON gives them (an int, and not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def decode_utf8(raw):
    """raw (bytes) as text, or ValueError "not UTF-8 text"."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error})") from None


def parse_json(raw, expected=dict):
    """The JSON value in raw (bytes, UTF-8), or ValueError saying what is wrong with it (the caller
    says where it comes from). expected: the type the top-level value must have (dict or list), or
    None for any."""
    text = decode_utf8(raw)
    try:
        value = json.loads(text)
        too_deep = _nested_deeper_than(value, MAX_JSON_DEPTH)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error})") from None
    except RecursionError:  # the parser reached Python's recursion limit
        too_deep = True
    if too_deep:
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    if expected is not None and not isinstance(value, expected):
        raise ValueError(f"not a JSON {_JSON_KINDS[expected]} (got {type(value).__name__})")
    return value


def read_text(path):
    """The content of a UTF-8 text file, line endings untouched."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return decode_utf8(raw)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def read_json(path, expected=dict):
    """The JSON value of a file; see parse_json."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return parse_json(raw, expected)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def describe(value):
    """A JSON value as an error message shows it: a scalar as written, a container by its type
    (its repr could run to megabytes)."""
    return type(value).__name__ if isinstance(value, (dict, list)) else repr(value)


def _nested_deeper_than(value, limit):
    """Whether value holds containers more than limit levels deep (walked without recursion)."""
    pending = [(value, 1)] if isinstance(value, (dict, list)) else []
    while pending:
        container, depth = pending.pop()
        if depth > limit:
            return True
        items = container.values() if isinstance(container, dict) else container
        pending.extend((item, depth + 1) for item in items if isinstance(item, (dict, list)))
    return False
