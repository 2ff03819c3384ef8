#!/usr/bin/env bash
# Download the wheels that benchmarks/gpu_check.sh installs on a GPU host with no package index:
# optuna and its dependencies (alembic, sqlalchemy, colorlog, tqdm, pyyaml, packaging, Mako,
# MarkupSafe, greenlet, typing-extensions), plus pydantic, which seqlab's config needs, for
# CPython 3.12 on manylinux x86_64. pandas and torch are expected on the host already.
#   bash benchmarks/fetch_wheels.sh                    # -> benchmarks/wheels/ (gitignored)
#   PYVER=3.11 bash benchmarks/fetch_wheels.sh         # another Python
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
ABI="cp${PYVER/./}"
DEST=${DEST:-benchmarks/wheels}
mkdir -p "$DEST"
PIP=${PIP:-python3 -m pip}
# Binary wheels only (a --platform download must be), several manylinux tags so that every
# package finds its own. pip resolves the versions together (pydantic pins pydantic-core), so
# numpy comes along too; gpu_check.sh keeps the host's own numpy.
$PIP download --dest "$DEST" --only-binary=:all: \
  --python-version "$PYVER" --implementation cp --abi "$ABI" --abi abi3 --abi none \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any \
  optuna alembic sqlalchemy colorlog tqdm pyyaml packaging Mako MarkupSafe greenlet \
  typing-extensions pydantic pydantic-core annotated-types typing-inspection \
  pytest pluggy iniconfig pytest-timeout \
  2>&1 | grep -v "is ignored: it is neither" || true
ls "$DEST" | grep -c '\.whl$' | xargs printf '%s wheels in '"$DEST"'\n'
for pkg in optuna alembic sqlalchemy colorlog tqdm pyyaml packaging mako markupsafe greenlet \
           typing_extensions pydantic pydantic_core annotated_types typing_inspection \
           pytest pluggy iniconfig pytest_timeout; do
  ls "$DEST" | sed 's/-.*//' | tr 'A-Z-' 'a-z_' | grep -qx "$pkg" \
    || { echo "missing wheel: $pkg" >&2; exit 1; }
done
