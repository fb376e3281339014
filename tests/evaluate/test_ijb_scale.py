"""10 million IJB-style template pairs: scored, ROC built and TAR@FAR read in bounded memory.

Runs in a fresh interpreter so that its peak resident memory is its own (pytest's process may
already have peaked higher). The peak is reset with /proc/self/clear_refs where Linux allows it;
otherwise the inputs are generated without large temporaries, so the peak after generation is
the baseline."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

NUM_PAIRS = 10_000_000
EXTRA_MEMORY_LIMIT = 1.5 * 2**30

_SCRIPT = textwrap.dedent(
    """
    import json, resource, time
    import numpy as np, torch
    from sphereface2.evaluate.ijb import score_template_pairs, tar_at_far, IJB_FARS

    torch.set_num_threads(1)

    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return None

    rng = np.random.default_rng(0)
    num_templates, dim, num_pairs = 4000, 128, NUM_PAIRS
    feats = rng.normal(size=(num_templates, dim)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    ids = np.arange(num_templates, dtype=np.int64) * 3 + 1
    t1 = rng.integers(0, num_templates, size=num_pairs)
    t1 *= 3
    t1 += 1
    t2 = rng.integers(0, num_templates, size=num_pairs)
    t2 *= 3
    t2 += 1
    labels = rng.integers(0, 1000, size=num_pairs, dtype=np.int16) == 0

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current resident size
        reset = True
    except OSError:
        reset = False
    rusage_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    baseline = status("VmRSS") if reset else rusage_peak

    start = time.perf_counter()
    scores = score_template_pairs(feats, ids, t1, t2)
    scored = time.perf_counter()
    reads = tar_at_far(scores, labels, IJB_FARS)
    done = time.perf_counter()
    peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    check = np.einsum("ij,ij->i", feats[(t1[:1000] - 1) // 3], feats[(t2[:1000] - 1) // 3])
    print(json.dumps({
        "score_s": scored - start, "roc_s": done - scored, "extra_bytes": peak - baseline,
        "peak_reset": reset, "max_err": float(np.max(np.abs(scores[:1000] - check))),
        "num_reads": len(reads), "genuine": int(labels.sum()),
    }))
    """
).replace("NUM_PAIRS", str(NUM_PAIRS))


@pytest.mark.slow
def test_ten_million_pairs_in_bounded_memory(capsys):
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    with capsys.disabled():
        print(
            f"\n{NUM_PAIRS:,} IJB pairs (d=128, 1 thread): scoring {stats['score_s']:.1f} s, "
            f"ROC + TAR@FAR {stats['roc_s']:.1f} s, extra peak memory "
            f"{stats['extra_bytes'] / 2**20:.0f} MiB (peak reset: {stats['peak_reset']})"
        )
    assert stats["max_err"] < 1e-5
    assert stats["num_reads"] == 12 and stats["genuine"] > 5000
    assert stats["extra_bytes"] < EXTRA_MEMORY_LIMIT
