"""The config schema: one dataclass per YAML section, ConfigError, and the keys a resume may
change. Defaults follow the paper's recipe (SphereFace2, Wen et al., ICLR 2022) where one
exists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration problem; the message names the file (or source) and the key path."""


@dataclass
class ModelConfig:
    """The backbone: ``build_backbone(backbone, embedding_dim, input_size=..., **options)``.

    ``input_size`` lives here (not under ``data``) because a backbone is built for one input
    size; training and evaluation images are resized to it. ``options`` holds the family's
    other keyword options, e.g. ``batch_norm`` and ``width`` for SFNet, ``dropout`` for both.

    ``init`` (fine-tuning): a file or folder whose backbone weights a fresh run starts
    from: arcface_torch's ``backbone.pth`` (a plain state dict), a sphereface2 checkpoint,
    ``model.pt`` or run folder, or a safetensors export; the head starts fresh. With
    ``init_strict`` (the default) every key and shape must match; ``false`` loads what fits
    and logs what it skipped (a different embedding layer, say). A resumed run ignores
    ``init``: its checkpoint holds every weight (:mod:`sphereface2.train.init_weights`).
    """

    backbone: str
    embedding_dim: int = 512
    input_size: tuple[int, int] = (112, 112)
    options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    init_strict: bool = True


@dataclass
class HeadConfig:
    """The loss head: ``build_head(name, num_classes=K, embedding_dim=d, **params)``.

    The trainer builds its class-sharded version (one shard per process; a single process
    holds every class). ``init`` sets how the proxies are drawn: ``full`` draws the whole
    (K, d) Xavier-normal matrix from ``seed`` on every process and keeps its rows (a
    plain head built after ``torch.manual_seed(seed)`` gets the same values, whatever the
    number of processes); ``shard`` draws only this process's rows (same distribution,
    K/world x d memory, but the values depend on the number of processes); ``auto`` is
    ``full`` up to 2^28 proxy entries (1 GiB in float32, about 500K classes at d = 512)
    and ``shard`` beyond.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    init: Literal["auto", "full", "shard"] = "auto"


@dataclass
class LabelNoiseConfig:
    """Relabel each training sample with probability ``p`` (uniform over all classes)."""

    p: float = 0.0
    seed: int = 0


@dataclass
class ValSetConfig:
    """One verification set in InsightFace's .bin format, e.g. ``{name: lfw, path: ...}``."""

    name: str
    path: str


@dataclass
class DataConfig:
    """Training data, validation sets and loading.

    ``batch_size`` is the global batch per optimiser step (all processes, all accumulation
    steps together), so a config means the same recipe on any number of devices.
    """

    train: str
    skip_corrupt: bool = False
    label_noise: LabelNoiseConfig = field(default_factory=LabelNoiseConfig)
    batch_size: int = 512
    num_workers: int = 4
    val: list[ValSetConfig] = field(default_factory=list)
    val_every: int = 2000
    val_batch_size: int = 256


@dataclass
class OptimConfig:
    """SGD with momentum.

    Weight decay: as in the official OpenSphere trainer, by default it applies to *every*
    parameter, backbone and head alike (conv/linear biases, BN/PReLU weights, the class
    proxies and SphereFace2's scalar bias b included). ``no_decay_bias_bn: true`` exempts
    every parameter with fewer than two dimensions (biases, norm-layer and PReLU weights,
    the head's bias), a common modern choice that is not the paper's recipe.
    ``max_grad_norm: null`` disables clipping (the official SphereFace2 VGGFace2 configs
    do not clip; its softmax-family baselines clip at 10, the MS1M config at 100).
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    no_decay_bias_bn: bool = False
    max_grad_norm: float | None = None
    accumulation_steps: int = 1


@dataclass
class ScheduleConfig:
    """Iteration-based learning-rate schedule (one iteration = one optimiser step).

    ``multistep``: lr * gamma^(number of milestones passed). ``cosine``: from lr down to
    ``min_lr`` over the iterations after warm-up. Warm-up (both types) ramps linearly from
    ``warmup_factor * lr`` to the scheduled value over ``warmup_iters`` iterations.
    """

    iterations: int
    type: Literal["multistep", "cosine"] = "multistep"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 0.0
    warmup_iters: int = 0
    warmup_factor: float = 0.1


@dataclass
class RuntimeConfig:
    """Device, precision, logging and checkpointing; none of it changes the recipe's maths
    except ``amp`` and ``channels_last`` (which change rounding only).

    ``checkpoint_every`` / ``keep_last``: a full training checkpoint every N iterations and
    at the end, keeping the newest ``keep_last`` (0 keeps all). ``average_last``: the final
    evaluation weights average the last N checkpoints (the paper averages the last 5,
    1K iterations apart); it must not exceed ``keep_last`` unless that keeps all.
    """

    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_last: int = 5
    average_last: int = 1
    tensorboard: bool = False


@dataclass
class TrainConfig:
    """A whole training run; the YAML file's top-level sections."""

    model: ModelConfig
    head: HeadConfig
    data: DataConfig
    schedule: ScheduleConfig
    name: str = "run"
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


#: Keys that may differ between a checkpoint's config and the config used to resume it:
#: they change logging, speed or bookkeeping, never the optimisation itself. ``data.train``
#: is allowed (data moves between machines); the trainer instead checks that the dataset's
#: size and number of classes match the checkpoint. ``runtime.device`` is allowed too
#: (resuming a GPU run on another GPU type, say); exactness is promised on one device only.
#: ``data.skip_corrupt`` changes nothing on readable data, so a run stopped by a corrupt
#: record may resume with it on. ``model.init`` is not listed: a resume never reads it,
#: and keeping it fixed keeps the run's config.yaml true about where its weights started.
RESUME_SAFE_KEYS: tuple[str, ...] = (
    "name",
    "data.train",
    "data.skip_corrupt",
    "data.num_workers",
    "data.val",
    "data.val_every",
    "data.val_batch_size",
    "runtime.device",
    "runtime.log_every",
    "runtime.checkpoint_every",
    "runtime.keep_last",
    "runtime.average_last",
    "runtime.tensorboard",
)
