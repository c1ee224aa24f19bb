"""The `kvmsim` command of an installed package: runs the kvmsim executable shipped inside it
(or, from a build tree, BUILD/sim/kvmsim) with the package's host profiles on KVMSIM_HOSTS."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import _core
from ._scenario import scenarios_dir


def executable() -> Path:
    """The kvmsim executable: the one installed in the package, else the build tree's."""
    for candidate in (Path(__file__).resolve().parent / "kvmsim", Path(_core.build_dir) / "sim" / "kvmsim"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("the kvmsim executable is not installed with this package "
                            f"(looked in {Path(__file__).resolve().parent} and {_core.build_dir}/sim)")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    exe = executable()
    env = dict(os.environ)
    hosts = str(scenarios_dir() / "hosts")
    env["KVMSIM_HOSTS"] = ":".join(d for d in (env.get("KVMSIM_HOSTS", ""), hosts) if d)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(exe, [str(exe), *args], env)


if __name__ == "__main__":
    main()
