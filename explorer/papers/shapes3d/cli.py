"""Command line of the 3D structure tab (no torch at import time).

nips-explorer train shapes3d [--dataset primitives|furniture] [--minutes M] [--steps N] [--resume CKPT] ...
torchrun --standalone --nproc_per_node N -m explorer train shapes3d ...   (DDP; --batch is the global batch)
nips-explorer eval shapes3d [--dataset primitives|furniture|modelnet] [--checkpoint F] [--json]
nips-explorer eval shapes3d --voxels DIR [--checkpoint F] [--shapes MODELNET_DIR] --json   (any CLASS_ID.npy grids)
nips-explorer eval shapes3d --dataset modelnet --shapes DIR --export-voxels OUT   (held-out grids for --voxels)
nips-explorer eval shapes3d --dataset furniture --export-grids DIR   (Sweet Home 3D models as ModelNet-style grids)
nips-explorer reconstruct IMAGE.png --out shape.obj [--checkpoint F] [--level 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from explorer.core.errors import UserError
from explorer.core.validate import COUNT, POSITIVE, POSITIVE_INT, number

PAPER = "shapes3d"


def _default_checkpoint(dataset: str = "primitives") -> Path:
    from explorer.core.paths import bundled

    from . import SPEC

    return bundled(SPEC.default_checkpoint if dataset == "primitives" else f"shapes3d_{dataset}.safetensors")


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        choices=("primitives", "furniture", "modelnet"),
        default=None,
        help="default: primitives (eval --voxels: the ModelNet model, the one trained on real objects); "
        "primitives: boxes, spheres, cylinders, cones, tori under random pose and scale "
        "(trimesh.creation); furniture: Sweet Home 3D models (apt sweethome3d-furniture); modelnet: the "
        "voxel grids in --shapes DIR (e.g. ModelNet10 chairs and monitors, CLASS.npy.gz)",
    )
    parser.add_argument(
        "--shapes",
        metavar="DIR",
        default=None,
        help="folder of ModelNet voxel grids (CLASS.npy.gz, (N, 1, 32, 32, 32)) for --dataset modelnet; pictures "
        "are rendered from them, the grids are only the evaluation's ground truth",
    )
    parser.add_argument(
        "--n-train", type=POSITIVE_INT, default=None, help="number of training primitives (default 2000)"
    )
    parser.add_argument("--n-test", type=POSITIVE_INT, default=None, help="number of held-out primitives (default 250)")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="cache folder for the rendered data sets (default: the user cache folder)",
    )


def _load_data(args, progress=None):
    from .data import cache_dir, load_dataset
    from .train import PRESETS

    preset = PRESETS[args.dataset]
    kw = {}
    if args.dataset == "primitives":
        kw = dict(n_train=args.n_train or preset["n_train"], n_test=args.n_test or preset["n_test"])
        for k, v in kw.items():
            if v < 1:
                raise UserError(f"--{k.replace('_', '-')} must be positive")
    elif args.dataset == "modelnet":
        kw = dict(shapes=args.shapes)
    else:
        kw = dict(train_copies=preset.get("train_copies", 1))
    kw["rig"] = preset.get("rig", "axes")
    folder = Path(args.data_dir) / "shapes3d" if args.data_dir else cache_dir()
    return load_dataset(args.dataset, progress=progress, folder=folder, **kw)


def _grid_sources(folder: Path) -> dict:
    """What a --shapes folder holds beyond ModelNet's CLASS.npy.gz files: the Sweet Home 3D grids of
    ``--export-grids`` (CLASS.sh3d.npy.gz), with their packs' credits when the furniture is installed."""
    extra = sorted(f.name for f in folder.glob("*.*.npy.gz"))
    if not extra:
        return {}
    out: dict = {"other_collections": extra}
    if any(".sh3d." in f for f in extra):
        from .data import furniture_credits

        out["other_collections_made_by"] = "nips-explorer eval shapes3d --dataset furniture --export-grids DIR"
        try:
            out["packs"] = furniture_credits()
        except UserError:
            pass
    return out


