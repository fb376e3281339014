"""Label audit: rank a run's training samples by how well they fit their own class.

    >>> result = audit_labels("runs/sf2_noise20")          # the run's data.train
    >>> result.metrics.to_dict()["average_precision"]      # when the run injected noise
    >>> audit_labels("runs/sf2", out="runs/sf2/audit")     # + audit.csv/.json/.png

SphereFace2 trains K one-vs-all binary classifiers, so after training every sample has
its own verdict: the positive logit of its labelled class. A sample whose labelled class
does not claim it (low cosine to that class's proxy, and often a high cosine to another)
is the likely mislabelled one. The audit embeds every sample with the run's weights
(eval-time preprocessing: resize to ``model.input_size``, normalise, no random flip;
optionally flip-fused), L2-normalises it and scores it against every unit-length class
proxy of the trained head:

- ``own``: the cosine to the labelled class (the ranking key, lowest first; the same key
  for every head, so heads compare like for like);
- ``positive_logit``: for SphereFace2 heads, the logit of the labelled class's binary
  classifier, computed with the head's own margin type, r, m, t and bias
  (:func:`~sphereface2.heads.sphereface2_math.positive_logit`); a negative value means
  the classifier rejects the label;
- the best other class, its cosine, and the margin ``own - best other``.

The labels are those the run trained with (:mod:`sphereface2.evaluate.label_audit_labels`).
When the run injected noise the ranking is scored as a detector of the changed labels
(:mod:`sphereface2.metrics.label_audit`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sphereface2.data.training_sets import detect_training_set, open_training_set
from sphereface2.data.transforms import eval_transform
from sphereface2.evaluate.label_audit_labels import TrainedLabels, trained_labels
from sphereface2.evaluate.label_audit_model import AuditModel, load_audit_model
from sphereface2.heads import SphereFace2Head
from sphereface2.heads.sphereface2_math import positive_logit
from sphereface2.metrics.label_audit import DetectionMetrics, detection_metrics
from sphereface2.models.embed import Progress, embed_dataset


@dataclass(frozen=True)
class ClassScores:
    """Each sample's cosine to its own class and to the closest other class.

    Attributes:
        own: (N,) float32 cosine to the labelled class's proxy.
        best_other_class: (N,) int64 the other class with the highest cosine (-1 when
            there is no other class).
        best_other: (N,) float32 that cosine (NaN when there is no other class).
    """

    own: np.ndarray
    best_other_class: np.ndarray
    best_other: np.ndarray

    @property
    def margin(self) -> np.ndarray:
        """(N,) own - best other: negative when another class claims the sample more."""
        return self.own - self.best_other


@torch.no_grad()
def score_against_proxies(
    embeddings: np.ndarray | torch.Tensor,
    proxies: torch.Tensor,
    labels: np.ndarray,
    chunk_size: int = 4096,
) -> ClassScores:
    """Cosines of L2-normalised ``embeddings`` (N, d) to the normalised rows of ``proxies``
    (K, d), reduced per sample to its own class and its best other class.

    The (chunk, K) cosine matrix is built ``chunk_size`` samples at a time on the
    proxies' device, so memory stays bounded for any N.
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = int(proxies.shape[0])
    emb = torch.as_tensor(embeddings)
    if emb.dim() != 2 or emb.shape[1] != proxies.shape[1] or emb.shape[0] != labels.shape[0]:
        raise ValueError(
            f"expected ({labels.shape[0]}, {proxies.shape[1]}) embeddings for "
            f"{labels.shape[0]} labels and {tuple(proxies.shape)} proxies, got {tuple(emb.shape)}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise ValueError(f"label {labels[bad]} of sample {bad} is outside [0, {num_classes})")
    weight = F.normalize(proxies.float(), dim=1)
    count = labels.shape[0]
    own = np.empty(count, np.float32)
    other_class = np.full(count, -1, np.int64)
    other = np.full(count, np.nan, np.float32)
    for start in range(0, count, chunk_size):
        x = F.normalize(emb[start : start + chunk_size].to(weight.device, torch.float32), dim=1)
        y = torch.as_tensor(labels[start : start + chunk_size], device=weight.device)
        cos = x @ weight.t()
        stop = start + x.shape[0]
        own[start:stop] = cos.gather(1, y[:, None]).squeeze(1).cpu().numpy()
        if num_classes > 1:
            cos.scatter_(1, y[:, None], float("-inf"))  # leave the own class out of the max
            best, which = cos.max(dim=1)
            other[start:stop] = best.cpu().numpy()
            other_class[start:stop] = which.cpu().numpy()
    return ClassScores(own, other_class, other)


def rank_ascending(scores: np.ndarray) -> np.ndarray:
    """Sample indices ordered by ascending score; ties keep index order."""
    return np.argsort(np.asarray(scores), kind="stable")


@dataclass
class AuditResult:
    """Everything the audit found; per-sample arrays are indexed by sample (not by rank).

    ``metrics`` is set when the run injected noise that changed some labels; its
    ``to_dict()`` (and :meth:`to_dict` here) gives plain numbers for benchmarks.
    """

    run: str
    model_file: str
    data: str
    data_kind: str
    head: str
    num_classes: int
    flip: bool
    ids: list[str]
    labels: np.ndarray
    label_names: list[str] | None
    scores: ClassScores
    positive_logit: np.ndarray | None
    order: np.ndarray
    injected: np.ndarray | None
    label_source: str
    noise: dict[str, Any] | None
    metrics: DetectionMetrics | None
    logit_rejects: dict[str, Any] | None
    notes: list[str]
    seconds: float
    files: dict[str, str] = field(default_factory=dict)
    dataset: Any = field(default=None, repr=False)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def label_name(self, label: int) -> str:
        """The class's name when the data has names (image folders), else its index."""
        if label < 0:
            return ""
        names = self.label_names
        return names[label] if names is not None and label < len(names) else str(label)

    def injected_text(self, index: int) -> str:
        """``yes``/``no`` whether the run changed this sample's label; ``unknown``."""
        if self.injected is None:
            return "unknown"
        return "yes" if self.injected[index] else "no"

    def rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Per-sample records in rank order (most suspicious first)."""
        rows = []
        for rank, index in enumerate(self.order[:limit].tolist(), start=1):
            label = int(self.labels[index])
            other = int(self.scores.best_other_class[index])
            row: dict[str, Any] = {
                "rank": rank,
                "index": index,
                "id": self.ids[index],
                "label": label,
                "label_name": self.label_name(label) if self.label_names else "",
                "own_cosine": float(self.scores.own[index]),
            }
            if self.positive_logit is not None:
                row["positive_logit"] = float(self.positive_logit[index])
            row.update(
                {
                    "best_other_class": other,
                    "best_other_name": self.label_name(other) if self.label_names else "",
                    "best_other_cosine": float(self.scores.best_other[index]),
                    "margin": float(self.scores.margin[index]),
                    "injected": self.injected_text(index),
                }
            )
            rows.append(row)
        return rows

    def to_dict(self, worst: int = 10) -> dict[str, Any]:
        """JSON-ready summary (no per-sample arrays; the ``worst`` lowest-ranked rows)."""
        own = self.scores.own.astype(np.float64)
        return {
            "run": self.run,
            "model_file": self.model_file,
            "data": self.data,
            "data_kind": self.data_kind,
            "head": self.head,
            "num_classes": self.num_classes,
            "num_samples": self.num_samples,
            "flip": self.flip,
            "score": "cosine of the L2-normalised embedding to the labelled class's unit proxy",
            "ranking": "ascending own-class cosine (lowest = most suspicious); ties by index",
            "labels": self.label_source,
            "noise": self.noise,
            "metrics": self.metrics.to_dict() if self.metrics is not None else None,
            "sphereface2_rejects": self.logit_rejects,
            "own_cosine": {
                "mean": float(own.mean()),
                "median": float(np.median(own)),
                "min": float(own.min()),
                "max": float(own.max()),
            },
            "another_class_closer": int((self.scores.margin < 0).sum()),
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "worst": self.rows(worst),
            "files": self.files,
        }


def _sample_ids(dataset: Any, kind: str, file: str) -> list[str]:
    """Record keys (RecordIO) or image paths relative to the data folder."""
    if kind == "recordio":
        return [str(int(k)) for k in dataset.keys]
    base = os.path.dirname(os.path.abspath(file)) if kind == "list" else file
    ids = []
    for p in dataset.paths:
        rel = os.path.relpath(p, base)
        ids.append(p if rel.startswith("..") else rel)
    return ids


def _same_data(a: str, b: str) -> bool:
    try:
        return os.path.realpath(detect_training_set(a)[1]) == os.path.realpath(
            detect_training_set(b)[1]
        )
    except (FileNotFoundError, ValueError):
        return False


def _logit_rejects(logit: np.ndarray, changed: np.ndarray | None) -> dict[str, Any]:
    """SphereFace2's own verdict: the labelled class's classifier says no (logit < 0)."""
    rejected = logit < 0
    out: dict[str, Any] = {"rejected": int(rejected.sum()), "threshold": "positive logit < 0"}
    if changed is not None and changed.any():
        hits = int((rejected & changed).sum())
        out["precision"] = hits / int(rejected.sum()) if rejected.any() else None
        out["recall"] = hits / int(changed.sum())
    return out


def _positive_logits(audit: AuditModel, own: np.ndarray) -> np.ndarray | None:
    head = audit.head
    if not isinstance(head, SphereFace2Head):
        return None
    logit = positive_logit(
        torch.from_numpy(own.astype(np.float64)),
        float(head.bias.detach()),
        margin_type=head.margin_type,
        r=head.r,
        m=head.m,
        t=head.t,
    )
    return logit.numpy()


def _open_data(audit: AuditModel, data: str | os.PathLike | None) -> tuple[Any, str, str, str]:
    """(dataset, path, kind, file) with the eval transform at the model's input size."""
    configured = audit.config.data.train
    path = str(data) if data is not None else configured
    try:
        kind, file = detect_training_set(path)
    except FileNotFoundError:
        if data is None:
            raise FileNotFoundError(
                f"{path}: the run's data.train (from {audit.path}) is not there; pass DATA"
            ) from None
        raise
    dataset = open_training_set(path, transform=eval_transform(audit.config.model.input_size))
    return dataset, path, kind, file


def audit_labels(
    run: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike | None = None,
    top: int = 64,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    flip: bool = True,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> AuditResult:
    """Score every sample of ``data`` against its trained label with ``run``'s head.

    Args:
        run: a run folder (its ``model.pt``: backbone and head), or a ``model.pt`` /
            ``ckpt_*.pt`` file.
        data: the samples to audit (default: the run config's ``data.train``); any
            training-set format.
        out: when given, write ``audit.csv``, ``audit.json`` and the contact sheet
            ``audit_worst.png`` there (:mod:`sphereface2.evaluate.label_audit_report`).
        top: samples on the contact sheet.
        device: where the backbone runs and cosines are computed.
        batch_size, num_workers: of the embedding pass.
        flip: sum each image's embedding with its mirror's (the evaluation protocol).
        progress: ``progress(done, total)`` after each batch.

    Raises:
        FileNotFoundError: no ``model.pt``, no data.
        ValueError: no head in the file, a noise record that does not match the data,
            labels outside the head's classes (messages name the file).
    """
    started = time.perf_counter()
    audit = load_audit_model(run, device)
    dataset, path, kind, file = _open_data(audit, data)
    is_training_set = data is None or _same_data(path, audit.config.data.train)
    found: TrainedLabels = trained_labels(
        np.asarray(dataset.labels),
        dataset.num_classes,
        audit.config.data.label_noise,
        audit.run_dir,
        is_training_set,
    )
    num_classes = int(audit.proxies.shape[0])
    beyond = np.flatnonzero(found.labels >= num_classes)
    if beyond.size:
        i = int(beyond[0])
        raise ValueError(
            f"{path}: sample {i} has label {int(found.labels[i])} but the head in "
            f"{audit.path} has {num_classes} classes; this is not the data the run trained on"
        )
    emb = embed_dataset(audit.model, dataset, batch_size, flip, num_workers, progress)
    scores = score_against_proxies(emb, audit.proxies.to(audit.model.device), found.labels)
    logits = _positive_logits(audit, scores.own)
    changed = found.changed
    metrics = None
    notes = [f"labels: {found.source}"]
    if changed is not None and 0 < changed.sum() < changed.size:
        metrics = detection_metrics(scores.own, changed)
    elif found.noise is not None:
        notes.append("no detection metrics: the noise changed no label (or every label)")
    if audit.config.head.name == "softmax":
        notes.append(
            "softmax head: its linear layer's weight rows (normalised; bias ignored) stand in "
            "for class proxies"
        )
    result = AuditResult(
        run=str(audit.run_dir or audit.path),
        model_file=str(audit.path),
        data=path,
        data_kind=kind,
        head=audit.config.head.name,
        num_classes=num_classes,
        flip=flip,
        ids=_sample_ids(dataset, kind, file),
        labels=found.labels,
        label_names=getattr(dataset, "class_names", None),
        scores=scores,
        positive_logit=logits,
        order=rank_ascending(scores.own),
        injected=changed,
        label_source=found.source,
        noise=found.noise,
        metrics=metrics,
        logit_rejects=_logit_rejects(logits, changed) if logits is not None else None,
        notes=notes,
        seconds=0.0,
        dataset=dataset,
    )
    result.seconds = time.perf_counter() - started
    if out is not None:
        from sphereface2.evaluate.label_audit_report import write_audit

        write_audit(result, out, top=top)
    return result
