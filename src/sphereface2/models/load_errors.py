"""Why ``torch.load(weights_only=True)`` failed, in words that give no unsafe advice.

When a file holds anything besides tensors and plain containers, torch refuses it and
suggests re-running ``torch.load`` with ``weights_only=False`` or allow-listing the class.
Either runs code chosen by whoever wrote the file, so sphereface2 never repeats that advice:
:func:`describe_load_error` says that the file holds objects a weights-only load refuses
and names the first one torch reported.
"""

from __future__ import annotations

import pickle
import re

# torch's refusal names the object after "WeightsUnpickler error:", e.g.
# "Unsupported global: GLOBAL __main__.Foo was not an allowed global by default. ..."
_REFUSED = re.compile(
    r"WeightsUnpickler error:\s*(?:Unsupported global:\s*)?"
    r"(.+?)(?=\s+was not|\.\s|\s+Check the|\s+Please|$)"
)


def is_weights_only_refusal(err: BaseException) -> bool:
    """True when ``err`` is torch refusing the file's contents under ``weights_only=True``."""
    text = str(err)
    return isinstance(err, pickle.UnpicklingError) or "weights_only" in text


def describe_load_error(err: BaseException) -> str:
    """One line saying why a weights-only load of a file failed (the caller names the file)."""
    text = " ".join(str(err).split())
    if not is_weights_only_refusal(err):
        return text or type(err).__name__
    found = _REFUSED.search(text)
    what = f" ({found.group(1).strip()[:120]})" if found else ""
    return (
        f"it holds objects that a weights-only load refuses{what}; sphereface2 opens "
        "checkpoints only that way, so that no code stored in a file can run"
    )
