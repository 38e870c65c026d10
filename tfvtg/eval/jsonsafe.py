"""Reading JSON and text that came from outside: never a crash, always an
error that names the file.

Annotation files, LLM outputs and decomposition files are user input. The
standard library turns some of their defects into exceptions nobody
catches: JSON nested a few thousand levels deep raises ``RecursionError``,
an integer of more than 4,300 digits ``ValueError`` from ``int()``, a
400-digit one ``OverflowError`` once it is made a float, one byte that is
not UTF-8 ``UnicodeDecodeError`` for the whole file, and ``"\\ud800"`` gives a
string that cannot be written back as UTF-8. The helpers here turn each of
those into either a value the caller validates (numbers too large for a
float become ``inf``, which every reader refuses) or an
:class:`~tfvtg.errors.InvalidInputError` (or the class the caller names)
that says which file and what is wrong.

Other commands can use :func:`read_json` for their own JSON inputs (e.g. the
``--decomposition`` file of ``tfvtg ground``).
"""
from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tfvtg.errors import InvalidInputError, MissingFileError

__all__ = ["read_json", "loads_json", "read_bytes", "read_lines", "decode_utf8", "clean_text", "finite_number", "clean_json",
           "short_repr", "BAD_BYTE"]

#: stands for a byte that is not UTF-8 in text decoded by :func:`decode_utf8`;
#: a noncharacter, so no real text holds it (files that do are read strictly)
BAD_BYTE = "\ufdd0"

# integers longer than this are read as floats (inf when out of range):
# Python refuses int() of more than 4,300 digits, and no count or id is this long
_MAX_INT_DIGITS = 1000


def _parse_int(text: str) -> int | float:
    return int(text) if len(text) <= _MAX_INT_DIGITS else float(text)


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate (from a JSON escape such as
    ``"\\ud800"``) replaced by U+FFFD, so that it can be written as UTF-8.
    Other text is returned unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def loads_json(text: str, source: str | os.PathLike[str] = "<string>",
               error: type[Exception] = InvalidInputError) -> Any:
    """``json.loads`` that raises ``error`` naming ``source`` for any defect
    (syntax, nesting too deep, numbers out of range), never RecursionError.

    NaN and Infinity tokens are read as floats, as the standard library does;
    validators refuse them where a finite number is needed.
    """
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise error(f"{source}: JSON nested too deeply to read") from None
    except ValueError as exc:
        raise error(f"{source}: not valid JSON ({exc})") from None


def decode_utf8(data: bytes) -> tuple[str, bool]:
    """Decode ``data`` as UTF-8. A byte that is not UTF-8 becomes
    :data:`BAD_BYTE` (so that the entry holding it can be refused on its own);
    the flag says whether any did. A BOM is dropped."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", "surrogateescape")
    # surrogates here come only from undecodable bytes (strict UTF-8 never yields them)
    return "".join(BAD_BYTE if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text), True


def read_json(path: str | os.PathLike[str], what: str = "JSON file",
              error: type[Exception] = InvalidInputError) -> Any:
    """The JSON value in ``path``.

    Raises :class:`~tfvtg.errors.MissingFileError` when there is no such file,
    and ``error`` (naming the file) when it cannot be read, is not valid JSON,
    or is nested too deeply. Bytes that are not UTF-8 make the whole file
    unreadable here; annotation readers that can skip the one entry holding
    such a byte use :func:`decode_utf8` and :data:`BAD_BYTE`. Lone surrogates
    in strings are replaced (see :func:`clean_text`).
    """
    data = read_bytes(path, what, error)
    text, bad = decode_utf8(data)
    if bad:
        raise error(f"{path}: {what} is not UTF-8 text (byte {_first_bad_byte(data)})")
    return clean_json(loads_json(text, path, error))


def read_bytes(path: str | os.PathLike[str], what: str, error: type[Exception]) -> bytes:
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"{what} not found: {path}")
    if p.is_dir():
        raise error(f"{path}: {what} is a directory, not a file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def _first_bad_byte(data: bytes) -> int:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return -1


def clean_json(value: Any) -> Any:
    """Lone surrogates out of every string of a parsed JSON value (iterative:
    the value may be deep)."""
    if isinstance(value, str):
        return clean_text(value)
    if not isinstance(value, (dict, list)):
        return value
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, str):
                    node[i] = clean_text(v)
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        else:
            renamed = False
            for k, v in node.items():
                if isinstance(v, str):
                    node[k] = clean_text(v)
                elif isinstance(v, (dict, list)):
                    stack.append(v)
                renamed = renamed or (isinstance(k, str) and clean_text(k) != k)
            if renamed:  # rebuild in order: a cleaned key must keep its place
                items = [(clean_text(k) if isinstance(k, str) else k, v) for k, v in node.items()]
                node.clear()
                node.update(items)
    return value


def read_lines(path: str | os.PathLike[str], what: str = "file",
               error: type[Exception] = InvalidInputError) -> Iterator[tuple[int, str | None]]:
    """(line number from 1, text) for each line of ``path``; text is None
    for a line that is not UTF-8 (the caller skips and counts it). Lines end
    at ``\\n``; a trailing ``\\r`` is dropped; a BOM at the start is dropped."""
    data = read_bytes(path, what, error)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError:
            yield lineno, None


def finite_number(value: Any, what: str) -> float:
    """``value`` (a JSON number or a numeric string) as a finite float.

    Raises InvalidInputError naming ``what`` for booleans, non-numbers,
    NaN, infinities and numbers too large for a float (a 400-digit integer).
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise InvalidInputError(f"{what} must be a number, got {short_repr(value)}")
    try:
        x = float(value)
    except OverflowError:
        raise InvalidInputError(f"{what} is too large: {short_repr(value)}") from None
    except ValueError:
        raise InvalidInputError(f"{what} must be a number, got {short_repr(value)}") from None
    if not math.isfinite(x):
        raise InvalidInputError(f"{what} must be finite, got {short_repr(value)}")
    return x


def short_repr(value: Any, limit: int = 40) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {len(str(abs(value)))} digits" if value.bit_length() < 14000 else "a huge integer"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
