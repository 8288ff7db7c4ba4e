"""`python -m bench.perf_analyzer.input_data IMAGE... --out FILE`: perf_analyzer's --input-data
file from your own image files, for the service's `images` input (BYTES, one file per image).

Each file goes as it is (no re-encoding) in perf_analyzer's `b64` form, which perf_analyzer sends
as the tensor's raw bytes: for BYTES, a 4-byte little-endian length and then the file. One step
per file; perf_analyzer's requests cycle through them (with `-b N`, N copies of a step).
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
from pathlib import Path

from PIL import Image, UnidentifiedImageError

__all__ = ["image_steps", "main"]


def image_steps(files: list[bytes]) -> dict[str, list[dict[str, dict[str, str]]]]:
    """The JSON document: `{"data": [{"images": {"b64": ...}}, ...]}`, one step per file."""
    return {
        "data": [
            {"images": {"b64": base64.b64encode(struct.pack("<I", len(f)) + f).decode("ascii")}}
            for f in files
        ]
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.perf_analyzer.input_data", description=__doc__, allow_abbrev=False
    )
    p.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = p.parse_args(argv)
    files = []
    for path in args.images:
        try:
            data = path.read_bytes()
            with Image.open(path) as image:
                image.verify()
        except OSError as exc:  # a missing file, or one Pillow cannot read as an image
            why = "not an image Pillow can read" if isinstance(exc, UnidentifiedImageError) else exc
            print(f"input_data: error: {path}: {why}", file=sys.stderr)
            return 2
        files.append(data)
    args.out.write_text(json.dumps(image_steps(files)), encoding="utf-8")
    print(f"wrote {args.out}: {len(files)} step(s) for the input 'images'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
