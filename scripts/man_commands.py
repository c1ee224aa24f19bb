#!/usr/bin/env python3
"""The help2man include file of kvmsim's man page: the static sections of sim/cli/kvmsim.h2m and
a COMMANDS section with each command's own `kvmsim COMMAND --help` (options and examples), as
preformatted text. Run by meson (sim/cli/meson.build) after building kvmsim; help2man makes the
rest of the page from `kvmsim --help` and `kvmsim --version`.

    man_commands.py KVMSIM STATIC.h2m OUT.h2m
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def commands(kvmsim: str) -> list[str]:
    """The commands `kvmsim --help` lists under "Subcommands:", in its order."""
    text = subprocess.run([kvmsim, "--help"], capture_output=True, text=True, check=True).stdout
    section = text.split("\nSubcommands:\n", 1)[1].split("\n\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^  (\S+)", section, re.M)]


def roff(text: str) -> str:
    """Plain text as roff lines: backslashes and hyphens escaped, no line read as a request."""
    out = []
    for line in text.rstrip("\n").split("\n"):
        line = line.replace("\\", "\\e").replace("-", "\\-")
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    kvmsim, static, out = argv[1], Path(argv[2]), Path(argv[3])
    parts = [static.read_text().rstrip("\n"), "", "[COMMANDS]"]
    for cmd in commands(kvmsim):
        help_text = subprocess.run([kvmsim, cmd, "--help"], capture_output=True, text=True, check=True).stdout
        parts += [f'.SS "kvmsim {cmd}"', ".nf", roff(help_text), ".fi"]
    out.write_text("\n".join(parts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
