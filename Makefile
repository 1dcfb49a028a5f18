# The two commands the README gives:
#   make book   set up everything (.venv, packages, data), then build the full book
#   make test   set up everything, then run the test suite (incl. a quick book build)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JB     := $(BIN)/jupyter-book
# Sphinx warnings are errors; --keep-going reports all of them before failing.
JBFLAGS := -W --keep-going

.PHONY: venv data test test-lib book book-quick record-build sync repository clean help
.DEFAULT_GOAL := help

help:
	@echo "make book        .venv + packages + data, then the full book (_build/html)"
	@echo "make test        .venv + packages + data, then all tests (quick book build incl.)"
	@echo "make repository REPO=OWNER/NAME [BRANCH=main]   publish from another repository"
	@echo "make venv | data | book-quick | record-build | sync | clean"

# Re-installs only when requirements.txt or pyproject.toml change.
venv: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || bash scripts/check_disk.sh .
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

data: venv
	$(BIN)/python -m mnist_lib data --root data

# Library tests only (no book build).
test-lib: venv data
	$(BIN)/python -m pytest -q -m "not book"

test: venv data
	bash scripts/test.sh

# The full book: every chapter executed with full training.
book: venv data
	bash scripts/build_book.sh full

# Quick mode: small subset, 1-2 epochs, claim checks off (what CI builds).
book-quick: venv data
	bash scripts/build_book.sh quick

# Add the last full build that executed every chapter (_build/book_build.json)
# to results/book_builds.json, the list of machines it passed on; commit that.
record-build: venv
	$(BIN)/python scripts/record_build.py --add

# Regenerate the .ipynb twins (Colab) from the .md chapters, the one source.
sync: venv
	$(BIN)/python scripts/twins.py book/*.md

# Name the book's GitHub repository (and branch) everywhere it must be named:
# _config.yml's repository section is the setting; scripts/repository.py
# rewrites it and every copy (library, package URLs, chapters, twins, README,
# workflows, CITATION.cff). Without REPO, it prints the current one.
repository: venv
	$(BIN)/python scripts/repository.py $(REPO) $(if $(BRANCH),--branch $(BRANCH))

clean:
	rm -rf _build
