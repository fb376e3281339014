"""``sphereface2 train CONFIG [KEY=VALUE ...]``: one call of ``sphereface2.train.trainer.train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from sphereface2.commands.parsing import intermixed

_EPILOG = """\
examples:
  sphereface2 train configs/demo.yaml
  sphereface2 train configs/paper/vggface2_sfnet20_sphereface2.yaml \\
      data.train=/data/vggface2 optim.lr=0.05 --out runs/sf2
  sphereface2 train configs/demo.yaml --resume auto       # continue runs/<name>
  torchrun --nproc_per_node 8 -m sphereface2 train CONFIG --device cuda   # 8 GPUs

Under torchrun each process takes its share of every global batch (data.batch_size is
the global batch), the backbone is data parallel and the classifier is split by class
across processes; rank 0 logs and writes the run folder, and every rank writes its
classifier shard beside each checkpoint. "cuda" means cuda:LOCAL_RANK there.

Overrides are dotted config keys with YAML values (schedule.milestones=[10,20],
optim.max_grad_norm=null, data.val.0.path=lfw.bin, data.val=[]). The data paths of
configs/paper/ are placeholders: each file's header shows the full command, with
data.train and every data.val.N.path (or data.val=[] to train without validation sets);
a missing validation file stops the run before it starts. Ctrl-C writes a checkpoint
before exiting (exit status 130); --resume auto continues from it. model.init=PATH starts
the backbone from pretrained weights (arcface_torch's backbone.pth, a checkpoint, a run
folder or a safetensors export; model.init_strict=false loads what fits).

the run folder (--out, default runs/<config name>):
  config.yaml        the effective config (file + overrides)
  log.txt            progress lines, messages and errors
  metrics.jsonl      one JSON row per logged step and validation
  curves.png         loss, cosines, learning rate and validation accuracy by iteration
  checkpoints/       ckpt_<iteration>.pt, the newest runtime.keep_last kept
  model.pt           the evaluation weights (the last runtime.average_last checkpoints)
  summary.json       status, iterations, speed, validation, the error of a failed run
  label_noise.json   the synthetic label noise, when data.label_noise.p > 0
  classes.json       the identity name of each class, when the training set names them
  tensorboard/       TensorBoard events, when runtime.tensorboard is true
  .lock              held by the process training into the folder
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML config (resumable)",
        usage="%(prog)s CONFIG [KEY=VALUE ...] [--out DIR] [--resume auto|PATH] "
        "[--device DEVICE] [--stop-after N] [--quiet]",
        description="Train a backbone and loss head from a YAML config into a run folder.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Overrides and options in any order; nargs="?" on CONFIG so that a missing CONFIG is
    # reported alone (the check is in the parser).
    intermixed(parser, required_positional=("config", "CONFIG"))
    parser.add_argument("config", metavar="CONFIG", nargs="?", help="YAML training config")
    parser.add_argument(
        "overrides", metavar="KEY=VALUE", nargs="*", help="config overrides, e.g. optim.lr=0.05"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="run folder (default: runs/<config name>)",
    )
    parser.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="'auto': continue from the newest checkpoint in the run folder if any; or a "
        "checkpoint file / run folder to continue from",
    )
    parser.add_argument(
        "--device",
        metavar="DEVICE",
        help="cpu, cuda, cuda:N or auto (default: the config's runtime.device)",
    )
    parser.add_argument(
        "--stop-after",
        metavar="N",
        type=int,
        help="stop with a checkpoint after N iterations (split a run across jobs)",
    )
    parser.add_argument("--quiet", action="store_true", help="log to the run folder only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sphereface2.config import load_config
    from sphereface2.train.trainer import train

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    train(
        cfg,
        out,
        resume=args.resume,
        device=args.device,
        stop_after=args.stop_after,
        echo=not args.quiet,
    )
    return 0
