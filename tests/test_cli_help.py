from __future__ import annotations

import argparse

from kmlp.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, prog: str = "kmlp"):
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


def test_every_command_and_option_has_help_text() -> None:
    seen = {}
    for prog, parser in _parsers(build_parser()):
        seen[prog] = parser
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{prog}: option {action.option_strings or action.dest} has no help"
    expected = {
        "train",
        "gradcheck",
        "data",
        "launch",
        "worker",
        "studies",
        "show",
        "export",
        "retrain",
        "dashboard",
        "report",
    }
    assert expected <= {prog.split()[1] for prog in seen if " " in prog}
