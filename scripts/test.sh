#!/usr/bin/env bash
# The test suite behind `make test`: library tests, then a quick build of the
# whole book (every chapter executed on a small subset, Sphinx warnings as
# errors), then the browser test of the built site and every chapter executed
# as in Colab (tests/test_colab.py).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== library tests"
$BIN/python -m pytest -q -m "not book"

echo "== quick book build"
bash scripts/build_book.sh quick

echo "== book tests (built site in a browser; chapters as in Colab)"
BOOK_HTML=_build/quick/_build/html $BIN/python -m pytest -q -m book
