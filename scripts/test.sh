#!/usr/bin/env bash
# Builds and installs tinyconv, then runs every test: the C++ unit tests under ctest (each
# kernel against its naive reference, on both SIMD paths) and pytest (parity with PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install ".[test]"

cmake -S . -B build/tests -DCMAKE_BUILD_TYPE=Release -DTINYCONV_BUILD_TESTS=ON \
  -DTINYCONV_BUILD_PYTHON=OFF
cmake --build build/tests -j 2
ctest --test-dir build/tests --output-on-failure

# The tests import the installed package (the sources sit under python/, off sys.path).
python -m pytest
