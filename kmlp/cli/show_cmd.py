"""``kmlp studies | show``: what a storage holds and how a study stands (read only).

Parsing only; the summaries come from ``study`` (its one record of a study).
"""

from __future__ import annotations

import argparse

from kmlp.cli.common import print_json
from kmlp.cli.options import add_json, add_storage, add_study
from kmlp.storage import display_url, open_storage, resolve_url
from kmlp.study import format_studies, format_summary, storage_summaries, study_summary
from kmlp.study.access import load, only_study_name


def add_studies_arguments(p: argparse.ArgumentParser) -> None:
    add_storage(p)
    add_json(p, what="every study's summary (stages, best lambda, retrains)")


def add_show_arguments(p: argparse.ArgumentParser) -> None:
    add_study(p, required=False, help="study name (default: the storage's only study)")
    add_storage(p)
    add_json(p, what="the study's summary (stages, best lambda, retrains, progress)")


def run_studies(args: argparse.Namespace) -> int:
    rdb = open_storage(args.storage, create=False)
    summaries = storage_summaries(rdb)
    if args.json:
        studies = [s.to_dict() for s in summaries]
        print_json({"storage": display_url(rdb.url), "studies": studies})
    else:
        print(format_studies(summaries))
    return 0


def run_show(args: argparse.Namespace) -> int:
    url = resolve_url(args.storage)
    rdb = open_storage(url, create=False)
    name = args.study if args.study is not None else only_study_name(rdb)
    summary = study_summary(load(name, storage=rdb))
    if args.json:
        print_json({"storage": display_url(url), **summary.to_dict()})
    else:
        print(f"study {summary.name} in {display_url(url)}")
        print(format_summary(summary))
    return 0
