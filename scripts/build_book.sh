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
# This is the book build: a claim the prose makes that the run no longer
# supports fails it (mnist_lib.book.claim). Elsewhere (Colab, Jupyter) such a
# claim prints a note and the chapter goes on.
export MNIST_BOOK_BUILD=1
# Each chapter's kernel computes on one thread, and chapters execute side by
# side (scripts/execute_chapters.py), one per core. With two threads a kernel
# stalls whenever the other core is busy: PyTorch's OpenMP threads spin-wait
# for each other, and inside a Jupyter kernel (whose own threads compete too)
# an epoch of Model_1 took 246 s instead of 3.9 s on one thread beside `yes`.
# One thread keeps the build's numbers the same whatever else the machine
# runs. OMP_NUM_THREADS=2 make book overrides it.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Matplotlib caches its font list under ~/.cache/matplotlib. A build killed while
# that file was written left it without the STIX fonts; every later build then
# printed "findfont" warnings into cell outputs. Each checkout keeps its own.
export MPLCONFIGDIR="${MPLCONFIGDIR:-$PWD/_build/.matplotlib}"
case "$MODE" in
  full)  export MNIST_BOOK_QUICK=0; OUT=. ;;
  quick) export MNIST_BOOK_QUICK=1; OUT=_build/quick ;;
  *) echo "usage: $0 full|quick" >&2; exit 2 ;;
esac

# changed NAME FILE...: whether FILE... differ from what $OUT/_build/.NAME.sha256
# records; a missing stamp counts as a change (nobody knows what the build was
# made from). It records them either way, whether or not this build passes.
changed() {
  local stamp="$OUT/_build/.$1.sha256" new
  shift
  new="$( { cat "$@" 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)"
  mkdir -p "$OUT/_build"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$new" ]; then
    return 1
  fi
  echo "$new" > "$stamp"
}

# myst-nb's execution cache is keyed on a chapter's code cells only, so a change
# in mnist_lib/, the packages or the recorded results would not re-run anything:
# when any of them changed since the last build, drop the cache and the doctrees.
# (results/book_builds.json only lists where full builds passed: not an input.)
if changed inputs mnist_lib/*.py mnist_lib/*/*.py requirements.txt \
    $(ls results/*.json | grep -v '/book_builds\.json$'); then
  echo "mnist_lib/, requirements or results changed (or first build): executing every chapter"
  rm -rf "$OUT/_build/.jupyter_cache" "$OUT/_build/.doctrees" "$OUT/_build/html" \
         "$OUT/_build/jupyter_execute"
fi
# Sphinx writes only the pages that are out of date, and copies _static/ (the
# site's CSS) only when some page is: after a change to one chapter the sitemap
# (sphinx-sitemap lists the pages written in this run) held that page alone, and
# a change to _static/ alone would not reach the site. So the HTML is always
# written afresh (seconds), from the kept execution cache and doctrees.
rm -rf "$OUT/_build/html"
# The extensions in _ext/ act while Sphinx reads a page, and Sphinx does not
# notice when their code changes: drop what it has read, keep the cache.
if changed ext _ext/*.py; then
  rm -rf "$OUT/_build/.doctrees" "$OUT/_build/html"
fi

# Without the execution cache, the build executes every chapter: its time is the
# full build's. A rebuild from the cache takes seconds and says nothing of the
# machine, so only the former is recorded.
executes_all=yes
if [ -d "$OUT/_build/.jupyter_cache" ]; then
  executes_all=no
fi

start=$(date +%s)
# The chapters that are not in the execution cache execute first, side by
# side, one kernel per core (scripts/execute_chapters.py); then Sphinx finds
# them all in the cache and renders. Should Sphinx execute one itself, the
# two read chapters differently (a new myst-nb?): the build stops and says so.
build() {
  set -o pipefail
  "$BIN/python" scripts/execute_chapters.py "$MODE" || return
  "$BIN/jupyter-book" build . --path-output "$OUT" -W --keep-going 2>&1 \
    | tee "$OUT/_build/sphinx.log" || return
  if grep -q "Executing notebook" "$OUT/_build/sphinx.log"; then
    echo "Sphinx executed a chapter that scripts/execute_chapters.py had put in" \
         "the cache (see $OUT/_build/sphinx.log): its reading of a chapter no" \
         "longer gives myst-nb's cache key; make it read as myst-nb does" >&2
    return 1
  fi
}
export BIN MODE OUT
build=(bash -c "$(declare -f build); build")
if [ "$MODE" = full ] && [ "$executes_all" = yes ]; then
  # A green full build is recorded in _build/book_build.json (ignored by git:
  # the build leaves the work tree clean): on which CPU, how long, how busy
  # the machine was. `make record-build` adds it to results/book_builds.json,
  # the list the README and the Engineering notes show, to be committed.
  "$BIN/python" scripts/record_build.py -- "${build[@]}"
else
  "${build[@]}"
  if [ "$MODE" = full ]; then
    echo "chapters came from the execution cache: this build is not recorded"
  fi
fi
echo "book ($MODE) built in $(( $(date +%s) - start )) s: $OUT/_build/html/index.html"
