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

from core.streams import streams_record

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


def check_output_folder(path: Path | None, option: str = "--out") -> None:
    """Refuse an output folder that cannot be one before anything runs: empty (it would be the working
    folder), an existing file or device (``/dev/null``), or a path under a file."""
    from core.config import ConfigError

    if path is None:
        return
    if str(path).strip() in ("", "."):
        raise ConfigError(
            f"{option} {str(path)!r}: give a folder name (an empty name or '.' would write into the working folder)"
        )
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: exists and is not a folder")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{option} {path}: {parent} is a file, not a folder")


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


def read_key_file(path: Path) -> dict[str, Any]:
    """A sweep's or calibration's key record (``sweep.json``, which inputs a folder holds); a damaged
    one is a ConfigError naming it, since the folder cannot then be resumed safely."""
    from core.config import ConfigError

    try:
        stored: Any = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        stored = None
    if not isinstance(stored, dict) or not isinstance(stored.get("key"), str):
        raise ConfigError(
            f"{path}: damaged (not a key record); the folder cannot be resumed safely: "
            "choose another --out or remove that folder"
        )
    return stored


def read_table(path: Path) -> pd.DataFrame:
    """A recorded Parquet table; a truncated or damaged file is a ConfigError naming it."""
    import pandas as pd

    from core.config import ConfigError

    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigError(f"{path}: not a readable Parquet table (damaged or truncated: {exc})") from None


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())


MANIFEST_DIGEST = "manifest_digest"
MANIFEST_KINDS = ("run", "sweep")


def manifest_digest(manifest: dict[str, Any]) -> str:
    """The digest a manifest carries of its own content (config, seed, outputs...), so an edit to any
    field, not only to the outputs, is found on replay."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def sealed(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as it will read back from disk, with its own digest added."""
    manifest = json.loads(json.dumps(manifest, default=str))
    return manifest | {MANIFEST_DIGEST: manifest_digest(manifest)}


def run_manifest(
    config: dict[str, Any], seed: int, outputs: dict[str, str], command: list[str]
) -> dict[str, Any]:
    return sealed(
        {
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
    )


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def manifest_problem(manifest: Any) -> str:
    """Why ``manifest`` cannot be replayed ('' if it can): its shape, its fields, output names that
    leave the run folder, or content edited after it was written."""
    if not isinstance(manifest, dict):
        return f"not a manifest (a JSON object), got {type(manifest).__name__}"
    for key in ("kind", "config", "seed", "outputs", "digest"):
        if key not in manifest:
            return f"missing field '{key}'"
    if manifest["kind"] not in MANIFEST_KINDS:
        return f"field 'kind' is {manifest['kind']!r} (allowed: 'run', 'sweep')"
    seed = manifest["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        return f"field 'seed' must be a whole number 0 <= seed < 2**63, got {seed!r}"
    if not isinstance(manifest["config"], dict):
        return f"field 'config' must be a table of parameters, got {type(manifest['config']).__name__}"
    outputs = manifest["outputs"]
    if not isinstance(outputs, dict) or not outputs:
        return "field 'outputs' must name at least one output file with its sha256 digest"
    for name, digest in outputs.items():
        parts = Path(name).parts
        if not name or Path(name).is_absolute() or ".." in parts or name.startswith("~"):
            return f"outputs entry {name!r}: must be a file inside the run's folder"
        if not _is_sha256(digest):
            return f"outputs entry {name!r}: its digest must be a sha256 (64 hex digits), got {digest!r}"
    if not isinstance(manifest["digest"], str):
        return f"field 'digest' must be a sha256, got {manifest['digest']!r}"
    if manifest["kind"] == "sweep" and not isinstance(manifest.get("experiment_text"), str):
        return "field 'experiment_text' (the sweep's experiment file) is missing or not text"
    return ""


def manifest_edited(manifest: dict[str, Any]) -> str:
    """'manifest edited: ...' if the manifest's content no longer matches the digests it was written
    with ('' if it does); a replay reports it as a mismatch whatever the outputs say."""
    if manifest.get(MANIFEST_DIGEST) is None:
        return "manifest edited (or written by an older version): it carries no manifest_digest of its own"
    if manifest["digest"] != combined_digest(manifest["outputs"]):
        return "manifest edited: field 'digest' does not match the digests of its outputs"
    if manifest[MANIFEST_DIGEST] != manifest_digest(manifest):
        return (
            "manifest edited: its content (config, seed, outputs or another field) no longer matches "
            "the manifest_digest it was written with"
        )
    return ""


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest that can be replayed, or a ConfigError naming the file and what is wrong with it."""
    from core.config import ConfigError, read_text

    try:
        manifest = json.loads(read_text(path, "manifest"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"manifest {path}: not valid JSON ({exc})") from None
    if problem := manifest_problem(manifest):
        raise ConfigError(f"manifest {path}: {problem}")
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
