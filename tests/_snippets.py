"""Run the code blocks of one Markdown page in order, in the current directory.

``python tests/_snippets.py PAGE.md``: Python blocks share one namespace (a page reads as one
session), bash blocks run with ``bash -euo pipefail`` with this interpreter's ``bin/`` first on
``PATH`` (so ``nnkd`` and ``python`` are the ones under test). A block preceded by
``<!-- snippet: skip (reason) -->`` is skipped; the reason is required. Each bash block runs in
its own process group, which is killed afterwards, so a server a block started in the
background cannot outlive it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w+)\s*$")
SKIP = re.compile(r"^<!-- snippet: skip \((?P<reason>[^)]+)\) -->$")
LANGUAGES = ("python", "bash")


@dataclass
class Block:
    language: str
    code: str
    line: int               # 1-based line of the opening fence
    skip_reason: str | None


def blocks(path: Path) -> list[Block]:
    """The ``python`` and ``bash`` fenced blocks of ``path``, with their skip markers."""
    lines = path.read_text().splitlines()
    out, i, previous = [], 0, ""
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start + 1}: unclosed code block")
        i += 1
        skip = SKIP.match(previous)
        if match.group(1) in LANGUAGES:
            out.append(Block(match.group(1), "\n".join(body) + "\n", start + 1, skip and skip.group("reason")))
        elif previous.startswith("<!-- snippet"):
            raise ValueError(f"{path}:{start + 1}: a snippet marker before a {match.group(1)} block")
        previous = ""
    return out


def run(path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "MPLBACKEND": "Agg"}
    namespace: dict = {"__name__": "__main__"}
    for block in blocks(path):
        where = f"{path.name}:{block.line}"
        if block.skip_reason is not None:
            print(f"{where}: skipped ({block.skip_reason})", file=sys.stderr)
            continue
        print(f"{where}: {block.language}", file=sys.stderr, flush=True)
        if block.language == "python":
            exec(compile(block.code, where, "exec"), namespace)
            continue
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.code], env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=300)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if code != 0:
            raise SystemExit(f"{where}: the bash block exited with status {code}")


if __name__ == "__main__":
    run(Path(sys.argv[1]).resolve())
