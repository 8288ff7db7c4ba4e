"""`python -m model_store`: inspect and manage a store from the shell."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from model_store.errors import StoreError
from model_store.store import ENV_VAR, ModelStore

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """No abbreviated long options (argparse's default takes `--thread` for `--threads`), so a
    misspelt option is an error; subcommands' parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m model_store",
        description="Inspect and manage versioned JEM checkpoints.",
    )
    parser.add_argument(
        "--store",
        "--root",  # the older spelling; --store is the one every CLI of the project takes
        dest="root",
        help=f"store root (default: ${ENV_VAR}, else the shipped store)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="models, their versions, stages and aliases")
    show = commands.add_parser("show", help="print a version's manifest as JSON")
    show.add_argument("ref", help='"name", "name:3" or "name:alias"')
    verify = commands.add_parser("verify", help="check every file's size and sha256")
    verify.add_argument("ref")
    alias = commands.add_parser("alias", help="set, show or delete an alias")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", nargs="?", type=int, help="omit to print the alias's version")
    alias.add_argument("--delete", action="store_true", help="remove the alias")
    delete = commands.add_parser("delete", help="delete one version (name:VERSION)")
    delete.add_argument("ref")
    delete.add_argument("--force", action="store_true", help="also remove aliases pointing at it")
    export = commands.add_parser(
        "export",
        help="copy versions (same numbers, verified) into another store, e.g. a deployment's",
    )
    export.add_argument("dest", help="the store to copy into (created if missing)")
    export.add_argument("refs", nargs="+", metavar="REF", help='"name" (latest), "name:3", ...')
    return parser


def _export(store: ModelStore, dest_root: str, refs: list[str]) -> None:
    from model_store.export import export

    for done in export(store, ModelStore(dest_root), refs):
        aliases = f", aliases {', '.join(done.aliases)}" if done.aliases else ""
        what = "already there, verified" if done.already_there else "exported, verified"
        mib = done.size / 2**20
        print(f"{done.ref}: {done.files} files, {mib:.1f} MiB {what}{aliases}")


def _list(store: ModelStore) -> None:
    names = store.list_models()
    if not names:
        print(f"no models in {store.root}")
    for name in names:
        by_version: dict[int, list[str]] = {}
        for alias, version in store.aliases(name).items():
            by_version.setdefault(version, []).append(alias)
        print(name)
        for version in store.list_versions(name):
            manifest = store.manifest(f"{name}:{version}")
            aliases = ", ".join(sorted(by_version.get(version, [])))
            created = manifest.created_at.strftime("%Y-%m-%d %H:%M:%SZ")
            line = f"  {version:>4}  {manifest.stage:<10}  {created}  {manifest.backbone.name}"
            print(line + (f"  [{aliases}]" if aliases else ""))


def _run(args: argparse.Namespace) -> None:
    store = ModelStore(args.root)
    if args.command == "list":
        _list(store)
    elif args.command == "show":
        sys.stdout.write(store.manifest(args.ref).to_json().decode())
    elif args.command == "verify":
        ref = store.resolve(args.ref)
        manifest = store.verify(ref)
        print(f"ok: {ref} ({len(manifest.files)} files match the manifest)")
    elif args.command == "alias":
        if args.delete:
            store.delete_alias(args.name, args.alias)
            print(f"deleted {args.name}:{args.alias}")
        elif args.version is None:
            print(store.resolve(f"{args.name}:{args.alias}").version)
        else:
            store.set_alias(args.name, args.alias, args.version)
            print(f"{args.name}:{args.alias} -> {args.version}")
    elif args.command == "delete":
        print(f"deleted {store.delete(args.ref, force=args.force)}")
    elif args.command == "export":
        _export(store, args.dest, args.refs)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _run(args)
        sys.stdout.flush()
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `... | head` stopped reading: not an error, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
