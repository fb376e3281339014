"""Independent float64 evaluations of the head equations: plain Python loops and ``math``.

Nothing here imports the library; tests compare the heads against these functions. Inputs
are nested lists: X (B x d) embeddings, W (K x d) proxies, labels (B ints).

Angular margins (ArcFace, SphereFace2 A and M) are written as published, cos of the shifted
angle while that angle is at most pi. Past pi the published form is clamped at cos(pi) = -1;
that value is kept with ``gradient="detached"``, and with ``"full"`` the heads continue it
as c - cos(theta0) - 1, theta0 being the angle where the shift reaches pi (the value -1 at
theta0, then the slope of c itself).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

Matrix = list[list[float]]


def softplus(u: float) -> float:
    return max(u, 0.0) + math.log1p(math.exp(-abs(u)))


def sigmoid(u: float) -> float:
    if u >= 0:
        return 1.0 / (1.0 + math.exp(-u))
    e = math.exp(u)
    return e / (1.0 + e)


def norm(v: list[float]) -> float:
    return math.sqrt(sum(a * a for a in v))


def cosine(x: list[float], w: list[float]) -> float:
    """Cosine between x and w (w assumed to be what the head uses: the row as given)."""
    nx = norm(x)
    return sum(a * b for a, b in zip(x, w)) / nx


def g(z: float, t: float) -> float:
    return 2.0 * ((z + 1.0) / 2.0) ** t - 1.0


def sf2_positive(
    c: float, margin_type: str, r: float, m: float, t: float, b: float, gradient: str = "full"
) -> float:
    if margin_type == "C":
        return r * (g(c, t) - m) + b
    theta = math.acos(c)
    shifted = theta + m if margin_type == "A" else m * theta
    if shifted <= math.pi:
        return r * g(math.cos(shifted), t) + b
    if gradient == "detached":
        return r * g(math.cos(math.pi), t) + b  # the published clamp: -r + b
    theta0 = math.pi - m if margin_type == "A" else math.pi / m
    return r * (c - math.cos(theta0) - 1.0) + b


def sf2_negative(c: float, margin_type: str, r: float, m: float, t: float, b: float) -> float:
    return r * (g(c, t) + (m if margin_type == "C" else 0.0)) + b


def sf2_loss(X: Matrix, W: Matrix, b: float, labels: list[int], **hp: float | str) -> float:
    """lw * mean_n [ lam/r softplus(-P_n) + (1-lam)/r sum_{i != y} softplus(N_ni) ].

    ``hp`` may hold "gradient" (default "full"): it selects the value of P past pi.
    """
    mt, lam, r, m, t, lw = (hp[k] for k in ("margin_type", "lam", "r", "m", "t", "lw"))
    gradient = str(hp.get("gradient", "full"))
    total = 0.0
    for x, y in zip(X, labels):
        for i, w in enumerate(W):
            c = cosine(x, w)
            if i == y:
                total += lam / r * softplus(-sf2_positive(c, mt, r, m, t, b, gradient))
            else:
                total += (1.0 - lam) / r * softplus(sf2_negative(c, mt, r, m, t, b))
    return lw * total / len(X)


def chain_to_inputs(X: Matrix, W: Matrix, dcos: Matrix) -> tuple[Matrix, Matrix]:
    """Gradients w.r.t. X and W given dLoss/dcos[n][i], with cos = <x/|x|, w>."""
    gX = [[0.0] * len(X[0]) for _ in X]
    gW = [[0.0] * len(W[0]) for _ in W]
    for n, x in enumerate(X):
        nx = norm(x)
        xh = [a / nx for a in x]
        for i, w in enumerate(W):
            c = sum(a * bb for a, bb in zip(xh, w))
            for k in range(len(x)):
                gW[i][k] += dcos[n][i] * xh[k]
                gX[n][k] += dcos[n][i] * (w[k] - c * xh[k]) / nx
    return gX, gW


def sf2_detached_grads(
    X: Matrix, W: Matrix, b: float, labels: list[int], **hp: float | str
) -> tuple[Matrix, Matrix, float]:
    """Analytic gradients when every logit back-propagates like r * cos + b.

    dL/dcos_y = -lam sigmoid(-P), dL/dcos_i = (1 - lam) sigmoid(N_i) (the r cancels the 1/r);
    dL/db = -lam/r sigmoid(-P) + (1-lam)/r sum_i sigmoid(N_i); all times lw / B.
    """
    mt, lam, r, m, t, lw = (hp[k] for k in ("margin_type", "lam", "r", "m", "t", "lw"))
    scale = lw / len(X)
    dcos = [[0.0] * len(W) for _ in X]
    gb = 0.0
    for n, (x, y) in enumerate(zip(X, labels)):
        for i, w in enumerate(W):
            c = cosine(x, w)
            if i == y:
                s = sigmoid(-sf2_positive(c, mt, r, m, t, b, "detached"))
                dcos[n][i] = -scale * lam * s
                gb += -scale * lam / r * s
            else:
                s = sigmoid(sf2_negative(c, mt, r, m, t, b))
                dcos[n][i] = scale * (1.0 - lam) * s
                gb += scale * (1.0 - lam) / r * s
    gX, gW = chain_to_inputs(X, W, dcos)
    return gX, gW, gb


def arcface_target(c: float, s: float, m: float, gradient: str = "full") -> float:
    shifted = math.acos(c) + m
    if shifted <= math.pi:
        return s * math.cos(shifted)
    if gradient == "detached":
        return s * math.cos(math.pi)  # the published clamp: -s
    return s * (c + math.cos(m) - 1.0)  # theta0 = pi - m, cos(theta0) = -cos(m)


def sphereface_psi(theta: float, m: float) -> float:
    k = math.floor(m * theta / math.pi)
    return (-1.0) ** k * math.cos(m * theta) - 2.0 * k


def ce_logits(
    x: list[float], W: Matrix, y: int, s: float, target: Callable[[float], float]
) -> list[float]:
    """s * cos_i for every class, ``target(cos_y)`` for the label."""
    out = []
    for i, w in enumerate(W):
        c = cosine(x, w)
        out.append(target(c) if i == y else s * c)
    return out


def cross_entropy(logits: list[float], y: int) -> float:
    top = max(logits)
    lse = top + math.log(sum(math.exp(v - top) for v in logits))
    return lse - logits[y]


def ce_loss(
    X: Matrix, W: Matrix, labels: list[int], s: float, target: Callable[[float], float]
) -> float:
    return sum(cross_entropy(ce_logits(x, W, y, s, target), y) for x, y in zip(X, labels)) / len(X)


def ce_detached_grads(
    X: Matrix, W: Matrix, labels: list[int], s: float, target: Callable[[float], float]
) -> tuple[Matrix, Matrix]:
    """Analytic gradients when every logit back-propagates like s * cos: (p_i - [i = y]) s / B."""
    dcos = [[0.0] * len(W) for _ in X]
    for n, (x, y) in enumerate(zip(X, labels)):
        logits = ce_logits(x, W, y, s, target)
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        for i in range(len(W)):
            dcos[n][i] = (exps[i] / total - (1.0 if i == y else 0.0)) * s / len(X)
    return chain_to_inputs(X, W, dcos)


def linear_ce_loss(X: Matrix, W: Matrix, bias: list[float], labels: list[int]) -> float:
    total = 0.0
    for x, y in zip(X, labels):
        logits = [sum(a * bb for a, bb in zip(x, w)) + bi for w, bi in zip(W, bias)]
        total += cross_entropy(logits, y)
    return total / len(X)


def finite_difference(f: Callable[..., float], *args: object, h: float = 1e-6) -> list[object]:
    """Central differences of f with respect to every float in its list/float arguments."""
    grads: list[object] = []
    for position, arg in enumerate(args):
        if isinstance(arg, float):
            up = list(args)
            down = list(args)
            up[position] = arg + h
            down[position] = arg - h
            grads.append((f(*up) - f(*down)) / (2 * h))
            continue
        is_matrix = isinstance(arg[0], list)  # type: ignore[index]
        rows = arg if is_matrix else [arg]  # type: ignore[list-item]
        grad = [[0.0] * len(row) for row in rows]
        for n, row in enumerate(rows):
            for k in range(len(row)):
                values = []
                for step in (h, -h):
                    moved = copy.deepcopy(rows)
                    moved[n][k] += step
                    trial = list(args)
                    trial[position] = moved if is_matrix else moved[0]
                    values.append(f(*trial))
                grad[n][k] = (values[0] - values[1]) / (2 * h)
        grads.append(grad if is_matrix else grad[0])
    return grads
