# shellcheck shell=bash
# scripts/env.sh — the one place that knows how kvmsim's build environment is made.
#
# Sourced (never executed) by setup.sh and test.sh, which both run `kvmsim_env` first, so that
# test.sh works right after setup.sh on a fresh machine and both use the same Python.
#
#   kvmsim_env                  install what is missing (quick when nothing is), choose the
#                               Python, put its meson/ninja first on PATH, export KVMSIM_PY
#   kvmsim_meson_setup DIR ARGS configure DIR if it is not configured yet; reconfigure it only
#                               when its werror setting does not match $CI
#
# Environment:
#   CI             non-empty: warnings are errors (-Dwerror=true)
#   KVMSIM_PYTHON  base interpreter to use instead of `python3` (default: python3)
#
# Python choice: an existing project venv (.venv) is always used, so a fallback made once is
# used consistently afterwards. Otherwise the base python3 is used directly, unless pip would
# refuse to install into it (PEP 668 "externally managed", e.g. Debian's /usr/bin/python3) or
# it has no pip; then .venv is created from it and used.

KVMSIM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KVMSIM_VENV="$KVMSIM_ROOT/.venv"

# Debian packages: the compiler, ninja, the C++ libraries meson.build looks for (CLI11 for the
# command line), help2man (the man page, made from `kvmsim --help`). Debian's
# python3 also gets python3-venv and python3-dev (Python.h) when it is the interpreter used.
# chromium: tests/python/test_report.py renders `kvmsim report`'s HTML headless (skipped without it).
# clang-14 and libclang-rt-14-dev (its sanitizer and libFuzzer runtimes): test.sh's fuzz step.
KVMSIM_APT_PACKAGES=(g++ ninja-build pkg-config libboost-graph-dev nlohmann-json3-dev catch2 libcli11-dev help2man git chromium clang-14 libclang-rt-14-dev)
# PyPI packages (Debian's are too old or missing). "ninja" is added only when no ninja is on PATH.
# The build: meson, meson-python, pybind11. The tests: pytest, jsonschema. The Python package
# (python/kvmsim) and its notebooks: pandas, tqdm, pyarrow (frames to Parquet), matplotlib, dask + distributed (a sweep on a
# Dask cluster), nbclient + nbformat + ipykernel (test.sh executes the notebooks), ipywidgets
# (a sweep's progress bar as a notebook widget).
KVMSIM_PIP_REQUIREMENTS=("meson>=1.0" "meson-python>=0.15" "pybind11>=2.11" "pytest" "jsonschema>=4"
                         "pandas>=1.5" "tqdm>=4.60" "pyarrow>=10" "matplotlib>=3.5" "dask>=2022.1" "distributed>=2022.1"
                         "nbclient>=0.7" "nbformat>=5.7" "ipykernel>=6" "ipywidgets>=8")

kvmsim_log() { echo "kvmsim: $*" >&2; }
kvmsim_die() { echo "kvmsim: error: $*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo.
kvmsim_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        kvmsim_die "need root to run: $* (not root and no sudo)"
    fi
}

# Install the given Debian packages that are not installed yet; apt-get update only if needed.
kvmsim_apt_ensure() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        kvmsim_log "warning: not a Debian system; make sure these (or equivalents) are installed: $*"
        return 0
    fi
    local status missing=() p
    status="$(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null || true)"
    for p in "$@"; do
        grep -qxF "$p install ok installed" <<<"$status" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    kvmsim_log "installing Debian packages: ${missing[*]}"
    kvmsim_as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    kvmsim_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
}

