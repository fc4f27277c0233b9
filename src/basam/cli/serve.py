"""`basam serve`: a local click-to-segment page (needs basam[serve])."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from basam.cli.common import add_model_arguments, add_resolution_arguments, attention_overrides, load_model_from_args
from basam.serve.engine import ServeSettings

INSTALL_HINT = "basam serve needs starlette and uvicorn: pip install 'basam[serve]'"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_resolution_arguments(p)  # the page's starting policy; the page can change it
    defaults = ServeSettings()
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_mb, help="largest upload accepted")
    p.add_argument("--max-megapixels", type=float, default=defaults.max_megapixels, help="largest image accepted")
    p.add_argument(
        "--cache",
        type=int,
        default=defaults.cached_encodings,
        help="image encodings kept (LRU, keyed by content hash, resolution and attention)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    from basam.serve.app import create_app
    from basam.serve.engine import Engine

    if args.max_upload_mb <= 0 or args.max_megapixels <= 0 or args.cache < 1:
        raise ValueError("--max-upload-mb and --max-megapixels must be > 0 and --cache ≥ 1")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: expected 0-65535")
    settings = ServeSettings(
        max_upload_mb=args.max_upload_mb,
        max_megapixels=args.max_megapixels,
        cached_encodings=args.cache,
        resolution=args.resolution,
        max_side=args.max_side,
    )
    model = load_model_from_args(args)
    engine = Engine(model, settings, attention_overrides(args))
    if not _is_loopback(args.host):
        print(f"warning: serving on {args.host}: anyone who can reach it can use this model", file=sys.stderr)
    print(
        f"basam serve: http://{args.host}:{args.port}/ — model {model.cfg.name}, attention "
        f"{model.attn_cfg.describe()}, resolution {engine.default_resolution} (Ctrl-C stops)",
        flush=True,
    )
    uvicorn.run(create_app(engine), host=args.host, port=args.port, log_level="warning")
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
