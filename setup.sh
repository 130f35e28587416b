#!/usr/bin/env bash
# Set up a fresh machine: build tools (system packages where missing) and .venv with the project.
# Usage: ./setup.sh [extras]   e.g. ./setup.sh pipeline,test   (analysis only: ./setup.sh "")
# Extras (pyproject.toml): analysis, pipeline, hf, gpu, store (push / runs=union), cluster (profiles/slurm), test
set -euo pipefail
extras="${1-pipeline}"
cd "$(dirname "$0")"

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null || missing+=(g++)
command -v patch >/dev/null || missing+=(patch)
command -v ccache >/dev/null || missing+=(ccache)  # optional: a rebuild takes seconds instead of minutes
if ((${#missing[@]})) && [[ "$extras" == *pipeline* ]]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null; then
    $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
      || echo "setup.sh: could not install ${missing[*]}; install them yourself (ccache is optional)" >&2
  else
    echo "setup.sh: please install ${missing[*]} (ccache is optional)" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
spec="."; [ -n "$extras" ] && spec=".[${extras}]"
.venv/bin/python -m pip install --quiet -e "$spec"
echo "setup.sh: ready (.venv, extras: ${extras:-none})"