# Ask an interpreter about itself. Prints lines:
#   pip ok|externally-managed|missing   whether `pip install` into it would work
#   executable PATH                     the interpreter itself (resolves pyenv shims etc.)
#   scripts DIR                         where its console scripts (meson, ninja) go
#   userscripts DIR                     same for `pip install --user`
#   headers ok|missing DIR              whether DIR (its include directory) has Python.h, which
#                                       building kvmsim's _core needs
#   version X.Y                         its version
#   base_prefix DIR                     the prefix of the installation (a venv's base): /usr
#                                       for Debian's own Python
#   missing REQ                         each requirement REQ (name or name>=version) not satisfied
kvmsim_py_probe() {
    "$1" - "${@:2}" <<'EOF'
import importlib.metadata as md
import importlib.util
import os
import re
import sys
import sysconfig

def vtuple(s):
    out = []
    for part in s.split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
        if m.end() != len(part):
            break
    return out

def older(have, need):
    a, b = vtuple(have), vtuple(need)
    n = max(len(a), len(b))
    return a + [0] * (n - len(a)) < b + [0] * (n - len(b))

in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
if importlib.util.find_spec("pip") is None:
    print("pip missing")
elif not in_venv and os.path.exists(marker):
    print("pip externally-managed")
else:
    print("pip ok")
print("executable", sys.executable)
print("scripts", sysconfig.get_path("scripts"))
print("userscripts", sysconfig.get_path("scripts", f"{os.name}_user"))
include = sysconfig.get_paths()["include"]
print("headers", "ok" if os.path.isfile(os.path.join(include, "Python.h")) else "missing", include)
print("version", "%d.%d" % sys.version_info[:2])
print("base_prefix", sys.base_prefix)
for req in sys.argv[1:]:
    name, _, minimum = req.partition(">=")
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        print("missing", req)
        continue
    if minimum and older(have, minimum):
        print("missing", req)
EOF
}

# The Debian package with the Python.h an interpreter lacks, from its probe: nothing when it has
# its headers (a pyenv, conda or python.org build ships its own), python3-dev for Debian's
# default python3, pythonX.Y-dev for another Debian python3.X. Fails (status 1) for an
# interpreter without headers that is not Debian's.
kvmsim_header_package() {
    local probe=$1 version default
    grep -q "^headers ok" <<<"$probe" && return 0
    [ "$(sed -n 's/^base_prefix //p' <<<"$probe")" = /usr ] && command -v dpkg-query >/dev/null 2>&1 || return 1
    version="$(sed -n 's/^version //p' <<<"$probe")"
    default="$(readlink -f /usr/bin/python3 2>/dev/null || true)"
    if [ "$default" = "/usr/bin/python$version" ]; then echo python3-dev; else echo "python$version-dev"; fi
}

# Makes sure the chosen interpreter (probe: its kvmsim_py_probe output) has Python.h.
kvmsim_python_headers() {
    local py=$1 probe=$2 pkg include
    grep -q "^headers ok" <<<"$probe" && return 0
    include="$(sed -n 's/^headers missing //p' <<<"$probe")"
    pkg="$(kvmsim_header_package "$probe")" ||
        kvmsim_die "$py has no Python.h (in $include), which building kvmsim's Python package needs: install" \
                   "that interpreter's development headers, or pick another with KVMSIM_PYTHON=/path/to/python3"
    kvmsim_apt_ensure "$pkg"
    [ -f "$include/Python.h" ] || kvmsim_die "$py still has no $include/Python.h after installing $pkg"
}

kvmsim_make_venv() {
    local base=$1
    kvmsim_log "creating the project venv $KVMSIM_VENV (pip may not install into $base)"
    "$base" -m venv "$KVMSIM_VENV" ||
        kvmsim_die "could not create $KVMSIM_VENV with $base (on Debian: apt-get install python3-venv)"
}

