"""Scenarios from Python: loading (a file or a dict), overrides by the scenario's own paths."""

from __future__ import annotations

import copy
import difflib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union

from . import _core
from ._errors import GridError, ScenarioError

PathLike = Union[str, "os.PathLike[str]"]
ScenarioLike = Union["Scenario", PathLike, Mapping[str, Any]]

#: The label a scenario given as a dict carries in errors and results (unless ``file=`` is given).
DICT_LABEL = "<dict>"


# ---- paths ----------------------------------------------------------------------------------------

def to_pointer(path: str) -> str:
    """The JSON pointer (RFC 6901) of a scenario path.

    A path is the scenario document's own keys joined by dots, array elements by their index:
    ``"mmu.knobs.zap_lock"`` is ``/mmu/knobs/zap_lock``, ``"vm.memslots.0.size"`` is
    ``/vm/memslots/0/size``. A string starting with ``/`` is taken as a pointer already (for
    keys that contain a dot).
    """
    if not isinstance(path, str):
        raise GridError(f"{path!r}: expected a scenario path such as \"vm.vcpus\" (a string), "
                        f"got {type(path).__name__}", path=path)
    if path.startswith("/"):
        return path
    parts = path.split(".")
    if not path or any(p == "" for p in parts):
        raise GridError(f"{path!r}: expected a scenario path such as \"vm.vcpus\" (keys joined by dots)",
                        path=path)
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def plain(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON data (numpy scalars and tuples converted); else a GridError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise GridError(f"{where}: {value!r} is not a JSON number", value=value)
        return float(value)
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        return plain(value.item(), where)  # numpy scalar
    if isinstance(value, Mapping):
        return {str(k): plain(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, where) for v in value]
    raise GridError(f"{where}: {value!r} ({type(value).__name__}) is not JSON data", value=value)


def override_list(overrides: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """[(pointer, plain value)] of an overrides mapping {path: value}, in its order."""
    out: list[tuple[str, Any]] = []
    for path, value in (overrides or {}).items():
        out.append((to_pointer(path), plain(value, f"override {path!r}")))
    return out


def core_overrides(pairs: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    """What _core takes: (pointer, value as JSON text)."""
    return [(p, json.dumps(v)) for p, v in pairs]


# ---- where scenario data lives ----------------------------------------------------------------------

def scenarios_dir() -> Path:
    """The folder holding ``hosts/``, ``seeds/`` and ``schema/``: inside the installed package,
    else the source tree the package was built from."""
    installed = Path(__file__).resolve().parent / "scenarios"
    if (installed / "hosts").is_dir():
        return installed
    return Path(_core.source_dir) / "scenarios"


def host_dirs(extra: Iterable[str] = ()) -> list[str]:
    """Where host profiles are looked up (after ../hosts and ./hosts beside the scenario):
    ``extra``, then $KVMSIM_HOSTS (colon-separated), then the package's or source tree's
    ``scenarios/hosts`` — the same order as the kvmsim command."""
    dirs = [d for d in extra if d]
    dirs += [d for d in os.environ.get("KVMSIM_HOSTS", "").split(":") if d]
    installed = Path(__file__).resolve().parent / "scenarios" / "hosts"
    if installed.is_dir():
        dirs.append(str(installed))
    dirs.append(str(Path(_core.source_dir) / "scenarios" / "hosts"))
    out: list[str] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


# ---- scenarios --------------------------------------------------------------------------------------

class Scenario:
    """A loaded, validated scenario: its document, the overrides applied to every run, and the
    loader's summary of it (``name``, ``variants``, ``model``, ``knobs``, ``vcpus``, ...).

    Made by :func:`kvmsim.load`. ``text`` is exactly what the loader reads (a file's bytes, or
    the JSON of a dict), so results carry the same ``scenario_sha256`` as the command's.
    """

    def __init__(self, text: bytes, file: str, overrides: Mapping[str, Any] | None = None,
                 variant: str | None = None, seed: int | None = None,
                 host_dirs: Iterable[str | os.PathLike[str]] | None = None) -> None:
        self.text = text
        self.file = file
        # Directories searched for host profiles first (load(..., host_dirs=)): a scenario names
        # its profile by a bare name only.
        self.host_dirs: list[str] = check_host_dirs(host_dirs)
        self.overrides: dict[str, Any] = {
            path: plain(value, f"override {path!r}") for path, value in (overrides or {}).items()}
        self.variant = variant
        self.seed = check_seed(seed)
        self.info = self._validate()
        self.doc: dict[str, Any] = json.loads(text)

    def _validate(self) -> dict[str, Any]:
        """Loads every variant with the overrides (errors are ScenarioError / GridError)."""
        pairs = override_list(self.overrides)
        first = load_checked(self, None, self.seed, pairs, dict(self.overrides))
        variants = list(first["variants"])
        if self.variant is not None and self.variant not in variants:
            raise ScenarioError(
                f"{self.file}: no variant {self.variant!r}"
                + (did_you_mean(self.variant, variants) if variants else ": the scenario has no \"variants\""),
                file=self.file, pointer="/variants", message=f"no variant {self.variant!r}")
        info = first
        for v in variants:
            got = load_checked(self, v, self.seed, pairs, dict(self.overrides))
            if v == self.variant:
                info = got
        return info

    # The loader's summary of the scenario (its default variant, overrides applied).
    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def description(self) -> str:
        return self.info["description"]

    @property
    def variants(self) -> list[str]:
        """Every variant, baseline first ([] when the scenario has none)."""
        return list(self.info["variants"])

    @property
    def model(self) -> str:
        return self.info["model"]

    @property
    def knobs(self) -> dict[str, Any]:
        """Every knob of the model, defaults filled in (of the default variant)."""
        return dict(self.info["knobs"])

    @property
    def sha256(self) -> str:
        """SHA-256 of the scenario's bytes (the results' ``scenario_sha256``)."""
        return self.info["sha256"]

    @property
    def resolved_sha256(self) -> str:
        """SHA-256 of the scenario as it runs (default variant): its document with the variant's
        patch and the overrides applied, and its host profile's document; the seed aside."""
        return self.info["resolved_sha256"]

    def with_overrides(self, overrides: Mapping[str, Any] | None = None, **kw: Any) -> Scenario:
        """A copy with more overrides (paths as in :func:`kvmsim.run`), validated now."""
        merged = {**self.overrides, **(overrides or {})}
        return Scenario(self.text, self.file, merged, kw.get("variant", self.variant), kw.get("seed", self.seed),
                        kw.get("host_dirs", self.host_dirs))

    def __repr__(self) -> str:
        extra = f", overrides={self.overrides!r}" if self.overrides else ""
        return f"<kvmsim.Scenario {self.name!r} from {self.file} variants={self.variants!r}{extra}>"

    def __getstate__(self) -> dict[str, Any]:
        return {"text": self.text, "file": self.file, "overrides": self.overrides, "variant": self.variant,
                "seed": self.seed, "host_dirs": self.host_dirs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


def check_host_dirs(dirs: Iterable[str | os.PathLike[str]] | None) -> list[str]:
    if dirs is None:
        return []
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    out = [os.fspath(d) for d in dirs]
    for d in out:
        if not isinstance(d, str) or not d or "\0" in d:
            raise ValueError(f"host_dirs: expected directory paths, got {d!r}")
    return out


def check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if hasattr(seed, "item") and hasattr(seed, "dtype"):
        seed = seed.item()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or seed >= 2**64:
        raise ValueError(f"seed: expected an integer from 0 to 2**64-1, got {seed!r}")
    return seed


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of {', '.join(map(repr, candidates))})"


def load_checked(sc: Scenario, variant: str | None, seed: int | None, pairs: list[tuple[str, Any]],
                 by_path: Mapping[str, Any]) -> dict[str, Any]:
    """_core.load; when it fails and overrides were given, the error names the override at fault."""
    try:
        return _core.load(sc.text, sc.file, variant=variant or None, seed=seed,
                          overrides=core_overrides(pairs), host_dirs=host_dirs(sc.host_dirs))
    except ScenarioError as e:
        if not pairs:
            raise
        raise blame_override(sc, variant, pairs, by_path, e) from None


def blame_override(sc: Scenario, variant: str | None, pairs: list[tuple[str, Any]],
                   by_path: Mapping[str, Any], err: ScenarioError) -> ScenarioError:
    """The error of a load with overrides, as a GridError naming the override(s) at fault: the
    first that fails alone, else (it is their combination) all of them."""
    base_ok = True
    try:
        _core.load(sc.text, sc.file, variant=variant or None, host_dirs=host_dirs(sc.host_dirs))
    except ScenarioError:
        base_ok = False
    if not base_ok:
        return err  # the scenario itself is bad
    paths = list(by_path)
    for (pointer, value), path in zip(pairs, paths):
        try:
            _core.load(sc.text, sc.file, variant=variant or None,
                       overrides=core_overrides([(pointer, value)]), host_dirs=host_dirs(sc.host_dirs))
        except ScenarioError as e:
            return grid_error(f"override {path!r} = {value!r}", e, path=path, value=value)
    desc = ", ".join(f"{p!r} = {v!r}" for p, v in by_path.items())
    return grid_error(f"overrides {desc}", err)


def grid_error(what: str, e: ScenarioError, path: str | None = None, value: Any = None) -> GridError:
    return GridError(f"{what}: {e}", path=path, value=value, file=e.file, pointer=e.pointer,
                     message=e.message, line=e.line, column=e.column, kind=e.kind, errors=e.errors)


# As the command's (sim/scenario/input_file.hpp): only a regular file, at most 64 MiB.
MAX_INPUT_FILE_BYTES = 64 << 20


def read_input_file(path: str) -> bytes:
    """A scenario file's bytes; anything but a regular file (a FIFO would block, /dev/zero never
    ends) or a file over 64 MiB is a ScenarioError naming it."""
    def fail(what: str) -> ScenarioError:
        return ScenarioError(f"{path}: {what}", file=path, message=what, kind="file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        if os.path.isdir(path):
            raise fail("expected a scenario file, got a directory") from None
        raise fail(f"cannot open the file ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a socket" if stat.S_ISSOCK(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
                    else "a block device" if stat.S_ISBLK(st.st_mode) else "not a regular file")
            raise fail(f"expected a scenario file (a regular file), got {kind}")
        if st.st_size > MAX_INPUT_FILE_BYTES:
            raise fail(f"the file is too large ({st.st_size} bytes; the limit is 64M)")
        text = f.read(MAX_INPUT_FILE_BYTES + 1)
        if len(text) > MAX_INPUT_FILE_BYTES:
            raise fail("the file is too large (the limit is 64M)")
        return text


def load(scenario: ScenarioLike, variant: str | None = None, seed: int | None = None,
         overrides: Mapping[str, Any] | None = None, *, file: str | None = None,
         host_dirs: Iterable[str | os.PathLike[str]] | None = None) -> Scenario:
    """Loads and validates a scenario: a file path, a dict (the JSON document) or a Scenario.

    ``variant`` and ``seed`` become the defaults of :func:`kvmsim.run`; ``overrides`` maps the
    scenario's own paths (``"mmu.knobs.zap_lock"``, ``"vm.vcpus"``, ``"host.costs.fault_entry"``)
    to values set after the variant is applied. Every variant is loaded now, so a bad file,
    variant or override raises :class:`kvmsim.ScenarioError` (a :class:`kvmsim.GridError` for an
    override) naming the file, the JSON pointer and what was expected. ``file`` labels a dict
    in errors and locates host profiles beside it. ``host_dirs``: directories searched first for
    the scenario's host profile (a scenario names it by a bare name, never a path); kept by the
    Scenario for every run, sweep and comparison of it.
    """
    if isinstance(scenario, Scenario):
        if variant is None and seed is None and not overrides and host_dirs is None:
            return scenario
        return scenario.with_overrides(overrides, **({"variant": variant} if variant is not None else {}),
                                       **({"seed": seed} if seed is not None else {}),
                                       **({"host_dirs": check_host_dirs(host_dirs)} if host_dirs is not None else {}))
    if isinstance(scenario, Mapping):
        label = file or DICT_LABEL
        try:
            text = json.dumps(copy.deepcopy(dict(scenario)), indent=2, ensure_ascii=False,
                              allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise ScenarioError(f"{label}: the scenario is not JSON data: {e}", file=label,
                                message=f"the scenario is not JSON data: {e}", kind="file") from None
        return Scenario(text, label, overrides, variant, seed, host_dirs)
    if isinstance(scenario, (str, os.PathLike)):
        path = os.fspath(scenario)
        text = read_input_file(path)
        return Scenario(text, file or path, overrides, variant, seed, host_dirs)
    raise TypeError(f"expected a scenario file path, a dict or a kvmsim.Scenario, got {type(scenario).__name__}")
