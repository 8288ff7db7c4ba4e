"""Handwriting faces from the npm registry: Google Fonts' handwriting families as Fontsource
packages (``@fontsource/<family>``), vendored into ``training/datasets/fonts/`` so that rendering
needs neither npm nor the network. ``rendered-digits-v7`` (training/datasets/rendered_digits.py)
draws in them beside the Debian faces.

Each package gives one file, its Latin subset at weight 400 as WOFF (FreeType reads it; Pillow
renders it as any TrueType file), and its licence file. Every family here is one Fontsource
lists in Google Fonts' "handwriting" category, except those whose packages carry no licence file
of the font's own (two older 4.x packages, whose only LICENSE is the packaging's) and four that
Debian packages already give the digits sources (Kristi, Klee One, Nanum Pen Script, Nanum
Brush Script). None is from a family of the rendered-digits acceptance sets
(tests/training/test_datasets_rendered_digits.py checks it).

``python -m training.datasets.npm_fonts`` re-vendors them (needs npm: `npm pack` checks each
tarball against the registry's integrity hash; the versions are pinned below) and rewrites
``fonts/VENDOR.json`` (version, licence, tarball integrity and the sha256 of each copied file),
the record the rendered digits' manifests cite.
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
from pathlib import Path

__all__ = ["FONTS_DIR", "NPM_HANDS", "PACKAGES", "npm_version"]

FONTS_DIR = Path(__file__).resolve().parent / "fonts"

# (Fontsource family id, pinned package version)
PACKAGES: tuple[tuple[str, str], ...] = (
    ("amatic-sc", "5.3.0"),
    ("annie-use-your-telescope", "5.3.0"),
    ("architects-daughter", "5.3.0"),
    ("bad-script", "5.3.0"),
    ("beth-ellen", "5.3.0"),
    ("borel", "5.3.0"),
    ("caveat", "5.3.0"),
    ("caveat-brush", "5.3.0"),
    ("cedarville-cursive", "5.3.0"),
    ("charm", "5.2.7"),
    ("charmonman", "5.2.7"),
    ("comforter", "5.2.8"),
    ("coming-soon", "5.3.0"),
    ("covered-by-your-grace", "5.3.0"),
    ("crafty-girls", "5.3.0"),
    ("cute-font", "5.2.8"),
    ("dawning-of-a-new-day", "5.3.0"),
    ("dekko", "5.3.0"),
    ("delius", "5.3.0"),
    ("delius-swash-caps", "5.3.0"),
    ("east-sea-dokdo", "5.3.0"),
    ("edu-nsw-act-foundation", "5.3.0"),
    ("edu-qld-beginner", "5.3.0"),
    ("edu-sa-beginner", "5.3.0"),
    ("edu-tas-beginner", "5.3.0"),
    ("edu-vic-wa-nt-beginner", "5.3.0"),
    ("fuzzy-bubbles", "5.3.0"),
    ("gaegu", "5.3.0"),
    ("gamja-flower", "5.3.0"),
    ("give-you-glory", "5.3.0"),
    ("gloria-hallelujah", "5.3.0"),
    ("gochi-hand", "5.3.0"),
    ("grape-nuts", "5.3.0"),
    ("hachi-maru-pop", "5.3.0"),
    ("handlee", "5.3.0"),
    ("hi-melody", "5.3.0"),
    ("homemade-apple", "5.3.0"),
    ("indie-flower", "5.3.0"),
    ("itim", "5.3.0"),
    ("just-another-hand", "5.3.0"),
    ("just-me-again-down-here", "5.3.0"),
    ("kalam", "5.3.0"),
    ("kavivanar", "5.3.0"),
    ("la-belle-aurore", "5.3.0"),
    ("lakki-reddy", "5.3.0"),
    ("liu-jian-mao-cao", "5.3.0"),
    ("long-cang", "5.3.0"),
    ("loved-by-the-king", "5.3.0"),
    ("ma-shan-zheng", "5.3.1"),
    ("mali", "5.3.0"),
    ("mansalva", "5.3.0"),
    ("marck-script", "5.3.0"),
    ("mr-dafoe", "5.3.0"),
    ("mynerve", "5.3.0"),
    ("nerko-one", "5.3.0"),
    ("neucha", "5.3.0"),
    ("nothing-you-could-do", "5.3.0"),
    ("oooh-baby", "5.3.0"),
    ("over-the-rainbow", "5.3.0"),
    ("pangolin", "5.3.0"),
    ("patrick-hand", "5.3.0"),
    ("patrick-hand-sc", "5.3.0"),
    ("permanent-marker", "5.3.0"),
    ("playpen-sans", "5.3.0"),
    ("poor-story", "5.3.0"),
    ("rancho", "5.3.0"),
    ("reenie-beanie", "5.3.0"),
    ("rock-salt", "5.3.0"),
    ("ruge-boogie", "5.3.0"),
    ("schoolbell", "5.3.0"),
    ("sedgwick-ave", "5.3.0"),
    ("sedgwick-ave-display", "5.3.0"),
    ("send-flowers", "5.3.0"),
    ("shadows-into-light", "5.3.0"),
    ("shadows-into-light-two", "5.3.0"),
    ("short-stack", "5.3.0"),
    ("single-day", "5.3.1"),
    ("solitreo", "5.3.0"),
    ("square-peg", "5.3.0"),
    ("sriracha", "5.3.0"),
    ("stylish", "5.3.1"),
    ("sue-ellen-francisco", "5.3.0"),
    ("sunshiney", "5.3.0"),
    ("swanky-and-moo-moo", "5.3.0"),
    ("the-girl-next-door", "5.3.0"),
    ("unkempt", "5.3.0"),
    ("vujahday-script", "5.3.0"),
    ("waiting-for-the-sunrise", "5.3.0"),
    ("walter-turncoat", "5.3.0"),
    ("waterfall", "5.1.1"),
    ("whisper", "5.3.0"),
    ("yomogi", "5.3.0"),
    ("zen-kurenaido", "5.3.0"),
    ("zeyada", "5.3.0"),
    ("zhi-mang-xing", "5.3.0"),
)


def _directory(family: str, version: str) -> str:
    return f"fontsource-{family}-{version}"


def _face(family: str, version: str) -> str:
    return str(FONTS_DIR / _directory(family, version) / f"{family}-latin-400-normal.woff")


# "npm:@fontsource/<family>" -> its face, the shape of the Debian face lists
NPM_HANDS: dict[str, tuple[str, ...]] = {
    f"npm:@fontsource/{family}": (_face(family, version),) for family, version in PACKAGES
}


def npm_version(key: str) -> str | None:
    """The vendored version of an ``npm:@fontsource/<family>`` key, else None."""
    family = key.removeprefix("npm:@fontsource/")
    return next((v for f, v in PACKAGES if f == family), None)


def _vendor_one(family: str, version: str, workdir: Path) -> dict[str, object]:
    """`npm pack` one package (npm checks the registry's integrity hash), copy its face and
    licence into FONTS_DIR; its VENDOR.json entry. (training may not import service, whose
    service/ui/vendor.py vendors the API docs' packages the same way.)"""
    out = subprocess.run(
        ["npm", "pack", f"@fontsource/{family}@{version}", "--json", "--pack-destination", workdir],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    meta = json.loads(out)[0]
    unpacked = workdir / family
    with tarfile.open(workdir / meta["filename"]) as tar:
        tar.extractall(unpacked, filter="data")
    license_ = json.loads((unpacked / "package" / "package.json").read_text()).get("license")
    target = FONTS_DIR / _directory(family, version)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    hashes = {}
    for name in (f"files/{family}-latin-400-normal.woff", "LICENSE"):
        copied = target / Path(name).name
        shutil.copyfile(unpacked / "package" / name, copied)
        hashes[copied.name] = hashlib.sha256(copied.read_bytes()).hexdigest()
    return {
        "version": version,
        "license": license_,
        "directory": target.name,
        "integrity": meta["integrity"],
        "files": hashes,
    }


def main(argv: list[str] | None = None) -> None:
    """Re-vendor every package and rewrite VENDOR.json."""
    parser = argparse.ArgumentParser(
        prog="python -m training.datasets.npm_fonts", description=__doc__
    )
    parser.parse_args(argv)
    if shutil.which("npm") is None:
        sys.exit("training.datasets.npm_fonts: npm is not installed (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        record = {f"@fontsource/{f}": _vendor_one(f, v, Path(tmp)) for f, v in PACKAGES}
    wanted = {_directory(f, v) for f, v in PACKAGES}
    for stale in FONTS_DIR.iterdir():  # folders of versions no longer pinned
        if stale.is_dir() and stale.name not in wanted:
            shutil.rmtree(stale)
    (FONTS_DIR / "VENDOR.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"packages": len(record), "directory": str(FONTS_DIR)}))


if __name__ == "__main__":
    main()
