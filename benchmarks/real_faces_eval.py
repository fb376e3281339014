"""Verification of a trained run on cfp_dev pair lists, embedding each image once.

The FF and FP test lists share their 2,097 images, so the run embeds every image once
(flip test: raw embedding of the image plus that of its mirror, as ``sphereface2
evaluate`` does) and scores the pairs from the rows, with both of the project's
protocols (InsightFace 10-fold and OpenSphere best threshold). This is the same
arithmetic as ``sphereface2 evaluate RUN ff.bin fp.bin`` without embedding each image
once per pair it appears in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sphereface2.data.list_file import ListFileDataset
from sphereface2.data.pairs import read_pair_list
from sphereface2.data.transforms import eval_transform
from sphereface2.metrics.verification import evaluate_pairs
from sphereface2.models.embed import embed_dataset
from sphereface2.models.loading import load_embedding_model


def evaluate_run(
    run: Path,
    image_list: Path,
    root: Path,
    pair_lists: dict[str, Path],
    batch_size: int = 256,
) -> dict[str, dict[str, float]]:
    """``{set name: {acc_10fold, acc_10fold_std, acc_best_threshold}}`` of ``run``'s
    evaluation weights on each pair list (paths relative to ``root``)."""
    model = load_embedding_model(run)
    dataset = ListFileDataset(image_list, root=root, transform=eval_transform(model.input_size))
    embeddings = embed_dataset(model, dataset, batch_size=batch_size, flip=True)
    lines = image_list.read_text(encoding="utf-8").splitlines()
    row = {str((root / line.rsplit(" ", 1)[0]).resolve()): i for i, line in enumerate(lines)}
    results: dict[str, dict[str, float]] = {}
    for name, path in pair_lists.items():
        pairs = read_pair_list(path, root=root)
        i0 = np.array([row[str(Path(p).resolve())] for p in pairs.paths0])
        i1 = np.array([row[str(Path(p).resolve())] for p in pairs.paths1])
        res = evaluate_pairs(embeddings[i0], embeddings[i1], np.asarray(pairs.issame), name=name)
        results[name] = {
            "acc_10fold": res.kfold.accuracy,
            "acc_10fold_std": res.kfold.std,
            "acc_best_threshold": res.best_threshold.accuracy,
        }
    return results
