"""Re-vendor the API docs assets from npm: `python -m service.ui.vendor` (`make ui-vendor`).

The service serves Swagger UI and ReDoc itself, so /docs and /redoc render with no network
beyond the service (FastAPI's defaults load them from a public CDN). The packages are pinned in
`PACKAGES`; `npm pack` fetches each tarball (npm checks it against the registry's integrity
hash), and the files the pages load, with the package's licence files, are copied to
`service/ui/vendor/<name>-<version>/`. `vendor/VENDOR.json` records each package's version,
licence, tarball integrity and the sha256 of every copied file; `service.ui.assets` reads it and
a test checks the files against it.

ReDoc stays on the 2.x line: 3.x ships an ES module with usage telemetry on by default, while
2.x is the classic-script bundle that FastAPI's `get_redoc_html` is written for.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PACKAGES", "VENDOR_DIR", "Package", "vendor"]

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    files: tuple[str, ...]  # paths inside the tarball's package/ folder

    @property
    def directory(self) -> str:
        return f"{self.name}-{self.version}"


PACKAGES = (
    Package(
        "swagger-ui-dist",
        "5.35.0",
        (
            "swagger-ui-bundle.js",
            "swagger-ui-bundle.js.LICENSE.txt",
            "swagger-ui.css",
            "favicon-32x32.png",
            "LICENSE",
            "NOTICE",
        ),
    ),
    Package(
        "redoc",
        "2.5.4",
        ("bundles/redoc.standalone.js", "bundles/redoc.standalone.js.LICENSE.txt", "LICENSE"),
    ),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pack(package: Package, workdir: Path) -> tuple[Path, dict[str, str]]:
    """`npm pack name@version`: the tarball's path and npm's metadata for it."""
    out = subprocess.run(
        [
            "npm",
            "pack",
            f"{package.name}@{package.version}",
            "--json",
            "--pack-destination",
            workdir,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    meta = json.loads(out)[0]
    return workdir / meta["filename"], meta


def vendor(packages: tuple[Package, ...] = PACKAGES, root: Path = VENDOR_DIR) -> dict[str, object]:
    """Fetch and copy every package; rewrite VENDOR.json. Returns what it wrote there."""
    record: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for package in packages:
            tarball, meta = _pack(package, workdir)
            unpacked = workdir / package.directory
            with tarfile.open(tarball) as tar:
                tar.extractall(unpacked, filter="data")
            manifest = json.loads((unpacked / "package" / "package.json").read_text())
            target = root / package.directory
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            hashes = {}
            for name in package.files:
                copied = target / Path(name).name
                shutil.copyfile(unpacked / "package" / name, copied)
                hashes[copied.name] = _sha256(copied)
            record[package.name] = {
                "version": package.version,
                "license": manifest.get("license"),
                "directory": package.directory,
                "integrity": meta["integrity"],
                "files": hashes,
            }
    for stale in root.iterdir():  # directories of versions no longer pinned
        if stale.is_dir() and stale.name not in {p.directory for p in packages}:
            shutil.rmtree(stale)
    (root / "VENDOR.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service.ui.vendor", description=__doc__)
    parser.parse_args(argv)
    if shutil.which("npm") is None:
        sys.exit("service.ui.vendor: npm is not installed (Debian: apt-get install npm)")
    for name, entry in vendor().items():
        print(f"{name}: {entry}")


if __name__ == "__main__":
    main()
