#!/usr/bin/env bash
# Build the book.  Usage: scripts/build_book.sh full|quick
#   full   every chapter trains for real        -> _build/html
#   quick  1 epoch on a small subset, no claims -> _build/quick/_build/html
# Sphinx warnings are errors (-W --keep-going); a failing cell fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-full}"
BIN=.venv/bin
# Static output: one log line per epoch instead of live progress bars.
export MNIST_PROGRESS=static
case "$MODE" in
  full)  export MNIST_BOOK_QUICK=0; OUT=. ;;
  quick) export MNIST_BOOK_QUICK=1; OUT=_build/quick ;;
  *) echo "usage: $0 full|quick" >&2; exit 2 ;;
esac

# myst-nb's execution cache is keyed on a chapter's code cells only, so a change
# in mnist_lib/, the packages or the recorded results would not re-run anything:
# when any of them changed since the last build, drop the cache and the doctrees.
STAMP="$OUT/_build/.inputs.sha256"
NEW="$( { cat mnist_lib/*.py requirements.txt; cat results/*.json 2>/dev/null || true; } \
        | sha256sum | cut -d' ' -f1)"
# A missing stamp means nobody knows what the cache was built from: clear it too.
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$NEW" ]; then
  echo "mnist_lib/, requirements or results changed (or first build): executing every chapter"
  rm -rf "$OUT/_build/.jupyter_cache" "$OUT/_build/.doctrees" "$OUT/_build/html" \
         "$OUT/_build/jupyter_execute"
fi
# The stamp records what the cache is built from, whether or not this build passes.
mkdir -p "$OUT/_build"
echo "$NEW" > "$STAMP"
# Sphinx copies _static/ (the site's CSS) only when some page is out of date,
# so a change there alone would not reach the site: drop the HTML, keep the cache.
STATIC_STAMP="$OUT/_build/.static.sha256"
STATIC="$(cat _static/* | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STATIC_STAMP" ] || [ "$(cat "$STATIC_STAMP")" != "$STATIC" ]; then
  rm -rf "$OUT/_build/html"
fi
echo "$STATIC" > "$STATIC_STAMP"

start=$(date +%s)
"$BIN/jupyter-book" build . --path-output "$OUT" -W --keep-going
echo "book ($MODE) built in $(( $(date +%s) - start )) s: $OUT/_build/html/index.html"
