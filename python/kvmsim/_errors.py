"""kvmsim's exceptions: a bad scenario, override or grid is an error that says where and why."""

from __future__ import annotations

from typing import Any


class ScenarioError(ValueError):
    """A scenario (or an override of one) that kvmsim cannot load.

    ``str(e)`` is the loader's message, the same line ``kvmsim run`` prints::

        scenarios/seeds/003-zap-gfn-range.json: /mmu/knobs/zap_lock: expected one of "write", ...

    Attributes: ``file`` (the file, or the label of a dict), ``pointer`` (RFC 6901, "" for
    the root and for file or syntax errors), ``message`` (what was expected, without the
    location), ``line`` and ``column`` (syntax errors, else 0), ``kind`` ("located", "file"
    or "syntax") and ``errors`` (every error when the loader found several, each a dict of the
    same fields plus "text").
    """

    def __init__(
        self,
        text: str,
        *,
        file: str = "",
        pointer: str = "",
        message: str = "",
        line: int = 0,
        column: int = 0,
        kind: str = "located",
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(text)
        self.file = file
        self.pointer = pointer
        self.message = message or text
        self.line = line
        self.column = column
        self.kind = kind
        self.errors = errors if errors is not None else [
            {"text": text, "file": file, "pointer": pointer, "message": self.message,
             "line": line, "column": column, "kind": kind}
        ]

    def __reduce__(self):  # keep the attributes through pickling (process pools, Dask)
        return (_rebuild, (type(self), str(self), self.__dict__.copy()))


class GridError(ScenarioError):
    """A sweep grid (or an override) with a bad path or value, found before anything runs.

    ``path`` is the grid's own path (``"vm.vcpus"``), ``value`` the offending value (or None
    when the path itself is wrong); the loader's ``file``, ``pointer`` and ``message`` are kept.
    ``str(e)`` names the path, the value and the loader's complaint; with several bad entries
    it lists each on its own line.
    """

    def __init__(self, text: str, *, path: str | None = None, value: Any = None, **kw: Any) -> None:
        super().__init__(text, **kw)
        self.path = path
        self.value = value


def _rebuild(cls, text, state):
    e = cls.__new__(cls)
    Exception.__init__(e, text)
    e.__dict__.update(state)
    return e


class TraceError(ValueError):
    """A recorded trace kvmsim.import_trace cannot read.

    ``str(e)`` is the message ``kvmsim import-trace`` prints, ``FILE:LINE: MESSAGE``. Attributes:
    ``file``, ``line`` (1-based; 0 when no one line is to blame) and ``message``.
    """

    def __init__(self, text: str, *, file: str = "", line: int = 0, message: str = "") -> None:
        super().__init__(text)
        self.file = file
        self.line = line
        self.message = message or text
