"""A restricted unpickler for data files that are pickles (InsightFace validation ``.bin``).

``pickle.load`` on a downloaded file runs whatever callable the file names. This
unpickler resolves only the few globals that plain numpy arrays, bytes and bools need,
and wraps those that could build arbitrary objects (object dtypes, codecs) so they accept
only harmless arguments. Anything else is refused with an error naming the global.
"""

from __future__ import annotations

import codecs
import importlib
import io
import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle names a global outside the allow-list; the message names it and the file."""


def _numpy_core(module: str, name: str) -> Callable[..., Any]:
    # numpy 2 moved numpy.core to numpy._core; old files name either.
    try:
        return getattr(importlib.import_module(f"numpy._core.{module}"), name)
    except ImportError:  # numpy < 2
        return getattr(importlib.import_module(f"numpy.core.{module}"), name)


def _clean_dtype(dtype: Any) -> np.dtype:
    """A fresh copy of a plain (non-structured, non-object) dtype.

    A pickle can BUILD a dtype with forged flags (e.g. mark ``V8`` as holding object
    pointers); rebuilding it from its type string drops anything forged.
    """
    if not isinstance(dtype, np.dtype) or dtype.names is not None or dtype.subdtype is not None:
        raise UnsafePickleError(f"only plain numpy dtypes are allowed, got {dtype!r}")
    clean = np.dtype(dtype.str)
    if clean.hasobject:
        raise UnsafePickleError(f"object dtype {dtype} is not allowed in a data pickle")
    return clean


class _SafeArray(np.ndarray):
    """ndarray whose unpickled state may only use a plain, freshly rebuilt dtype."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple):
            raise UnsafePickleError("malformed ndarray state")
        state = tuple(_clean_dtype(v) if isinstance(v, np.dtype) else v for v in state)
        super().__setstate__(state)


class _NdarrayToken:
    """Stands in for ``numpy.ndarray``: only ``_reconstruct`` may receive it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsafePickleError("numpy.ndarray may only be rebuilt through _reconstruct")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _NdarrayToken:
        raise UnsafePickleError("numpy _reconstruct is allowed only for numpy.ndarray")
    real = _numpy_core("multiarray", "_reconstruct")
    return real(_SafeArray, shape, _clean_dtype(np.dtype(dtype)))


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    array = _numpy_core("numeric", "_frombuffer")(buffer, _clean_dtype(dtype), shape, order)
    return array.view(_SafeArray)


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError(f"object dtype {dtype} is not allowed in a data pickle")
    return dtype


def _plain_scalar(dtype: Any, *args: Any) -> Any:
    return _numpy_core("multiarray", "scalar")(_clean_dtype(dtype), *args)


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles made by Python 3 store bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode is allowed only as (str, 'latin1') -> bytes")
    return codecs.encode(text, "latin1")


def _plain_bytes(*args: Any) -> bytes:
    if args and not isinstance(args[0], (bytes, bytearray, list, tuple, int)):
        raise UnsafePickleError(f"bytes() of {type(args[0]).__name__} is not allowed")
    return bytes(*args)


def _allowed() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NdarrayToken,
        ("numpy", "dtype"): _plain_dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytes"): _plain_bytes,
        ("__builtin__", "bytes"): _plain_bytes,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        table[(f"{core}.multiarray", "scalar")] = _plain_scalar
        table[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/scalar, dtype and bytes constructors."""

    def __init__(self, file: io.BufferedIOBase, source: str = "<pickle>", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._table[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to load global '{module}.{name}': only numpy arrays, "
                f"bytes and bools are allowed in this file (it may be malicious or not a data "
                f"file)"
            ) from None


def _load(file: io.BufferedIOBase, source: str, encoding: str) -> Any:
    try:
        return RestrictedUnpickler(file, source=source, encoding=encoding).load()
    except UnsafePickleError as err:
        if str(err).startswith(source):
            raise
        raise UnsafePickleError(f"{source}: {err}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, IndexError) as err:
        raise ValueError(f"{source}: not a readable pickle ({type(err).__name__}: {err})") from err


def safe_load(path: str | os.PathLike, encoding: str = "bytes") -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`.

    ``encoding="bytes"`` keeps Python 2 ``str`` objects as ``bytes`` (old InsightFace
    files). Refused globals raise :class:`UnsafePickleError`; truncated or malformed
    pickles raise ``ValueError``; both name the file.
    """
    path = str(path)
    with open(path, "rb") as f:
        return _load(f, path, encoding)


def safe_loads(data: bytes, source: str = "<bytes>", encoding: str = "bytes") -> Any:
    """:func:`safe_load` for in-memory bytes."""
    return _load(io.BytesIO(data), source, encoding)
