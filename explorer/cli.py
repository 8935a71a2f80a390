"""The ``nips-explorer`` command: gui (default), info, screenshot, train ID, eval ID, and paper tools.

Heavy modules (torch, Qt, VTK) are imported only by the subcommand that needs them. User errors print one
line and exit with status 2; unexpected errors print one line and the log file's path (the traceback goes to
the log, or to the terminal with --debug).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from . import __version__
from .core.errors import UserError
from .core.registry import PAPER_IDS, all_specs
from .core.validate import NON_NEGATIVE, POSITIVE

log = logging.getLogger("explorer.cli")


def _add_gui_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    sup = argparse.SUPPRESS
    p.add_argument("--tab", choices=PAPER_IDS, default=None if defaults else sup, help="open this tab first")
    p.add_argument(
        "--kiosk",
        action="store_true",
        default=False if defaults else sup,
        help="full screen booth mode: quit only with Ctrl+Alt+Q, settings not saved",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        default=None if defaults else sup,
        help="open this checkpoint in the first tab shown",
    )
    p.add_argument(
        "--attract",
        type=NON_NEGATIVE,
        metavar="SECONDS",
        default=None if defaults else sup,
        help="attract mode: after this many seconds without a touch the app cycles its tabs and runs their "
        "demos, until someone touches it (default: 60 with --kiosk, off otherwise; 0: off)",
    )
    p.add_argument(
        "--reset-settings",
        action="store_true",
        default=False if defaults else sup,
        help="forget saved window geometry, folders and last tab",
    )


def _paper_cli_modules():
    out = []
    for spec in all_specs():
        if spec.cli:
            try:
                out.append((spec, importlib.import_module(spec.cli)))
            except Exception:  # noqa: BLE001 - one broken paper must not take the whole command down
                log.info("the command-line module of %s could not be imported", spec.id, exc_info=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nips-explorer",
        description="See and touch six NIPS 2016 papers. Without a command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"nips-explorer {__version__}")
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda", "mps"),
        help="where models run (auto: CUDA, then MPS, then CPU)",
    )
    parser.add_argument("--debug", action="store_true", help="print tracebacks and debug logs to the terminal")
    _add_gui_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("gui", help="open the app (the default)")
    _add_gui_options(g, defaults=False)

    i = sub.add_parser("info", help="print a checkpoint's metadata")
    i.add_argument("checkpoint", metavar="CHECKPOINT")
    i.add_argument("--json", action="store_true", help="print JSON")

    m = sub.add_parser("models", help="list the bundled checkpoints: paper, file, data, headline metric")
    m.add_argument(
        "--json",
        action="store_true",
        help='print {"models": [{"paper", "path", "file", "data", "headline": {"metric", "value"}}]}',
    )

    s = sub.add_parser("screenshot", help="render a tab offscreen after its default demo and save a PNG")
    s.add_argument("--tab", required=True, choices=PAPER_IDS)
    s.add_argument("--out", required=True, metavar="FILE.png")
    s.add_argument("--size", default="1280x800", help="window size, WIDTHxHEIGHT (default 1280x800)")
    s.add_argument("--timeout", type=POSITIVE, default=300.0, help="seconds to wait for the demo (default 300)")
    s.add_argument(
        "--checkpoint", metavar="PATH", default=argparse.SUPPRESS, help="open this checkpoint in the tab first"
    )

    modules = _paper_cli_modules()
    t = sub.add_parser("train", help="train a paper's model (see 'nips-explorer train ID --help')")
    tsub = t.add_subparsers(dest="paper", metavar="ID", required=True)
    e = sub.add_parser("eval", help="evaluate a paper's model on held-out data")
    esub = e.add_subparsers(dest="paper", metavar="ID", required=True)
    for spec, mod in modules:
        if hasattr(mod, "configure_train"):
            tp = tsub.add_parser(spec.id, help=spec.title)
            mod.configure_train(tp)
            tp.set_defaults(_run=mod.train)
        if hasattr(mod, "configure_eval"):
            ep = esub.add_parser(spec.id, help=spec.title)
            mod.configure_eval(ep)
            ep.set_defaults(_run=mod.evaluate)
        for name, help_text, configure, run in mod.commands() if hasattr(mod, "commands") else []:
            cp = sub.add_parser(name, help=help_text)
            configure(cp)
            cp.set_defaults(_run=run)
    return parser


def _info(args) -> int:
    from .core.checkpoints import read_metadata

    meta = read_metadata(args.checkpoint)
    d = meta.to_dict()
    if args.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    print(f"file:        {args.checkpoint}")
    print(f"paper:       {meta.paper or '(unknown: a bare state dict)'}")
    print(
        f"format:      {meta.format_version}   created: {meta.created or '?'}   "
        f"by explorer {meta.explorer_version or '?'}"
    )
    print(f"data:        {json.dumps(meta.data) if meta.data else '(none)'}")
    print("config:      " + (json.dumps(meta.model_config) if meta.model_config else "(none)"))
    if meta.metrics:
        print("metrics:")
        for k, v in meta.metrics.items():
            print(f"  {k}: {v}")
    for k, v in meta.extra.items():
        print(f"{k}: {json.dumps(v, default=str)}")
    return 0


def bundled_models() -> list[dict]:
    """Every bundled checkpoint with its paper id, absolute path, data and headline metric (headers only)."""
    from .core.checkpoints import read_metadata
    from .core.paths import models_dir

    out = []
    for f in sorted(p for p in models_dir().glob("*.safetensors") if not p.name.endswith(".resume.safetensors")):
        meta = read_metadata(f)
        metrics = meta.metrics or {}
        key = metrics.get("headline")
        headline = {"metric": key, "value": metrics.get(key)} if key in metrics else {}
        out.append(
            {
                "paper": meta.paper,
                "path": str(f.resolve()),
                "file": f.name,
                "data": meta.data_summary(),
                "headline": headline,
            }
        )
    return out


def _models(args) -> int:
    from .core.paths import models_dir

    rows = bundled_models()
    if args.json:
        print(json.dumps({"models": rows}, indent=2, default=str))
        return 0
    if not rows:
        print(f"no bundled checkpoints in {models_dir()}")
        return 0
    print(f"bundled checkpoints in {models_dir()}:")
    width = max(len(r["file"]) for r in rows)
    for r in rows:
        h = r["headline"]
        head = f"{h['metric']} {_fmt_value(h['value'])}" if h else "(no headline metric)"
        print(f"  {r['paper'] or '?':<12} {r['file']:<{width}}  {head}")
    return 0


def _fmt_value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _needs_display() -> str | None:
    """Why the window can't open here (one line), or None. Qt would abort on a Linux machine with no display."""
    import os

    if not sys.platform.startswith("linux"):
        return None
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "the app needs a display and none was found (DISPLAY and WAYLAND_DISPLAY are unset). Run it on a "
        "desktop, under a virtual one ('xvfb-run -a nips-explorer'), or render a tab to a picture instead: "
        "'nips-explorer screenshot --tab srnn --out srnn.png'"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    from .core.logsetup import setup_logging

    setup_logging(debug=debug)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse printed its one line (or --help / --version)
            return exc.code if isinstance(exc.code, int) else 2
        cmd = args.command or "gui"
        if cmd == "gui":
            why = _needs_display()
            if why:
                raise UserError(why)
            from .ui.app import run_gui

            return int(run_gui(args) or 0)
        if cmd == "info":
            return _info(args)
        if cmd == "models":
            return _models(args)
        if cmd == "screenshot":
            from .ui.app import run_screenshot

            return int(run_screenshot(args) or 0)
        run = getattr(args, "_run", None)
        if run is None:
            parser.error(f"nothing to run for '{cmd}'")
        return int(run(args) or 0)
    except UserError as exc:
        print(f"nips-explorer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nips-explorer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001
        log.exception("unexpected error")
        if debug:
            raise
        from .core.logsetup import log_file

        print(
            f"nips-explorer: internal error: {type(exc).__name__}: {exc} (traceback in {log_file()}; "
            "rerun with --debug to see it here)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
