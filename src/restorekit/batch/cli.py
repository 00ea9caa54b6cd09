"""``restorekit report merge OUT.json SHARD.json...``: one report from the shards of a restore run.

Needed when the shards ran as separate jobs (a Slurm array, Kubernetes) and none of them found all
the others' files when it finished, or after a shard was rerun.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    merge = sub.add_parser("merge", help="merge shard reports (FILE.rank<K>.json) into one report")
    merge.add_argument("output", metavar="OUT.json", help="the merged report to write")
    merge.add_argument("shards", nargs="+", metavar="SHARD.json", help="every shard's report, each once")


def run(args: argparse.Namespace) -> int:
    from .report import merge_files

    merged = merge_files(args.output, args.shards)
    totals = merged["totals"]
    state = "complete" if merged["complete"] else f"incomplete ({totals['unreported']} inputs not reported)"
    print(f"{args.output}: {merged['shards']} shards, {merged['inputs']} inputs, {state}: done {totals['done']}, "
          f"skipped {totals['skipped']}, failed {totals['failed']}")
    return 1 if totals["failed"] or not merged["complete"] else 0
