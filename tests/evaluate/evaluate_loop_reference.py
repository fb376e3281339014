"""Naive references for the evaluation metrics: plain Python loops, no vectorisation, no sorting
tricks. Each function states the protocol in the most literal way, so that the fast versions in
``sphereface2.evaluate`` can be checked against it on small inputs."""

from __future__ import annotations

import functools
import math
from fractions import Fraction

# ----------------------------------------------------------------------------- ROC


def roc_points(scores, labels):
    """(thresholds, true accepts, false accepts): one point per distinct score, by counting."""
    return _roc_points(tuple(float(s) for s in scores), tuple(bool(y) for y in labels))


@functools.lru_cache(maxsize=8)
def _roc_points(scores, labels):
    distinct = sorted(set(float(s) for s in scores), reverse=True)
    thresholds, tas, fas = [math.inf], [0], [0]
    for t in distinct:
        ta = fa = 0
        for s, y in zip(scores, labels):
            if s >= t:
                if y:
                    ta += 1
                else:
                    fa += 1
        thresholds.append(t)
        tas.append(ta)
        fas.append(fa)
    return thresholds, tas, fas


def mann_whitney_auc(scores, labels):
    """AUC as the probability that a genuine pair outscores an impostor pair (ties = 1/2)."""
    gen = [s for s, y in zip(scores, labels) if y]
    imp = [s for s, y in zip(scores, labels) if not y]
    total = 0.0
    for g in gen:
        for i in imp:
            if g > i:
                total += 1.0
            elif g == i:
                total += 0.5
    return total / (len(gen) * len(imp))


def sklearn_kept(tas, fas):
    """Indices of the points sklearn's roc_curve keeps (drop_intermediate=True), with the
    leading (0, 0) point (index 0) always kept."""
    f = fas[1:]
    t = tas[1:]
    kept = [0]
    for i in range(len(f)):
        if i == 0 or i == len(f) - 1 or len(f) <= 2:
            kept.append(i + 1)
            continue
        d2f = (f[i + 1] - f[i]) - (f[i] - f[i - 1])
        d2t = (t[i + 1] - t[i]) - (t[i] - t[i - 1])
        if d2f != 0 or d2t != 0:
            kept.append(i + 1)
    return kept


def tpr_nearest(scores, labels, target):
    """InsightFace: flip sklearn's ROC and take the first point minimising |fpr - target|."""
    _, tas, fas = roc_points(scores, labels)
    npos = sum(1 for y in labels if y)
    nneg = len(labels) - npos
    kept = sklearn_kept(tas, fas)
    best = None
    best_d = math.inf
    for i in reversed(kept):
        d = abs(fas[i] / nneg - target)
        if d < best_d:
            best_d = d
            best = i
    return tas[best] / npos


def tpr_interpolated(scores, labels, target):
    """OpenSphere: interp1d(fpr, tpr) -- line between the last point with fpr < target and the
    first point with fpr >= target."""
    _, tas, fas = roc_points(scores, labels)
    npos = sum(1 for y in labels if y)
    nneg = len(labels) - npos
    fpr = [f / nneg for f in fas]
    tpr = [t / npos for t in tas]
    for i in range(len(fpr)):
        if fpr[i] >= target:
            lo = i - 1
            return tpr[lo] + (tpr[i] - tpr[lo]) / (fpr[i] - fpr[lo]) * (target - fpr[lo])
    raise AssertionError("target above every FPR")


def eer_bisection(scores, labels, iterations=200):
    """Root of 1 - x - tpr(x), tpr interpolated left-continuously, by plain bisection."""
    _, tas, fas = roc_points(scores, labels)
    npos = sum(1 for y in labels if y)
    nneg = len(labels) - npos
    fpr = [f / nneg for f in fas]
    tpr = [t / npos for t in tas]

    def tpr_at(x):
        if x <= 0.0:
            # top of the vertical segment at 0
            return max(t for f, t in zip(fpr, tpr) if f == 0.0)
        for i in range(len(fpr)):
            if fpr[i] >= x:
                lo = i - 1
                return tpr[lo] + (tpr[i] - tpr[lo]) / (fpr[i] - fpr[lo]) * (x - fpr[lo])
        return 1.0

    lo, hi = 0.0, 1.0
    if 1.0 - lo - tpr_at(lo) <= 0.0:
        return 0.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if 1.0 - mid - tpr_at(mid) > 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def best_accuracy(scores, labels):
    """Best accuracy over every threshold (accept if score >= t), plus rejecting everything."""
    candidates = [math.inf] + sorted(set(scores))
    best = -1.0
    for t in candidates:
        correct = 0
        for s, y in zip(scores, labels):
            if (s >= t) == bool(y):
                correct += 1
        acc = correct / len(scores)
        if acc > best:
            best = acc
    return best


