"""``.. nnkd-cli::`` — the CLI reference, rendered from ``nnkd.cli.build_parser()`` so it can
never drift from the command: one section per command (and per ``nnkd bench`` sub-command)
with its usage and options as ``--help`` prints them."""

from __future__ import annotations

import argparse

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:                       # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


class CliReference(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from nnkd.cli import build_parser

        root = build_parser()
        out = [self._section("nnkd", root)]
        for name, sub in _subcommands(root):
            out.append(self._section(f"nnkd {name}", sub))
            for inner, subsub in _subcommands(sub):
                out.append(self._section(f"nnkd {name} {inner}", subsub))
        return out

    def _section(self, title: str, parser: argparse.ArgumentParser) -> nodes.section:
        section = nodes.section(ids=[nodes.make_id(title)])
        section += nodes.title(text=title)
        if parser.description:
            section += nodes.paragraph(text=parser.description.split("\n\n")[0])
        parser.prog = title
        text = parser.format_help()
        section += nodes.literal_block(text, text)
        return section


def setup(app):
    app.add_directive("nnkd-cli", CliReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
