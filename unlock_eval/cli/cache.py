"""`unlock-eval cache list|prune`: the artifact cache's entries; the work is unlock_eval.cache_admin's."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    cache_sub = p.add_subparsers(dest="cache_command", required=True)
    cache_list = cache_sub.add_parser("list", help="every cache entry: kind, size, last use, what it is")
    prune = cache_sub.add_parser("prune", help="remove entries by kind and/or age (entries in use are skipped)")
    for sub in (cache_list, prune):
        sub.add_argument("--cache-dir", default=None, help="default: UNLOCK_EVAL_CACHE_DIR or the user cache")
        sub.add_argument("--kind", action="append", help="only this kind (repeatable), e.g. merged, converted, states")
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="only entries unused for DAYS days")
    prune.add_argument("--all", action="store_true", help="every entry (with --kind/--older-than: all that match)")
    prune.add_argument("--dry-run", action="store_true", help="only say what would be removed")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from unlock_eval import cache_admin

    root = cache_admin.admin_root(args.cache_dir)
    if args.cache_command == "list":
        print(cache_admin.format_list(cache_admin.list_entries(root, args.kind), root))
    else:
        removed, skipped = cache_admin.prune(root, args.kind, args.older_than, args.all, args.dry_run)
        print(cache_admin.format_prune(removed, skipped, args.dry_run))
    return 0