# ----------------------------------------------------------------------------- 10-fold


def kfold_splits(n, folds):
    """sklearn KFold(shuffle=False): contiguous folds, the first n % folds one pair larger."""
    if folds == 1:
        return [(list(range(n)), list(range(n)))]
    sizes = [n // folds + (1 if k < n % folds else 0) for k in range(folds)]
    out = []
    start = 0
    for size in sizes:
        test = list(range(start, start + size))
        train = [i for i in range(n) if i < start or i >= start + size]
        out.append((train, test))
        start += size
    return out


def accuracy_at(threshold, dists, same):
    correct = 0
    for d, y in zip(dists, same):
        if (d < threshold) == bool(y):
            correct += 1
    return correct / len(dists)


def squared_distances(emb0, emb1):
    out = []
    for a, b in zip(emb0, emb1):
        na = math.sqrt(sum(x * x for x in a))
        nb = math.sqrt(sum(x * x for x in b))
        out.append(sum((x / na - y / nb) ** 2 for x, y in zip(a, b)))
    return out


def kfold_accuracy(emb0, emb1, issame, folds, thresholds):
    """InsightFace calculate_roc: per fold, the first best threshold on the other folds."""
    dists = squared_distances(emb0, emb1)
    accs, best_thresholds = [], []
    for train, test in kfold_splits(len(dists), folds):
        best_acc = -1.0
        best_t = None
        for t in thresholds:
            acc = accuracy_at(t, [dists[i] for i in train], [issame[i] for i in train])
            if acc > best_acc:
                best_acc = acc
                best_t = t
        accs.append(accuracy_at(best_t, [dists[i] for i in test], [issame[i] for i in test]))
        best_thresholds.append(best_t)
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs))
    return mean, std, accs, best_thresholds


def val_far(emb0, emb1, issame, folds, thresholds, far_target):
    """InsightFace calculate_val with scipy interp1d(kind='slinear') over FAR -> threshold:
    between distinct FAR values the line joins the last threshold of the lower FAR and the first
    threshold of the higher FAR; exactly at a FAR value, its last threshold."""
    dists = squared_distances(emb0, emb1)
    vals, fars = [], []
    for train, test in kfold_splits(len(dists), folds):
        far_train = []
        for t in thresholds:
            fa = sum(1 for i in train if dists[i] < t and not issame[i])
            n_diff = sum(1 for i in train if not issame[i])
            far_train.append(fa / n_diff)
        if max(far_train) >= far_target:
            pairs = sorted(zip(far_train, range(len(thresholds))))
            xs = [p[0] for p in pairs]
            ts = [thresholds[p[1]] for p in pairs]
            g = max(i for i in range(len(xs)) if xs[i] <= far_target)
            if xs[g] == far_target or g == len(xs) - 1:
                threshold = ts[g]
            else:
                threshold = ts[g] + (ts[g + 1] - ts[g]) * (far_target - xs[g]) / (xs[g + 1] - xs[g])
        else:
            threshold = 0.0
        ta = sum(1 for i in test if dists[i] < threshold and issame[i])
        fa = sum(1 for i in test if dists[i] < threshold and not issame[i])
        vals.append(ta / sum(1 for i in test if issame[i]))
        fars.append(fa / sum(1 for i in test if not issame[i]))
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return mean, std, sum(fars) / len(fars)


# ----------------------------------------------------------------------------- templates


