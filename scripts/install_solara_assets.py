"""Install solara's front-end files offline, from the npm registry.

solara serves its page's JavaScript and CSS through a proxy cache at
`<prefix>/share/solara/cdn/` (solara.server.settings.assets.proxy_cache_dir), filling it from
a public CDN on first use. Where no CDN is reachable the SolaraViz page stays blank. The npm
registry holds the same files, so this script `npm pack`s each package solara's page asks for
and unpacks it where the proxy would have cached it: a request for
`/_solara/cdn/requirejs@2.3.6/require.js` is served from `<cache>/requirejs@2.3.6/require.js`
(solara/server/cdn_helper.py: get_path).

Run it with the venv's python: `.venv/bin/python scripts/install_solara_assets.py`.
Idempotent: a package whose folder already holds its package.json is skipped.
Exit status: 0 when every package is in place, 1 otherwise (npm missing, a pack failed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# The exact versions solara 1.64's page template and widgets request (with ipyvue < 2), and a
# file from each that the page loads, checked after unpacking.
PACKAGES = {
    "@widgetti/solara-vuetify-app@10.1.1": "dist/solara-vuetify-app8.min.js",
    "requirejs@2.3.6": "require.js",
    "font-awesome@4.5.0": "css/font-awesome.min.css",
    "@widgetti/vue-grid-layout@2.3.13-alpha.2": "dist/vue-grid-layout.umd.js",
}


def say(msg: str) -> None:
    print(f"[solara-assets] {msg}", flush=True)


def default_cache_dir() -> Path:
    # solara's default for a venv install, computed without importing solara (~0.7 s)
    return Path(sys.prefix) / "share" / "solara" / "cdn"


def solara_cache_dir() -> Path:
    # The authoritative answer: solara's own setting (a user-site install, or the
    # SOLARA_ASSETS_PROXY_CACHE_DIR variable, moves it).
    from solara.server import settings

    return Path(settings.assets.proxy_cache_dir)


def installed(cache: Path, spec: str) -> bool:
    return (cache / spec / "package.json").is_file()


def unpack(tarball: Path, dest: Path) -> None:
    """Unpack the tarball's single top folder (`package/` for npm) into dest, atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack-") as tmp:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        tops = list(Path(tmp).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise RuntimeError(f"{tarball.name}: expected one top folder, found {[p.name for p in tops]}")
        # solara may have cached a few single files here while online: replace that partial copy
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tops[0], dest)  # the folder appears complete or not at all


def main() -> int:
    cache = default_cache_dir()
    if "SOLARA_ASSETS_PROXY_CACHE_DIR" in {k.upper() for k in os.environ} or not all(
        installed(cache, s) for s in PACKAGES
    ):
        try:
            cache = solara_cache_dir()
        except ImportError:
            say("solara is not installed in this Python; nothing to do for the visualiser")
            return 1
    missing = [s for s in PACKAGES if not installed(cache, s)]
    if not missing:
        return 0

    npm = shutil.which("npm")
    if npm is None:
        say(
            "npm not found: cannot fetch solara's front-end files (install Node.js/npm, e.g. apt-get install npm)"
        )
        return 1

    say(f"fetching {len(missing)} package(s) from the npm registry into {cache}")
    failed = []
    with tempfile.TemporaryDirectory(prefix="solara-npm-") as tmp:
        for spec in missing:
            # --json names the tarball it wrote; --loglevel=error hides npm's config warnings
            proc = subprocess.run(
                [npm, "pack", spec, "--json", "--loglevel=error"],
                cwd=tmp,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            try:
                tarball = Path(tmp) / json.loads(proc.stdout)[0]["filename"]
                unpack(tarball, cache / spec)
            except Exception as exc:  # a failed pack prints no JSON
                detail = proc.stderr.strip().splitlines()[-1:] or [str(exc)]
                say(f"FAILED {spec}: {detail[0]}")
                failed.append(spec)
                continue
            if not (cache / spec / PACKAGES[spec]).is_file():
                say(f"FAILED {spec}: unpacked, but {PACKAGES[spec]} is not in it")
                failed.append(spec)
                continue
            say(f"installed {spec}")

    if failed:
        say(f"{len(failed)} package(s) not installed: the visualiser page will be blank offline")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