def _held_out_metrics(model, train_set, test_set, device, label: str = "shapes3d eval") -> tuple[dict, dict]:
    """The test numbers a checkpoint records (after training and with ``eval --record``): where the data set has
    validation shapes (ModelNet), the read-out (occupancy level; the mirrored look and the carvings, or the network
    alone) is chosen on them; the test shapes are then scored with it, and by the network alone beside it."""
    import numpy as np

    from explorer.core.progress import TerminalProgress

    from .data import extent_share
    from .evaluate import choose_readout
    from .evaluate import evaluate as run_eval
    from .model import Readout

    metrics: dict = {}
    readout = Readout()
    shares = np.array([v for v in (extent_share(g) for g in train_set.voxels) if v > 0] or [1.0])
    lo, hi = np.percentile(shares, [5, 95])
    if hi - lo <= 0.05:  # one framing for all training shapes (ModelNet: the largest side fills the cube)
        metrics["grid_framing"] = round(float(np.median(shares)), 4)
        metrics["grid_framing_note"] = (
            "share of the cube that the training shapes' largest side spans; eval --voxels zooms grids framed "
            "otherwise to it"
        )
    n_val = int(train_set.info.get("valid", 0) or 0)
    if n_val:
        readout, tables = choose_readout(model, train_set.subset(range(n_val)), device)
        metrics.update(
            {
                "iou_level": readout.level,
                "iou_readout": {"mirror": readout.mirror, "carve": readout.carve, "depth": readout.depth},
                "iou_level_network": readout.network_level,
                "iou_level_valid": tables,
                "iou_level_note": f"read-out with the best IoU on the {n_val} validation shapes (class given): "
                + readout.describe(),
            }
        )
    more: dict = {}
    with TerminalProgress(label) as bar:
        result = run_eval(model, test_set, device, progress=bar, extra=more, readout=readout)
    metrics.update(_test_metrics(result, more))
    if "iou_at_level_0.5" in more:
        metrics["test_iou_at_level_0.5"] = more["iou_at_level_0.5"]
    if "iou_network" in more:
        metrics["test_iou_network"] = more["iou_network"]
    return metrics, result


# ----- train ----------------------------------------------------------------------------------------------
# Both presets train for 20 minutes (PRESETS[...]["train"]["time_limit_s"]); --minutes overrides.
DEFAULT_MINUTES = 20.0


def configure_train(parser: argparse.ArgumentParser) -> None:
    from explorer.core.training import add_training_options

    _data_args(parser)
    parser.add_argument(
        "--batch",
        type=POSITIVE_INT,
        default=None,
        help="global minibatch size, split evenly over torchrun's processes (default 32)",
    )
    parser.add_argument("--draw-steps", type=POSITIVE_INT, default=None, help="DRAW steps T writing into the canvas")
    parser.add_argument("--hidden", type=POSITIVE_INT, default=None, help="LSTM size")
    parser.add_argument("--lr", type=POSITIVE, default=None, help="peak Adam learning rate (cosine decay)")
    parser.add_argument(
        "--writer",
        choices=("scale-shift", "rotation"),
        default=None,
        help="how each step's patch is placed: per-axis scale and shift (separable), or the full 3D spatial "
        "transformer with a rotation too (default: the preset's; modelnet: rotation)",
    )
    parser.add_argument(
        "--init", metavar="CHECKPOINT", default=None, help="start from this checkpoint's weights (same architecture)"
    )
    parser.add_argument(
        "--gallery",
        type=COUNT,
        default=0,
        metavar="N",
        help="also write N held-out shapes to resources/shapes3d/gallery.npz for the app",
    )
    add_training_options(
        parser,
        steps=100000,
        epochs=None,
        minutes=DEFAULT_MINUTES,
        seed=0,
        out_help="where to save (default models/shapes3d_<dataset>.safetensors); the resume "
        "file goes beside it (<out>.resume.safetensors)",
    )


def train(args) -> int:
    from explorer.core.training import init_world

    args.dataset = args.dataset or "primitives"
    world = init_world(getattr(args, "device", "auto"), getattr(args, "threads", None))
    try:
        return _train(args, world)
    finally:
        world.close()


