"""``sphereface2 gallery build MODEL FOLDER_OR_LIST OUT`` and ``sphereface2 gallery search
OUT IMAGES...``: identify faces against a gallery of known identities.

Thin over :func:`sphereface2.inference.gallery.build_gallery`,
:func:`~sphereface2.inference.gallery.save_gallery`,
:func:`~sphereface2.inference.gallery_search.search_gallery` and
:func:`~sphereface2.inference.gallery_search.add_faiss_index`.
"""

from __future__ import annotations

import argparse
import sys

_BUILD_EPILOG = """\
examples:
  sphereface2 gallery build runs/sf2 known_faces/ gallery/     # known_faces/<name>/<image>
  sphereface2 gallery build model.onnx staff.txt gallery/ --root /data/staff
  sphereface2 gallery build runs/sf2 big_set/ gallery/ --index faiss

FOLDER_OR_LIST: a folder with one sub-folder per identity, or a list file of 'path name'
(or 'path label') lines as for training. OUT gets embeddings.npy (float32, L2-normalised
rows grouped by identity) and gallery.json (the model's fingerprint: the SHA-256 of its
weights; identity names; one label and absolute image path per row). --index faiss also
writes OUT/faiss.index (needs faiss-cpu): flat below 100,000 images, IVF from there.
"""

_SEARCH_EPILOG = """\
examples:
  sphereface2 gallery search gallery/ probe.jpg                   # top 5 identities
  sphereface2 gallery search gallery/ probes/*.jpg --top-k 3 --json matches.json
  sphereface2 gallery search gallery/ probe.jpg --per image --index faiss --nprobe 64

Top-K is over identities: an identity scores as its most similar gallery image (that image
is shown); --per image ranks the images instead. The search is exact (chunked matrix
products, bounded memory) unless --index faiss. Queries are embedded by the gallery's model
with its flip setting: by default the model the gallery was built with (its path is
recorded); a --model whose weights differ from the gallery's is refused. --json writes
{"results": [{"query": path, "matches": [{"identity", "score", "path"}, ...]}, ...]}.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gallery`` command family (``build`` and ``search``)."""
    family = subparsers.add_parser(
        "gallery",
        help="build a gallery of known faces, search it with face images",
        description="Identify faces: embed known identities once (build), then rank them for "
        "query images (search).",
    )
    commands = family.add_subparsers(dest="gallery_command", metavar="SUBCOMMAND")
    family.set_defaults(func=lambda args: _no_subcommand(family))

    build = commands.add_parser(
        "build",
        help="embed an identity folder or list into a gallery folder",
        description="Embed every image of an identity folder or list file with MODEL and "
        "write the gallery to OUT.",
        epilog=_BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("model", metavar="MODEL", help="checkpoint, run folder, .onnx or export")
    build.add_argument("data", metavar="FOLDER_OR_LIST", help="identity folder or list file")
    build.add_argument("out", metavar="OUT", help="gallery folder to write")
    build.add_argument("--root", metavar="DIR", help="image root of a list file")
    build.add_argument("--index", choices=("none", "faiss"), default="none", help="(default none)")
    build.add_argument("--nlist", type=int, metavar="N", help="IVF cells (default ~sqrt(N))")
    build.add_argument("--overwrite", action="store_true", help="replace a gallery in OUT")
    _model_options(build)
    build.set_defaults(func=run_build)

    search = commands.add_parser(
        "search",
        help="the top-K gallery identities for each query image",
        description="Embed each query image and rank the gallery's identities by cosine.",
        epilog=_SEARCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument("gallery", metavar="OUT", help="gallery folder (from 'gallery build')")
    search.add_argument("images", metavar="IMAGE", nargs="+", help="query face images")
    search.add_argument("--top-k", type=int, default=5, metavar="K", help="matches per query")
    search.add_argument(
        "--per", choices=("identity", "image"), default="identity", help="(default identity)"
    )
    search.add_argument("--json", metavar="FILE", help="write the results as JSON")
    search.add_argument("--model", metavar="MODEL", help="default: the gallery's recorded model")
    search.add_argument(
        "--index", choices=("exact", "faiss"), default="exact", help="(default exact)"
    )
    search.add_argument(
        "--nprobe", type=int, metavar="N", help="IVF cells scanned per query (default 32)"
    )
    search.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    search.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    search.set_defaults(func=run_search)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="flip test: sum with the embedding of the mirrored image (default: on)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument(
        "--average-last", metavar="N", type=int, help="with a run folder: average N checkpoints"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sphereface2.inference import load_model
    from sphereface2.inference.gallery import META_FILE, build_gallery, save_gallery
    from sphereface2.inference.gallery_search import add_faiss_index
    from sphereface2.models.embed import ProgressPrinter

    if (Path(args.out) / META_FILE).exists() and not args.overwrite:
        raise ValueError(f"{args.out}: already holds a gallery; pass --overwrite to replace it")
    if args.index == "faiss":
        from sphereface2.inference.faiss_index import require_faiss

        require_faiss()  # fail now, not after embedding every image
    model = load_model(
        args.model,
        device=args.device,
        batch_size=args.batch_size,
        flip=args.flip,
        average_last=args.average_last,
    )
    print(f"model: {model.description}", file=sys.stderr)
    gallery = build_gallery(
        model,
        args.data,
        root=args.root,
        progress=ProgressPrinter("embedding"),
        model_path=args.model,
        average_last=args.average_last,
    )
    folder = save_gallery(gallery, args.out, overwrite=args.overwrite)
    print(
        f"gallery: {len(gallery)} images of {len(gallery.identities)} identities, "
        f"{gallery.embeddings.shape[1]}-d, flip {'on' if gallery.flip else 'off'} -> {folder}"
    )
    print(f"model fingerprint: {gallery.model.sha256} ({gallery.model.kind})")
    if args.index == "faiss":
        print(f"index: {add_faiss_index(gallery, nlist=args.nlist)}")
    return 0


def _search_model(args: argparse.Namespace, gallery):
    from sphereface2.inference import load_model

    path, average_last = args.model, None
    if path is None:
        if not gallery.model_path:
            raise ValueError(f"{args.gallery}: records no model path; give --model MODEL")
        path, average_last = gallery.model_path, gallery.average_last
    return load_model(
        path, device=args.device, batch_size=args.batch_size, average_last=average_last
    )


def run_search(args: argparse.Namespace) -> int:
    from sphereface2.inference.gallery import load_gallery
    from sphereface2.inference.gallery_search import (
        check_model,
        open_faiss_index,
        search_gallery,
        write_results,
    )

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    gallery = load_gallery(args.gallery)
    model = _search_model(args, gallery)
    check_model(gallery, model)  # before any index is loaded or built
    index, how = None, "exact search (chunked matrix products)"
    if args.index == "faiss":
        index, how = open_faiss_index(gallery, args.nprobe)
    results = search_gallery(gallery, model, args.images, args.top_k, args.per, index)
    print(f"gallery: {len(gallery)} images of {len(gallery.identities)} identities; {how}")
    for result in results:
        print(f"{result.query}:")
        for rank, m in enumerate(result.matches, 1):
            print(f"  {rank:>3}  {m.score:7.4f}  {m.identity}  {m.path}")
    if args.json:
        write_results(
            args.json,
            results,
            gallery=str(args.gallery),
            top_k=args.top_k,
            per=args.per,
            search=how,
        )
        print(f"wrote {args.json}")
    return 0
