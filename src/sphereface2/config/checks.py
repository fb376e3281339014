"""Semantic checks on a typed config: ranges and cross-field rules, and backbone/head names
and options against the registries (imported lazily: the registries fill on import)."""

from __future__ import annotations

from collections.abc import Iterable

from sphereface2.config.schema import TrainConfig
from sphereface2.config.typed import _fail


def _check_values(cfg: TrainConfig, source: str) -> None:
    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            _fail(source, key, message)

    need(cfg.model.embedding_dim >= 1, "model.embedding_dim", "must be >= 1")
    need(all(s >= 1 for s in cfg.model.input_size), "model.input_size", "sizes must be >= 1")
    need(cfg.data.train != "", "data.train", "must be a path")
    need(cfg.model.init != "", "model.init", "must be a path (or null to start from scratch)")
    need(0.0 <= cfg.data.label_noise.p <= 1.0, "data.label_noise.p", "must be in [0, 1]")
    need(cfg.data.batch_size >= 1, "data.batch_size", "must be >= 1")
    need(cfg.data.num_workers >= 0, "data.num_workers", "must be >= 0")
    need(cfg.data.val_every >= 1, "data.val_every", "must be >= 1")
    need(cfg.data.val_batch_size >= 1, "data.val_batch_size", "must be >= 1")
    names = [v.name for v in cfg.data.val]
    need(len(set(names)) == len(names), "data.val", f"names must be unique, got {names}")
    need(cfg.optim.lr > 0, "optim.lr", "must be > 0")
    need(0.0 <= cfg.optim.momentum < 1.0, "optim.momentum", "must be in [0, 1)")
    need(cfg.optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    need(
        not cfg.optim.nesterov or cfg.optim.momentum > 0,
        "optim.nesterov",
        "needs optim.momentum > 0",
    )
    need(
        cfg.optim.max_grad_norm is None or cfg.optim.max_grad_norm > 0,
        "optim.max_grad_norm",
        "must be > 0 (or null for no clipping)",
    )
    steps = cfg.optim.accumulation_steps
    need(steps >= 1, "optim.accumulation_steps", "must be >= 1")
    need(
        cfg.data.batch_size % steps == 0,
        "data.batch_size",
        f"{cfg.data.batch_size} is not divisible by optim.accumulation_steps={steps}",
    )
    sched = cfg.schedule
    need(sched.iterations >= 1, "schedule.iterations", "must be >= 1")
    need(
        list(sched.milestones) == sorted(set(sched.milestones)),
        "schedule.milestones",
        f"must be strictly increasing, got {sched.milestones}",
    )
    need(
        all(0 < m <= sched.iterations for m in sched.milestones),
        "schedule.milestones",
        f"must lie in (0, schedule.iterations={sched.iterations}], got {sched.milestones}",
    )
    need(0 < sched.gamma <= 1, "schedule.gamma", "must be in (0, 1]")
    need(0 <= sched.min_lr <= cfg.optim.lr, "schedule.min_lr", "must be in [0, optim.lr]")
    need(
        0 <= sched.warmup_iters < sched.iterations,
        "schedule.warmup_iters",
        "must be in [0, schedule.iterations)",
    )
    need(0 < sched.warmup_factor <= 1, "schedule.warmup_factor", "must be in (0, 1]")
    rt = cfg.runtime
    need(rt.log_every >= 1, "runtime.log_every", "must be >= 1")
    need(rt.checkpoint_every >= 1, "runtime.checkpoint_every", "must be >= 1")
    need(rt.keep_last >= 0, "runtime.keep_last", "must be >= 0 (0 keeps every checkpoint)")
    need(rt.average_last >= 1, "runtime.average_last", "must be >= 1")
    need(
        rt.keep_last == 0 or rt.average_last <= rt.keep_last,
        "runtime.average_last",
        f"{rt.average_last} exceeds runtime.keep_last={rt.keep_last}: the checkpoints to "
        "average would be deleted",
    )


def check_names(cfg: TrainConfig, source: str = "<config>") -> None:
    """Check the backbone and head names and their option names against the registries."""
    from sphereface2.backbones import BACKBONES  # imported here: the registries fill on import
    from sphereface2.heads import HEADS

    try:
        BACKBONES.get(cfg.model.backbone)
    except KeyError as err:
        _fail(source, "model.backbone", str(err))
    reserved = ("embedding_dim", "input_size")
    for key in reserved:
        if key in cfg.model.options:
            _fail(source, f"model.options.{key}", f"set it as model.{key}, not in options")
    valid = BACKBONES.options(cfg.model.backbone, exclude=reserved)
    owner = f"backbone {cfg.model.backbone!r}"
    _check_keys(source, "model.options", cfg.model.options, valid, owner, "option")
    try:
        HEADS.get(cfg.head.name)
    except KeyError as err:
        _fail(source, "head.name", str(err))
    reserved = ("num_classes", "embedding_dim")
    valid = HEADS.options(cfg.head.name, exclude=(*reserved, "validate"))
    _check_keys(
        source, "head.params", cfg.head.params, valid, f"head {cfg.head.name!r}", "parameter"
    )


def _check_keys(
    source: str, section: str, given: Iterable[str], valid: list[str], owner: str, what: str
) -> None:
    """Fail at ``section.<key>`` for the first key of ``given`` that ``owner`` (e.g.
    "head 'cosface'") does not accept as a ``what`` ("option", "parameter")."""
    for key in given:
        if key not in valid:
            _fail(
                source,
                f"{section}.{key}",
                f"{owner} has no {what} {key!r}; valid {what}s: {', '.join(valid)}",
            )


def _check_option_values(cfg: TrainConfig, source: str) -> None:
    from sphereface2.config_options import check_option_values

    model = cfg.model
    problem = check_option_values(
        model.backbone,
        model.embedding_dim,
        model.input_size,
        model.options,
        cfg.head.name,
        cfg.head.params,
    )
    if problem is not None:
        _fail(source, *problem)