kvmsim_env() {
    local base="${KVMSIM_PYTHON:-python3}" apt=("${KVMSIM_APT_PACKAGES[@]}") resolved="" pkg
    # Debian's python3 (or none at all): make sure it exists, can create the fallback venv and
    # has the headers _core is built with (python3-dev), in one apt-get run.
    if [ ! -x "$KVMSIM_VENV/bin/python" ]; then
        resolved="$(command -v "$base" 2>/dev/null || true)"
        [ -n "$resolved" ] && resolved="$(readlink -f "$resolved")"
        case "$resolved" in
            "") apt+=(python3 python3-venv python3-dev) ;;
            /usr/bin/python3*)
                apt+=(python3 python3-venv)
                if pkg="$(kvmsim_header_package "$(kvmsim_py_probe "$resolved")")" && [ -n "$pkg" ]; then
                    apt+=("$pkg")
                fi
                ;;
        esac
    fi
    kvmsim_apt_ensure "${apt[@]}"

    local py probe
    if [ -x "$KVMSIM_VENV/bin/python" ]; then
        py="$KVMSIM_VENV/bin/python"
    else
        command -v "$base" >/dev/null 2>&1 || kvmsim_die "no $base found"
        probe="$(kvmsim_py_probe "$base")"
        py="$(sed -n 's/^executable //p' <<<"$probe")"
        if ! grep -qx "pip ok" <<<"$probe"; then
            kvmsim_make_venv "$py"
            py="$KVMSIM_VENV/bin/python"
        fi
    fi

    local reqs=("${KVMSIM_PIP_REQUIREMENTS[@]}") missing=() line log
    probe="$(kvmsim_py_probe "$py" "${reqs[@]}")"
    kvmsim_python_headers "$py" "$probe"   # (a venv's are its base interpreter's)
    kvmsim_path_from_probe "$probe"
    command -v ninja >/dev/null 2>&1 || { reqs+=(ninja); missing+=(ninja); }
    while read -r line; do
        if [[ "$line" == "missing "* ]]; then missing+=("${line#missing }"); fi
    done <<<"$probe"

    if [ "${#missing[@]}" -gt 0 ]; then
        kvmsim_log "installing from PyPI into $py: ${missing[*]}"
        log="$(mktemp)"
        if ! "$py" -m pip install --disable-pip-version-check "${missing[@]}" 2>&1 | tee "$log"; then
            if grep -q "externally-managed-environment" "$log" && [ "$py" != "$KVMSIM_VENV/bin/python" ]; then
                rm -f "$log"
                kvmsim_make_venv "$py"
                py="$KVMSIM_VENV/bin/python"
                # A new venv has nothing yet: install every requirement.
                "$py" -m pip install --disable-pip-version-check "${reqs[@]}" ||
                    kvmsim_die "pip install into $KVMSIM_VENV failed"
            else
                rm -f "$log"
                kvmsim_die "pip install failed: ${missing[*]}"
            fi
        fi
        rm -f "$log"
        probe="$(kvmsim_py_probe "$py" "${reqs[@]}")"
        kvmsim_path_from_probe "$probe"
        if grep -q "^missing " <<<"$probe"; then
            kvmsim_die "still not satisfied after pip install: $(grep '^missing ' <<<"$probe" | cut -d' ' -f2- | tr '\n' ' ')"
        fi
    fi
    command -v meson >/dev/null 2>&1 || kvmsim_die "meson not found on PATH after installing it"
    command -v ninja >/dev/null 2>&1 || kvmsim_die "ninja not found on PATH after installing it"
    export KVMSIM_PY="$py"
}

# Put the interpreter's script directories (meson, pip's ninja) first on PATH.
kvmsim_path_from_probe() {
    local dir
    dir="$(sed -n 's/^userscripts //p' <<<"$1")"
    [ -n "$dir" ] && [ -d "$dir" ] && case ":$PATH:" in *":$dir:"*) ;; *) PATH="$dir:$PATH" ;; esac
    dir="$(sed -n 's/^scripts //p' <<<"$1")"
    [ -n "$dir" ] && case ":$PATH:" in *":$dir:"*) ;; *) PATH="$dir:$PATH" ;; esac
    export PATH
}

# kvmsim_meson_setup DIR [meson setup options...]
# Configures DIR if it is not configured yet. Warnings are errors when $CI is non-empty. An
# existing DIR is reconfigured when its werror setting or any option given here (-Dname=value,
# --name=value) differs from what it was configured with (e.g. build/ from before -Dpython=true).
kvmsim_meson_setup() {
    local dir=$1 want=false stale
    shift
    [ -n "${CI:-}" ] && want=true
    if [ ! -f "$dir/meson-private/coredata.dat" ] || [ ! -f "$dir/meson-info/intro-buildoptions.json" ]; then
        meson setup "$dir" "$@" -Dwerror="$want"
        return
    fi
    stale="$("$KVMSIM_PY" - "$dir/meson-info/intro-buildoptions.json" -Dwerror="$want" "$@" <<'EOF'
import json
import sys

current = {o["name"]: o["value"] for o in json.load(open(sys.argv[1]))}

def norm(v):
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return ",".join(map(str, v))
    return str(v)

stale = []
for arg in sys.argv[2:]:
    if not arg.startswith(("-D", "--")) or "=" not in arg:
        continue
    name, _, value = arg[2:].partition("=")
    if name in current and norm(current[name]) != value:
        stale.append(f"{name}={value}")
print(" ".join(stale))
EOF
)"
    if [ -n "$stale" ]; then
        kvmsim_log "reconfiguring $dir: $stale"
        meson setup --reconfigure "$dir" "$@" -Dwerror="$want"
    fi
}
