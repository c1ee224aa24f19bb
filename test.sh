#!/usr/bin/env bash
# test.sh — run every kvmsim test: release unit tests, the same under address+undefined
# sanitizers, and pytest (tests/python). Rebuilds what changed first. Ends with one line
#   kvmsim: N passed, N failed[, N skipped]
# and exits non-zero if any step failed.
#   KVMSIM_SKIP_SANITIZE=1   skip the sanitizer build (quick local runs; CI always runs it)
#   KVMSIM_SKIP_FUZZ=1       skip the fuzz step (clang + libFuzzer on the scenario loader)
#   KVMSIM_FUZZ_RUNS=N       executions of the fuzz step (default 20000, at most 45 s)
#   CI=<non-empty>           warnings are errors
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh

kvmsim_env

results=()        # LABEL=JUnit-file, for scripts/junit_summary.py
failed_steps=()   # labels of steps that exited non-zero

# collect LABEL DIR: every JUnit file the tests wrote under DIR
collect() {
    local f
    while IFS= read -r f; do results+=("$1=$f"); done < <(find "$2" -name '*.junit.xml' 2>/dev/null | sort)
}

# unit_tests LABEL BUILDDIR [meson setup options...]: configure, compile, meson test
unit_tests() {
    local label=$1 dir=$2
    shift 2
    echo "== $label: $dir"
    if ! kvmsim_meson_setup "$dir" "$@" || ! meson compile -C "$dir"; then
        failed_steps+=("$label")
        return
    fi
    # Drop results of earlier runs so only this run is counted.
    [ -d "$dir/tests" ] && find "$dir/tests" -name '*.junit.xml' -delete
    meson test -C "$dir" --print-errorlogs || failed_steps+=("$label")
    collect "$label" "$dir/tests"
}

# 1. Unit tests, release build.
unit_tests release build --buildtype=release -Dpython=true

# 2. The same tests with AddressSanitizer + UndefinedBehaviorSanitizer.
if [ -n "${KVMSIM_SKIP_SANITIZE:-}" ] && [ "${KVMSIM_SKIP_SANITIZE}" != 0 ]; then
    echo "== sanitize: skipped (KVMSIM_SKIP_SANITIZE=$KVMSIM_SKIP_SANITIZE)"
else
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
        unit_tests sanitize build-asan -Db_sanitize=address,undefined -Dbuildtype=debug -Db_lundef=false
fi

# 3. The scenario loader under libFuzzer with address + undefined sanitizers (clang-14), for a
#    bounded number of executions from the seed and selftest scenarios with a JSON dictionary
#    (README "Fuzzing" runs it longer). A finding (a crash, a sanitizer report, an exception
#    other than a located ScenarioError) fails the step; the input is left in build-fuzz/.
if [ -n "${KVMSIM_SKIP_FUZZ:-}" ] && [ "${KVMSIM_SKIP_FUZZ}" != 0 ]; then
    echo "== fuzz: skipped (KVMSIM_SKIP_FUZZ=$KVMSIM_SKIP_FUZZ)"
elif ! command -v clang++-14 >/dev/null; then
    echo "== fuzz: clang++-14 missing (apt-get install clang-14 libclang-rt-14-dev)"
    failed_steps+=(fuzz)
else
    echo "== fuzz: build-fuzz/fuzz/fuzz_loader"
    if CC=clang-14 CXX=clang++-14 kvmsim_meson_setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
            -Db_lundef=false -Dpython=false -Dtests=false --buildtype=debugoptimized &&
        meson compile -C build-fuzz fuzz/fuzz_loader; then
        corpus="$(mktemp -d)"
        rm -f build-fuzz/fuzz.junit.xml
        if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
            build-fuzz/fuzz/fuzz_loader -runs="${KVMSIM_FUZZ_RUNS:-20000}" -max_total_time=45 -timeout=10 \
                -rss_limit_mb=2048 -dict=fuzz/scenario.dict -print_final_stats=1 -artifact_prefix=build-fuzz/ \
                "$corpus" scenarios/seeds scenarios/selftests tests/data/bad >build-fuzz/fuzz.log 2>&1; then
            fuzz_ok=1
        else
            fuzz_ok=0
        fi
        rm -rf "$corpus"
        "$KVMSIM_PY" scripts/fuzz_junit.py build-fuzz/fuzz.log "$fuzz_ok" build-fuzz/fuzz.junit.xml
        results+=("fuzz=build-fuzz/fuzz.junit.xml")
        [ "$fuzz_ok" = 1 ] || failed_steps+=(fuzz)
    else
        failed_steps+=(fuzz)
    fi
fi

# 4. Python tests (the command, the kvmsim package, the notebooks), once tests/python holds any.
#    The package is imported from the release build (build/python/kvmsim: the built _core and
#    the package's .py files beside it), so nothing is installed.
if [ -n "$(find tests/python -type f -not -path '*/__pycache__/*' -print -quit 2>/dev/null)" ]; then
    echo "== python: pytest tests/python"
    mkdir -p build
    rm -f build/pytest.junit.xml
    PYTHONPATH="$PWD/build/python${PYTHONPATH:+:$PYTHONPATH}" \
        "$KVMSIM_PY" -m pytest tests/python --junitxml=build/pytest.junit.xml || failed_steps+=(python)
    [ -f build/pytest.junit.xml ] && results+=("python=build/pytest.junit.xml")
else
    echo "== python: no tests yet (tests/python is missing or empty)"
fi

# Summary: per-run listing, failing tests, then the single "kvmsim: ..." line.
echo
summary=(scripts/junit_summary.py)
for s in "${failed_steps[@]}"; do summary+=(--failed-step "$s"); done
exec "$KVMSIM_PY" "${summary[@]}" "${results[@]}"
