"""`python run.py viz`: open the Mesa browser visualiser (``solara run app.py``) on localhost.

It checks that solara's front-end files are installed locally first (the page is blank without them
on a machine with no CDN; ``scripts/install_solara_assets.py`` fetches them from the npm registry).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run.py viz",
        description="Open the SolaraViz visualiser of app.py (one model per browser tab). Ctrl-C stops it.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    p.add_argument("--dev", action="store_true", help="solara's development mode (reloads app.py on edits)")
    p.add_argument(
        "--skip-assets", action="store_true", help="do not check/install solara's offline front-end files"
    )
    return p


def command(args: argparse.Namespace) -> list[str]:
    """The solara command line for these arguments."""
    solara = Path(sys.executable).with_name("solara")
    runner = [str(solara)] if solara.exists() else [sys.executable, "-m", "solara"]
    cmd = [*runner, "run", str(ROOT / "app.py"), "--host", args.host, "--port", str(args.port)]
    return cmd if args.dev else [*cmd, "--production"]


def main(argv: list[str]) -> int:
    """Launch the visualiser; returns solara's exit code (0 after Ctrl-C)."""
    args = parser().parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"error: --port {args.port}: must be 1-65535", file=sys.stderr)
        return 2
    if not args.skip_assets:
        status = subprocess.call([sys.executable, str(ROOT / "scripts" / "install_solara_assets.py")])
        if status != 0:
            print(
                "warning: solara's front-end files are incomplete; the page may be blank offline",
                file=sys.stderr,
            )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {args.host}: other machines can reach the visualiser", file=sys.stderr)
    print(
        f"visualiser: http://{'localhost' if args.host == '127.0.0.1' else args.host}:{args.port}/  (Ctrl-C to stop)"
    )
    try:
        return subprocess.call(command(args), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
