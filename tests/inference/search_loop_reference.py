"""Float64 loop reference of top-K gallery search; imports nothing from sphereface2."""

from __future__ import annotations

import numpy as np


def reference_top_k(gallery, labels, queries, k, per_identity=True):
    """Per query: ``[(score, label_or_row, best_row)]`` best first (ties: lower id first).

    Identity score = the best of its rows (first such row); per image: each row alone.
    """
    g = np.asarray(gallery, np.float64)
    out = []
    for q in np.asarray(queries, np.float64):
        best = {}
        for row in range(g.shape[0]):
            s = float(sum(a * b for a, b in zip(g[row], q)))
            key = int(labels[row]) if per_identity else row
            if key not in best or s > best[key][0]:
                best[key] = (s, row)
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:k]
        out.append([(s, key, row) for key, (s, row) in ranked])
    return out


def unit_rows(rng, n, d):
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
