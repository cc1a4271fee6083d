"""`python run.py viz`: open the Mesa browser visualiser (``solara run app.py``) on localhost.

It checks that solara's front-end files are installed locally first (the page is blank without them
on a machine with no CDN; ``scripts/install_solara_assets.py`` fetches them from the npm registry).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
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
    if busy := port_in_use(args.host, args.port):
        print(
            f"error: --port {args.port}: {args.host}:{args.port} is in use ({busy}); "
            f"try --port {free_port(args.host)}",
            file=sys.stderr,
        )
        return 2
    print(f"visualiser: http://{args.host}:{args.port}/  (Ctrl-C to stop)")
    return run_child(command(args))


def port_in_use(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on ('' if it can)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


# solara warns in ten lines on the first page load from any host but "localhost" (127.0.0.1 included)
# that its session cookie falls back to samesite=lax; that is what a local visualiser wants.
QUIET_WARNINGS = "ignore:Cookies with samesite=none require https:UserWarning"


def child_environment() -> dict[str, str]:
    """The solara server's environment: the project importable and solara's cookie warning silenced."""
    warnings = ",".join(w for w in (os.environ.get("PYTHONWARNINGS", ""), QUIET_WARNINGS) if w)
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": warnings}


def run_child(cmd: list[str]) -> int:
    """Run solara and stop it with us: SIGTERM, SIGHUP and Ctrl-C are passed on and waited for, so
    no server is left listening (0 after a stop we were asked for)."""
    child = subprocess.Popen(cmd, cwd=ROOT, env=child_environment())
    stopped = []

    def forward(signum: int, _frame: object) -> None:
        stopped.append(signum)
        child.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        while True:
            try:
                code = child.wait(timeout=10 if stopped else None)
                break
            except subprocess.TimeoutExpired:  # asked to stop and still running: force it
                child.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopped else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