def normalize(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def template_features(features, faceness, template_ids, media_ids, use_faceness=True):
    """Dicts of lists: average images per (template, media), sum the media, normalise."""
    groups: dict = {}
    for i in range(len(features)):
        w = faceness[i] if use_faceness else 1.0
        f = [w * x for x in features[i]]
        groups.setdefault(template_ids[i], {}).setdefault(media_ids[i], []).append(f)
    out = {}
    for t, medias in groups.items():
        total = [0.0] * len(features[0])
        for feats in medias.values():
            for f in feats:
                for k in range(len(total)):
                    total[k] += f[k] / len(feats)
        out[t] = normalize(total)
    return out


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


# ----------------------------------------------------------------------------- 1:N


def ijb_1n(gallery, gallery_ids, probes, probe_ids, ranks, fpirs):
    """InsightFace evaluation_1N generalised to several gallery entries per subject; ties count
    against the probe. Returns ({rank: rate}, {fpir: tpir}, n_mated, n_nonmated)."""
    g = [normalize(x) for x in gallery]
    mated_ranks = []
    mated_best = []
    nonmated_max = []
    for p, pid in zip(probes, probe_ids):
        p = normalize(p)
        scores = [dot(p, x) for x in g]
        if pid in list(gallery_ids):
            best = max(s for s, gid in zip(scores, gallery_ids) if gid == pid)
            wrong_at_or_above = sum(
                1 for s, gid in zip(scores, gallery_ids) if gid != pid and s >= best
            )
            mated_ranks.append(1 + wrong_at_or_above)
            mated_best.append(best)
        else:
            nonmated_max.append(max(scores))
    rates = {r: sum(1 for k in mated_ranks if k <= r) / len(mated_ranks) for r in ranks}
    tpirs = {}
    for f in fpirs:
        if not nonmated_max:
            tpirs[f] = math.nan
            continue
        desc = sorted(nonmated_max, reverse=True)
        k = math.ceil(Fraction(str(f)) * len(desc))
        thr = desc[k - 1]
        hits = sum(1 for r, b in zip(mated_ranks, mated_best) if r == 1 and b > thr)
        tpirs[f] = hits / len(mated_ranks)
    return rates, tpirs, len(mated_ranks), len(nonmated_max)


def opensphere_tpir(gallery, gallery_ids, probes, probe_ids, fpirs):
    """OpenSphere evaluate_1n: threshold = k-th largest of all non-mated pair scores with
    k = ceil(FPIR x probes); TPIR = mated pair scores above it / probes."""
    g = [normalize(x) for x in gallery]
    pos, neg = [], []
    for p, pid in zip(probes, probe_ids):
        p = normalize(p)
        for x, gid in zip(g, gallery_ids):
            (pos if gid == pid else neg).append(dot(p, x))
    neg.sort(reverse=True)
    out = {}
    for f in fpirs:
        k = math.ceil(Fraction(str(f)) * len(probes))
        thr = neg[k - 1]
        out[f] = sum(1 for s in pos if s > thr) / len(probes)
    return out


# ----------------------------------------------------------------------------- MegaFace


def megaface_identification(probes, probe_ids, distractors, ranks):
    """Each probe image in turn is its identity's gallery entry among all distractors; every
    other image of that identity is a query; a hit at rank r when fewer than r distractors
    score at least the gallery image (ties count against)."""
    p = [normalize(x) for x in probes]
    d = [normalize(x) for x in distractors]
    hits = {r: 0 for r in ranks}
    queries = 0
    for gi in range(len(p)):
        for qi in range(len(p)):
            if qi == gi or probe_ids[qi] != probe_ids[gi]:
                continue
            queries += 1
            s = dot(p[qi], p[gi])
            beaten_by = sum(1 for x in d if dot(p[qi], x) >= s)
            for r in ranks:
                if beaten_by < r:
                    hits[r] += 1
    return {r: hits[r] / queries for r in ranks}, queries


def megaface_pairs(probes, probe_ids, distractors):
    """Genuine scores over unordered probe pairs of one identity; impostors probe x distractor."""
    p = [normalize(x) for x in probes]
    d = [normalize(x) for x in distractors]
    scores, labels = [], []
    for i in range(len(p)):
        for j in range(i + 1, len(p)):
            if probe_ids[i] == probe_ids[j]:
                scores.append(dot(p[i], p[j]))
                labels.append(True)
    for i in range(len(p)):
        for x in d:
            scores.append(dot(p[i], x))
            labels.append(False)
    return scores, labels
