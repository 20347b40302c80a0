#!/usr/bin/env bash
# Installs everything the tests need, then runs every test of the workspace.
#   bash scripts/test.sh
# Needs: cargo (rustup), python3 with pip. Installs: the PyPI packages in
# scripts/requirements-test.txt. Generates the ONNX backend node tests into .cache/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing Python test dependencies"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/requirements-test.txt

echo "== generating ONNX backend node tests into .cache/onnx-node-tests"
python3 scripts/gen_node_tests.py .cache/onnx-node-tests

echo "== cargo test --workspace"
cargo test --workspace --locked