def _train(args, world) -> int:
    import numpy as np

    from explorer.core.paths import training_output
    from explorer.core.progress import TerminalProgress
    from explorer.core.training import Run, seed_all

    from .infer import gallery_path, save_gallery
    from .model import build
    from .train import PRESETS, TrainConfig, fit

    device = world.device
    main = world.is_main

    def say(msg: str) -> None:
        if main:
            print(msg, file=sys.stderr, flush=True)

    preset = PRESETS[args.dataset]
    if args.minutes is not None and not args.minutes > 0:
        raise UserError("--minutes must be positive")
    t0 = time.monotonic()
    # The first process renders (or reads) the cached data set; the others read it once it is written.
    for turn in (0,) if not world.distributed else (0, 1):
        if (turn == 0) == main:
            with TerminalProgress("shapes3d data", disable=not main) as bar:
                train_set, test_set = _load_data(args, bar)
        world.barrier()
    data_s = time.monotonic() - t0
    mcfg = dict(preset["model"])
    mcfg["class_names"] = list(train_set.class_names)
    mcfg["cameras"] = [list(c) for c in train_set.cameras]
    for key, val in (("steps", args.draw_steps), ("hidden", args.hidden)):
        if val is not None:
            if val < 1:
                raise UserError(f"--{'draw-steps' if key == 'steps' else key} must be positive")
            mcfg[key] = val
    if args.writer is not None:
        mcfg["writer_rotation"] = args.writer == "rotation"
    tcfg = TrainConfig(**preset["train"])
    tcfg.steps, tcfg.seed = args.steps, args.seed
    if args.batch is not None:
        if args.batch < 1:
            raise UserError("--batch must be positive")
        tcfg.batch = args.batch
    if args.lr is not None:
        tcfg.lr = args.lr
    minutes = args.minutes if args.minutes is not None else preset["train"]["time_limit_s"] / 60.0
    tcfg.time_limit_s = minutes * 60.0
    out = Path(args.out) if args.out else training_output(preset["file"])
    seed_all(args.seed)  # the same initial weights on every process
    if args.init:
        # Same architecture; tensors whose shapes match are copied (the class embedding is new when the
        # data set has other classes, e.g. furniture started from the primitives model).
        from explorer.core.checkpoints import load_checkpoint

        ck = load_checkpoint(args.init, expected_paper=PAPER)
        cfg = dict(ck.meta.model_config)
        cfg["class_names"], cfg["cameras"] = mcfg["class_names"], mcfg["cameras"]
        cfg["writer_rotation"] = bool(mcfg.get("writer_rotation", False))  # new rotation layers start at zero
        model = build(cfg)
        own = model.state_dict()
        copied = {k: v for k, v in ck.state_dict.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        if len(copied) < len(own) // 2:
            raise UserError(
                f"{Path(args.init).name}: its architecture does not fit (only {len(copied)} of "
                f"{len(own)} tensors match)"
            )
        model.load_state_dict(copied, strict=False)
        say(f"started from {args.init}: {len(copied)} of {len(own)} tensors")
        mcfg = model.config()
    else:
        model = build(mcfg)
    # Hold out a few training shapes' pictures for the validation ELBO (pictures only, like training).
    views = train_set.training_views()
    # Whole models: with several copies of each model (furniture under more yaws), all copies go to one side.
    n_models = int(train_set.info.get("models", len(views)) or len(views))
    n_val = min(100, max(1, n_models // 10)) if n_models > 1 else 0
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(n_models)
    if "valid" in train_set.info:  # a fixed hashed split (modelnet): its 'valid' shapes come first
        n_val = int(train_set.info["valid"])
        perm = np.concatenate([np.arange(n_val), n_val + rng.permutation(n_models - n_val)])
    train_models = n_models - n_val
    if n_models < len(views):
        val_models = np.isin(np.arange(len(views)) % n_models, perm[:n_val])
        perm = np.concatenate([np.nonzero(val_models)[0], rng.permutation(np.nonzero(~val_models)[0])])
        n_val = int(val_models.sum())
    from .data import ViewSet

    val = (
        ViewSet(views.views[perm[:n_val]], views.labels[perm[:n_val]], views.class_names, views.cameras)
        if n_val
        else None
    )
    fit_set = ViewSet(views.views[perm[n_val:]], views.labels[perm[n_val:]], views.class_names, views.cameras)
    if tcfg.batch > len(fit_set):  # a tiny data set: the largest batch that splits over the processes
        tcfg.batch = len(fit_set) - len(fit_set) % world.world_size
        if tcfg.batch < 1:
            raise UserError(f"{len(fit_set)} training shapes cannot be shared by {world.world_size} processes")
    world.split_batch(tcfg.batch)
    data_desc = {
        "name": args.dataset,
        "train_shapes": len(fit_set),
        "val_shapes": n_val,
        "train_models": train_models,
        "test_shapes": len(test_set),
        "cameras": mcfg["cameras"],
        "image_size": 32,
        "trainer_sees": "pictures from the training cameras and class labels; no voxels",
    }
    if args.dataset == "modelnet":
        data_desc["shapes_dir"] = str(Path(args.shapes).resolve())
        data_desc["split"] = "whole shapes by an MD5 hash of CLASS_INDEX: 75% train, 10% valid, 15% test"
        data_desc["fill_for_rendering"] = True
        data_desc["credits"] = "ModelNet10 (Wu et al., 3D ShapeNets, CVPR 2015), 32^3 voxel grids"
        data_desc.update(_grid_sources(Path(args.shapes)))
    if args.dataset == "furniture":
        from .data import furniture_credits

        data_desc["credits"] = (
            "Sweet Home 3D furniture libraries (Debian sweethome3d-furniture, "
            "/usr/share/doc/sweethome3d-furniture/copyright); models by pack below"
        )
        try:
            data_desc["packs"] = furniture_credits()
        except UserError:
            pass

    run = Run(
        world,
        paper=PAPER,
        out=out,
        minutes=minutes,
        steps=args.steps,
        checkpoint_every_min=args.checkpoint_every,
        log=say,
        progress_desc="shapes3d train",
        seed=args.seed,
    )

    def save(m, summary):
        metrics = {
            "headline": "train_elbo",
            "train_elbo": round(float(summary.get("train_elbo", 0.0)), 2),
            "train_steps": summary.get("steps", 0),
            "train_time_s": round(summary.get("train_time_s", 0.0), 1),
        }
        for k in ("val_elbo", "val_image_error"):
            if k in summary:
                metrics[k] = round(float(summary[k]), 4)
        run.save_model(
            out,
            m.state_dict(),
            model_config=m.config(),
            metrics=metrics,
            data=data_desc,
            extra={"train_config": summary["config"]},
        )

    say(
        f"training on {world.describe()}: {len(fit_set)} shapes x {len(fit_set.cameras)} views, batch "
        f"{tcfg.batch} (data ready in {data_s:.0f}s); saving to {out}"
    )
    summary = fit(
        model,
        fit_set,
        device,
        tcfg,
        val=val,
        on_checkpoint=save,
        run=run,
        resume=args.resume,
        log=say if args.debug else None,
    )
    world.close()  # training is over for every process; rank 0 evaluates and writes alone
    if not main:
        return 0
    if run.stop_reason == "signal":
        say(f"stopped at step {run.step_count}: {out} holds the weights so far (not evaluated)")
        return 0
    from explorer.core.checkpoints import update_metrics

    held_out, result = _held_out_metrics(model, train_set, test_set, device)
    update_metrics(out, held_out)
    if args.gallery:
        idx = [
            i
            for c in range(len(test_set.class_names))
            for i in np.nonzero(test_set.labels == c)[0][: max(1, args.gallery // len(test_set.class_names))]
        ]
        save_gallery(test_set, sorted(idx), gallery_path(args.dataset))
    print(
        json.dumps(
            {
                "checkpoint": str(out),
                "steps": summary["steps"],
                "train_time_s": round(summary["train_time_s"], 1),
                **result,
            },
            indent=2,
        )
    )
    return 0


# ----- eval -----------------------------------------------------------------------------------------------
def configure_eval(parser: argparse.ArgumentParser) -> None:
    _data_args(parser)
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        default=None,
        help="checkpoint to evaluate (default: the bundled one for the dataset)",
    )
    parser.add_argument("--limit", type=POSITIVE_INT, default=None, help="evaluate only the first N held-out shapes")
    parser.add_argument(
        "--voxels",
        metavar="DIR",
        default=None,
        help="score the model on any voxel grids instead: DIR holds CLASS_ID.npy cubic boolean grids (any size, "
        "axes x, y, z with y up, centred); each grid's input picture is rendered with the project's renderer and "
        "camera, the inferred shape scored by IoU at the model's resolution (classes the model never saw: "
        "unconditional). JSON: shapes, iou (as the checkpoint reads it: its level, and the mirrored look and carving "
        "to the silhouette and to the depth the picture shows when chosen on validation shapes; no cavity filling), "
        "iou_filled (enclosed cavities filled), iou_network (the network alone), iou_baseline (visual hull), "
        "iou_nearest (nearest training picture's shape), iou_nearest_carved, and with the depth carving "
        "iou_depth_hull and iou_nearest_depth (the baselines carved alike), per_class",
    )
    parser.add_argument(
        "--export-voxels",
        metavar="DIR",
        default=None,
        help="write the --dataset's held-out shapes into DIR as CLASS_ID.npy grids for --voxels, then stop",
    )
    parser.add_argument(
        "--export-grids",
        metavar="DIR",
        default=None,
        help="--dataset furniture: write every Sweet Home 3D model as a ModelNet-style grid (upright, its largest "
        "side filling the cube, 32^3) into DIR as CLASS.sh3d.npy.gz, which --dataset modelnet --shapes DIR reads "
        "beside ModelNet's CLASS.npy.gz files (link those in), then stop",
    )
    parser.add_argument(
        "--export-gallery",
        metavar="FILE.npz",
        default=None,
        help="write the app's gallery of the --dataset's held-out TEST shapes (input pictures and ground-truth "
        "grids, as resources/shapes3d/gallery_<dataset>.npz), the first of each class in the split's order, "
        "then stop",
    )
    parser.add_argument(
        "--gallery-counts",
        metavar="N,N",
        default="8,6",
        help="how many held-out shapes of each class --export-gallery takes: one count per class in class order "
        "(default 8,6), or CLASS=N pairs in the order the gallery shows them (e.g. chair=8,monitor=6,table=2)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--record",
        action="store_true",
        help="write the numbers into the checkpoint's metrics (held-out data set: test_iou, its baseline and per "
        "class; --voxels: test_iou_nearest and the per-class nearest-picture and filled IoUs beside them)",
    )


def _record(ckpt: Path, metrics: dict) -> None:
    """Merge held-out numbers into the checkpoint's metadata; per-class entries are merged class by class."""
    from explorer.core.checkpoints import load_checkpoint, update_metrics

    old = dict(load_checkpoint(ckpt, expected_paper=PAPER).meta.metrics or {})
    per_class = {k: dict(v) for k, v in (old.get("per_class") or {}).items()}
    for name, row in (metrics.pop("per_class", None) or {}).items():
        per_class.setdefault(name, {}).update(row)
    if per_class:
        metrics["per_class"] = per_class
    update_metrics(ckpt, metrics)
    print(f"recorded the numbers in {ckpt}", file=sys.stderr)


def _export_gallery(args) -> int:
    import numpy as np

    from explorer.core.progress import TerminalProgress

    from .infer import save_gallery

    with TerminalProgress("shapes3d data", disable=None) as bar:
        _, test_set = _load_data(args, bar)
    names = list(test_set.class_names)
    order = _gallery_counts(str(args.gallery_counts), names)
    idx = [int(i) for c, n in order for i in np.nonzero(test_set.labels == c)[0][:n]]
    spec = ",".join(f"{names[c]}={n}" for c, n in order)
    source = {
        "dataset": args.dataset,
        "split": "test (held out: never trained on)",
        "command": f"nips-explorer eval shapes3d --dataset {args.dataset}"
        + (" --shapes DIR" if args.dataset == "modelnet" else "")
        + f" --export-gallery {Path(args.export_gallery).name} --gallery-counts {spec}",
    }
    if args.dataset == "modelnet":
        source["credits"] = "ModelNet10 (Wu et al., 3D ShapeNets, CVPR 2015), Princeton ModelNet; 32^3 voxel grids"
        if any("_sh3d" in test_set.names[i] for i in idx):  # load_modelnet names them CLASS_sh3dNNNN
            source["credits"] += (
                "; Sweet Home 3D furniture libraries (Debian sweethome3d-furniture; CC0 and CC-BY 3.0 packs, the "
                "creators per pack in the metadata of the model trained on them)"
            )
    save_gallery(test_set, idx, Path(args.export_gallery), source=source)
    got = ", ".join(f"{n} {names[c]}" for c, n in order)
    print(f"wrote {len(idx)} held-out {args.dataset} shapes ({got}) to {args.export_gallery}")
    return 0


def _gallery_counts(spec: str, names: list[str]) -> list[tuple[int, int]]:
    """--gallery-counts -> [(class index, count)] in the gallery's order: N,N,... (one count per class, in class
    order; a single N for every class) or CLASS=N,... (those classes, in the order given)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    try:
        if parts and all("=" in p for p in parts):
            pairs = [(name.strip(), int(n)) for name, n in (p.split("=", 1) for p in parts)]
            unknown = [name for name, _ in pairs if name not in names]
            if unknown:
                raise UserError(f"--gallery-counts: no class {', '.join(unknown)} here (classes: {', '.join(names)})")
            order = [(names.index(name), n) for name, n in pairs]
        else:
            counts = [int(p) for p in parts]
            if len(counts) == 1:
                counts = counts * len(names)
            if len(counts) != len(names):
                raise UserError(f"--gallery-counts: {len(counts)} counts for {len(names)} classes ({', '.join(names)})")
            order = list(enumerate(counts))
    except ValueError:
        raise UserError(f"--gallery-counts: '{spec}' is not a list like 8,6 or chair=8,monitor=6") from None
    if not order or min(n for _, n in order) < 0:
        raise UserError("--gallery-counts: give counts of 0 or more, e.g. 8,6 or chair=8,monitor=6")
    return order


def _nearest_bank(args, meta, model):
    """The training set's pictures and shapes for the nearest-picture baseline: the ModelNet folder given by
    --shapes or recorded in the checkpoint, its training split read from the data cache (rendered once). None
    when there is none (models trained on the generated primitives or furniture)."""
    from .data import cache_dir, load_dataset
    from .evaluate import nearest_bank
    from .train import PRESETS

    shapes = args.shapes or (meta.data or {}).get("shapes_dir")
    if not shapes or not Path(shapes).is_dir():
        return None
    folder = Path(args.data_dir) / "shapes3d" if args.data_dir else cache_dir()
    train_set, _ = load_dataset("modelnet", shapes=shapes, rig=PRESETS["modelnet"]["rig"], folder=folder)
    n_val = int(train_set.info.get("valid", 0))
    if n_val:
        train_set = train_set.subset(range(n_val, len(train_set)))
    return nearest_bank(train_set, model.res)


def _evaluate_voxels(args, model, meta, ckpt, device) -> int:
    from explorer.core.progress import TerminalProgress

    from .data import load_voxel_folder
    from .evaluate import SCORES, evaluate_grids
    from .model import Readout

    grids = load_voxel_folder(args.voxels)
    if args.limit is not None:
        grids = grids[: args.limit]
    bank = _nearest_bank(args, meta, model)
    if bank is None:
        print(
            "note: no training collection found for the nearest-picture baseline (iou_nearest is null); "
            "give --shapes DIR",
            file=sys.stderr,
        )
    with TerminalProgress("shapes3d eval") as bar:
        result = evaluate_grids(
            model,
            grids,
            device,
            bank=bank,
            progress=bar,
            readout=Readout.from_metrics(meta.metrics),
            framing=(meta.metrics or {}).get("grid_framing"),
        )
    if args.record:
        grids_keys = ("iou", "iou_filled", "iou_network", "iou_baseline", "iou_depth_hull")  # as test_grids_*
        rec: dict = {
            "test_grids": f"{result['shapes']} grids in {Path(args.voxels).name}/ "
            "(eval --voxels; the class given if known)",
            **{
                f"test_grids_{k}" if k in grids_keys else f"test_{k}": result[k]
                for k in SCORES
                if result.get(k) is not None
            },
            "per_class": {
                name: {f"grids_{k}" if k in grids_keys else k: r[k] for k in SCORES if r.get(k) is not None}
                for name, r in result["per_class"].items()
            },
        }
        _record(ckpt, rec)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{ckpt.name} on {result['shapes']} grids from {args.voxels} (single view; {result['readout']}):")
    print("  " + _grid_scores(result, "cavities filled", "network alone", "visual hull", "nearest training picture"))
    for name, r in result["per_class"].items():
        cond = "" if r["conditioned"] else "  (class unknown to the model: unconditional)"
        print(
            f"    {name:10s} {r['shapes']:4d} shapes   "
            + _grid_scores(r, "filled", "network", "hull", "nearest")
            + cond
        )
    return 0


def evaluate(args) -> int:
    from explorer.core.devices import choose_device, configure_threads
    from explorer.core.progress import TerminalProgress

    from .evaluate import evaluate as run_eval
    from .infer import load_for_app
    from .model import Readout

    # any grids are scored by default with the model trained on real objects; data-set work defaults to primitives
    args.dataset = args.dataset or ("modelnet" if args.voxels else "primitives")
    if args.export_gallery:
        return _export_gallery(args)
    if args.export_grids:
        from .data import furniture_grids, write_modelnet_style

        if args.dataset != "furniture":
            raise UserError("--export-grids writes the Sweet Home 3D furniture: give --dataset furniture")
        with TerminalProgress("shapes3d grids", disable=None) as bar:
            grids = furniture_grids(progress=bar)
        n = write_modelnet_style(grids, args.export_grids, "sh3d")
        counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(grids.items()))
        print(f"wrote {n} furniture grids ({counts}) to {args.export_grids} as CLASS.sh3d.npy.gz")
        return 0
    if args.export_voxels:
        from .data import export_voxels

        with TerminalProgress("shapes3d data", disable=None) as bar:
            _, test_set = _load_data(args, bar)
        if args.limit is not None:
            test_set = test_set.subset(range(min(args.limit, len(test_set))))
        n = export_voxels(test_set, args.export_voxels)
        print(f"wrote {n} held-out {args.dataset} grids to {args.export_voxels} (CLASS_ID.npy, x y z, y up)")
        return 0
    if args.record and args.limit is not None:
        raise UserError("--record needs the whole held-out set: leave out --limit")
    ckpt = Path(args.checkpoint) if args.checkpoint else _default_checkpoint(args.dataset)
    configure_threads(for_gui=False)
    device = choose_device(getattr(args, "device", "auto"))
    model, meta = load_for_app(str(ckpt), device)
    if args.voxels:
        return _evaluate_voxels(args, model, meta, ckpt, device)
    with TerminalProgress("shapes3d data", disable=None) as bar:
        train_set, test_set = _load_data(args, bar)
    if list(model.class_names) != list(test_set.class_names):
        raise UserError(f"{ckpt.name} was trained on classes {model.class_names}, not on the {args.dataset} data set")
    if args.limit is not None:
        if args.limit < 1:
            raise UserError("--limit must be positive")
        test_set = test_set.subset(range(min(args.limit, len(test_set))))
    if args.record:  # the level is chosen again on the validation shapes, then the test shapes are scored at it
        held_out, result = _held_out_metrics(model, train_set, test_set, device)
        _record(ckpt, held_out)
    else:
        with TerminalProgress("shapes3d eval") as bar:
            result = run_eval(
                model,
                test_set,
                device,
                progress=bar,
                readout=Readout.from_metrics(meta.metrics),
            )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{ckpt.name} on {result['shapes']} held-out {result['dataset']} shapes (single view):")
    print(f"  IoU {result['iou']:.3f} ({result['readout']})   visual-hull baseline {result['iou_baseline']:.3f}")
    for name, r in result["per_class"].items():
        print(f"    {name:10s} {r['shapes']:4d} shapes   IoU {r['iou']:.3f}   baseline {r['iou_baseline']:.3f}")
    print(
        f"  image error: input view {result['image_error_input_view']:.4f}, new views "
        f"{result['image_error_new_views']:.4f}   ELBO {result['elbo']:.1f} nats/shape"
    )
    return 0


# ----- reconstruct ----------------------------------------------------------------------------------------
def configure_reconstruct(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "image",
        metavar="IMAGE",
        help="a photo of one object on a plain background, or a PNG with a transparent background (masked, cropped "
        "and resized like the tab's Open picture; what was done is printed)",
    )
    parser.add_argument("--out", required=True, metavar="SHAPE.obj", help="mesh to write (.obj, .stl or .ply)")
    parser.add_argument("--checkpoint", metavar="FILE", default=None, help="default: the bundled primitives model")
    parser.add_argument(
        "--level",
        type=number(float, 0, 1, low_open=True, high_open=True),
        default=None,
        help="iso-level of the occupancy (0..1; default: the level the checkpoint is scored at, chosen on "
        "validation shapes, else 0.5)",
    )
    parser.add_argument("--label", default=None, help="class name to condition on (default: none)")
    parser.add_argument(
        "--views-out",
        metavar="VIEWS.png",
        default=None,
        help="also save the input and the re-projections (input camera + turntable) as a PNG strip",
    )


def reconstruct(args) -> int:
    import numpy as np

    from explorer.core.devices import choose_device, configure_threads

    from .infer import infer_volume, load_for_app, mesh_from_volume, read_gallery, save_image, write_mesh
    from .model import Readout
    from .photo import DEFAULT_FILL, load_photo

    if args.level is not None and not 0.0 < args.level < 1.0:
        raise UserError("--level must be between 0 and 1")
    out = Path(args.out)
    if out.suffix.lower() not in (".obj", ".stl", ".ply"):
        raise UserError(f"{out.name}: unsupported mesh format (use .obj, .stl or .ply)")
    configure_threads(for_gui=False)
    device = choose_device(getattr(args, "device", "auto"))
    ckpt = Path(args.checkpoint) if args.checkpoint else _default_checkpoint()
    model, meta = load_for_app(str(ckpt), device)
    # the photo is framed and drawn like this model's training pictures (measured on its bundled gallery)
    _, _, gallery = read_gallery(str((meta.data or {}).get("name") or "primitives"))
    ref = (gallery or {}).get("reference") or {"fill": DEFAULT_FILL, "grey": None}
    fill, framing = ref["fill"], "training"
    if args.label is not None and args.label in (ref.get("fill_by_name") or {}):
        fill, framing = ref["fill_by_name"][args.label], f"{args.label} training"
    img, report = load_photo(args.image, model.image_size, fill, ref["grey"], framing=framing)
    print(f"{Path(args.image).name}: {report}", file=sys.stderr)
    label = None
    if args.label is not None:
        if args.label not in model.class_names:
            raise UserError(f"unknown class '{args.label}' (choose one of {', '.join(model.class_names)})")
        label = model.class_names.index(args.label)
    readout = Readout.from_metrics(meta.metrics)
    level = readout.level if args.level is None else args.level
    res = infer_volume(model, img, device, label=label, readout=readout)
    verts, faces = mesh_from_volume(res["occupancy"], level)
    write_mesh(verts, faces, out)
    if args.views_out:
        strip = np.concatenate([img, res["reprojection"]] + list(res["turntable"]), axis=1)
        save_image(strip, args.views_out, scale=4)
    occ = res["occupancy"] > level
    print(f"wrote {out} ({len(verts)} vertices, {len(faces)} triangles; {int(occ.sum())} of {occ.size} voxels filled)")
    return 0


def commands():
    return [
        (
            "reconstruct",
            "infer a 3D shape from one picture and write a mesh (shapes3d tab)",
            configure_reconstruct,
            reconstruct,
        )
    ]


def _grid_scores(r: dict, filled: str, network: str, hull: str, nearest: str) -> str:
    """One line of ``eval --voxels`` scores (all of them, or one class's)."""

    def carved(value: float | None, *more: tuple[str, str]) -> str:
        if value is None:
            return "n/a"
        extra = [f"{name} {r[key]:.3f}" for name, key in more if r.get(key) is not None]
        return f"{value:.3f}" + (f" ({', '.join(extra)})" if extra else "")

    net = f", {network} {r['iou_network']:.3f}" if "iou_network" in r else ""
    hull_line = carved(r["iou_baseline"], ("to the depth", "iou_depth_hull"))
    near = carved(r.get("iou_nearest"), ("carved", "iou_nearest_carved"), ("to the depth", "iou_nearest_depth"))
    return f"IoU {r['iou']:.3f} ({filled} {r['iou_filled']:.3f}{net})   {hull} {hull_line}   {nearest} {near}"


def _test_metrics(result: dict, more: dict) -> dict:
    """The held-out test numbers a checkpoint's metadata records (after training and with ``eval --record``)."""
    return {
        "headline": "test_iou",
        "test_iou": result["iou"],
        "test_iou_baseline": result["iou_baseline"],
        "test_iou_without_filling": more["iou_raw"],
        "test_elbo": result["elbo"],
        "test_image_error_input_view": result["image_error_input_view"],
        "test_image_error_new_views": result["image_error_new_views"],
        **(
            {"test_image_error_novel_cameras": more["image_error_novel_cameras"]}
            if "image_error_novel_cameras" in more
            else {}
        ),
        "per_class": result["per_class"],
    }
