"""Manifests make a run citable: the canonical config, the seed, package versions, the code revision
and a digest of every output table. ``replay`` re-runs from a manifest and compares digests."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.streams import streams_record

if TYPE_CHECKING:
    import pandas as pd

PACKAGES = ("mesa", "numpy", "networkx", "pandas", "pyarrow", "pydantic", "scipy", "matplotlib")
REPO_ROOT = Path(__file__).resolve().parent.parent


def versions() -> dict[str, str]:
    """Python and the packages whose behaviour can change a run's numbers."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def code_revision() -> dict[str, Any]:
    """The git commit of the code and whether the working tree had uncommitted changes to it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "model",
                "agents",
                "experiments",
                "run.py",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return {"commit": head, "dirty": bool(status)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def combined_digest(digests: dict[str, str]) -> str:
    """One digest over all outputs, independent of the order they were written in."""
    text = "\n".join(f"{name}:{digests[name]}" for name in sorted(digests))
    return hashlib.sha256(text.encode()).hexdigest()


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a plain open() honours the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Parquet with a fixed writer configuration, so the same table gives the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=3, write_statistics=True)
    return sink.getvalue()


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


def run_manifest(
    config: dict[str, Any], seed: int, outputs: dict[str, str], command: list[str]
) -> dict[str, Any]:
    return {
        "kind": "run",
        "seed": seed,
        "random_streams": streams_record(seed),
        "config": config,
        "versions": versions(),
        "code_revision": code_revision(),
        "command": command,
        "outputs": outputs,
        "digest": combined_digest(outputs),
    }


def read_manifest(path: Path) -> dict[str, Any]:
    from model.config import ConfigError

    try:
        manifest = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"manifest {path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"manifest {path}: not valid JSON ({exc})") from None
    for key in ("kind", "config", "seed", "outputs", "digest"):
        if key not in manifest:
            raise ConfigError(f"manifest {path}: missing field '{key}'")
    return manifest


def compare_manifests(recorded: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """What differs between a recorded run and its replay: versions, revision and output digests."""
    problems = []
    for name, version in recorded.get("versions", {}).items():
        now = fresh["versions"].get(name)
        if now != version:
            problems.append(f"version of {name}: recorded {version}, now {now}")
    rec_rev, now_rev = recorded.get("code_revision", {}), fresh["code_revision"]
    if rec_rev.get("commit") != now_rev.get("commit"):
        problems.append(f"code revision: recorded {rec_rev.get('commit')}, now {now_rev.get('commit')}")
    for name, digest in recorded["outputs"].items():
        now = fresh["outputs"].get(name)
        if now != digest:
            problems.append(f"output {name}: digest differs (recorded {digest[:12]}, replay {str(now)[:12]})")
    return problems
