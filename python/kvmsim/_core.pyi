# Type stubs for kvmsim._core, the C++ core (python/kvmsim/_core.cpp).
__version__: str
build_id: str  # SHA-256 of the sources and compiler the core was built from (scripts/source_id.py)
source_dir: str
build_dir: str

def load(
    text: str | bytes,
    file: str,
    *,
    variant: str | None = None,
    seed: int | None = None,
    overrides: list[tuple[str, str]] = ...,
    host_dirs: list[str] = ...,
) -> dict[str, object]: ...
def run(
    text: str | bytes,
    file: str,
    *,
    variant: str | None = None,
    seed: int | None = None,
    overrides: list[tuple[str, str]] = ...,
    host_dirs: list[str] = ...,
) -> str: ...
def metrics(result_json: str, ordered: bool = True) -> list[tuple[str, str, float]]: ...
def compare_values(
    scenario: str,
    selftest_metrics: list[str],
    variants: list[str],
    seeds: list[int],
    values: list[list[list[tuple[str, str, float]]]],
) -> tuple[str, str]: ...
def import_trace(
    path: str,
    *,
    model: str | None = None,
    host: str | None = None,
    backing: str | None = None,
    name: str | None = None,
    window: str | None = None,
) -> str: ...
def t95(df: int) -> float: ...
def runs_in_progress() -> int: ...
