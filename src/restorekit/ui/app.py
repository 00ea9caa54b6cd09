"""``restorekit ui``: serve the local web UI (localhost only unless ``--host`` says otherwise).

The server, its jobs and PyTorch are imported when a server is created, so ``restorekit ui --help``
answers at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import hub
from ..errors import RestorekitError
from ..zoo import PRESETS

if TYPE_CHECKING:
    from .server import UIServer

DEFAULT_MAX_PIXELS = 50_000_000  # the page's limit: generous for photos, small enough to stay interactive
DEFAULT_MAX_UPLOAD_MIB = 512


def create_server(host: str = "127.0.0.1", port: int = 7860, models: list[str] | None = None,
                  device: str = "auto", max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  max_upload_mib: int = DEFAULT_MAX_UPLOAD_MIB) -> UIServer:
    """A bound, not yet serving, UI server (``port=0`` picks a free port; see ``server.url``).

    ``models``: preset names or weights files to offer besides the presets whose weights are on
    this machine. Call ``serve_forever()`` (or ``server.start``) and finally ``server_close()``.
    """
    from ..inference.runner import pick_device
    from .jobs import Catalogue
    from .server import UIServer

    # socket.bind raises OverflowError (a traceback) for ports outside 0-65535
    if not 0 <= port <= 65535:
        raise RestorekitError(f"--port must be 1-65535 (or 0 for any free port), got {port}")
    for ref in models or []:  # the UI never downloads: a named preset must be here already
        if ref in PRESETS and not Path(ref).exists() and not hub.is_available(PRESETS[ref]):
            raise hub.missing_weights_error(PRESETS[ref], "`restorekit ui` works offline and downloads nothing")
    catalogue = Catalogue(models, device=str(pick_device(device)))
    if not catalogue.entries:
        raise RestorekitError(
            "no model is available offline: install the package's embedded weights, point "
            "RESTOREKIT_WEIGHTS at a folder of weights, or pass --model FILE"
        )
    try:
        return UIServer(host, port, catalogue, max_pixels, max_upload_mib * 2**20)
    except OSError as exc:
        raise RestorekitError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME_OR_FILE",
                        help="also offer this preset or weights file (repeatable)")
    parser.add_argument("--device", default="auto",
                        help="where models run: auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images larger than this many pixels (default {DEFAULT_MAX_PIXELS:,})")
    parser.add_argument("--max-upload-mib", type=int, default=DEFAULT_MAX_UPLOAD_MIB,
                        help=f"refuse uploads larger than this (default {DEFAULT_MAX_UPLOAD_MIB} MiB)")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def run(args: argparse.Namespace) -> int:
    from .server import is_loopback

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    server = create_server(args.host, args.port, args.model, args.device, args.max_pixels, args.max_upload_mib)
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use the UI",
              file=sys.stderr)
    print(f"restorekit ui: serving {len(server.catalogue.entries)} model(s) on {server.url}  (Ctrl+C stops)",
          flush=True)
    if threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) should clean up the uploads folder just like Ctrl+C does.
        signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(0)
