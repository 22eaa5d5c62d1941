# The two commands of the README. Each creates the environment it needs when missing.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: book test env clean-book

env:
	bash tools/bootstrap.sh $(VENV)

## Build the Jupyter Book into _build/html (offline; reads book/runs/, never trains).
book: env
	bash tools/build_book.sh $(VENV)

## Run the test suite on CPU (slow and GPU tests are opt-in markers: -m slow, -m gpu).
test: env
	bash tools/ensure_chromium.sh
	$(VENV)/bin/pytest -q

clean-book:
	rm -rf _build
