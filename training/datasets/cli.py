"""``python -m training data emoji --out DIR``: build a data set folder from Debian packages."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from training.datasets.emoji import (
    DEFAULT_EMOJI_TEST,
    DEFAULT_FONT,
    HELD_OUT_GROUPS,
    EmojiBuildError,
    build_emoji_dataset,
)

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "data",
        help="build a real data set as an image folder (emoji from Debian packages)",
        description=__doc__,
    )
    p.add_argument("name", choices=["emoji"], help="which data set")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not hold one)")
    p.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    p.add_argument("--font", type=Path, default=DEFAULT_FONT, help="NotoColorEmoji.ttf")
    p.add_argument("--emoji-test", type=Path, default=DEFAULT_EMOJI_TEST, help="emoji-test.txt")
    p.add_argument(
        "--held-out",
        action="append",
        default=None,
        metavar="GROUP",
        help="emoji group written as OOD folders (repeatable; default: "
        + ", ".join(HELD_OUT_GROUPS)
        + ")",
    )
    p.add_argument("--limit", type=int, default=0, help="keep N emoji per group (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out val/test halves")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    command = shlex.join(["python", "-m", "training", *sys.argv[1:]])
    try:
        record = build_emoji_dataset(
            args.out,
            size=args.size,
            font_path=args.font,
            emoji_test=args.emoji_test,
            held_out=tuple(args.held_out or HELD_OUT_GROUPS),
            limit=args.limit,
            seed=args.seed,
            command=command,
        )
    except EmojiBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    classes = ", ".join(f"{k} {v}" for k, v in record["classes"].items())
    ood = ", ".join(f"{k} {v['val']}+{v['test']}" for k, v in record["ood"].items())
    print(f"wrote {args.out}/train ({sum(record['classes'].values())} images: {classes})")
    print(f"wrote {args.out}/ood/{{val,test}} (held out, val+test: {ood})")
    return 0
