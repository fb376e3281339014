"""Numbered lines of the UTF-8 text files that lists and pair files are written in."""

from __future__ import annotations

from collections.abc import Iterator


def numbered_lines(path: str, error: type[Exception] = ValueError) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` for each line of ``path``, line endings removed.

    A UTF-8 byte-order mark at the start (left by some Windows editors) is dropped. A line
    that is not valid UTF-8 raises ``error`` naming the file, the line and the byte, rather
    than the bare ``UnicodeDecodeError`` that text mode would give without a line number.
    """
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start : err.start + 1]
                raise error(
                    f"{path}:{line_no}: not UTF-8 text (byte {bad!r} at column {err.start + 1}); "
                    f"save the file as UTF-8"
                ) from None
            if line_no == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield line_no, text.rstrip("\r\n")
