#!/usr/bin/env bash
# Build the Jupyter Book offline into _build/html (the README's main job: `make book`).
# Usage: tools/build_book.sh [VENV_DIR] [OUTPUT_PARENT]   (defaults .venv and .; HTML in OUTPUT_PARENT/_build/html)
#
# 1. MathJax 3 from npm (once, cached in .cache/mathjax), copied into book/_static/mathjax/ so that
#    equations render with no network (_config.yml: sphinx.config.mathjax_path).
# 2. python -m iicrepro.report: run files (book/runs/*.json) -> generated tables (book/generated/*.md) and
#    seaborn figures (book/generated/figures/, drawn by every build, not committed).
# 3. jupyter-book build with warnings as errors; run notebooks are shown as executed, never run here.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
output="${2:-.}"
mathjax_version="3.2.2"
cache=".cache/mathjax"
static="book/_static/mathjax"

if [ ! -x "$venv/bin/jupyter-book" ]; then
  echo "build_book.sh: $venv/bin/jupyter-book not found; create the environment first (make env)" >&2
  exit 1
fi

# -- 1. MathJax, served by the book itself
package="$cache/node_modules/mathjax"
if [ ! -f "$package/es5/tex-chtml.js" ] || ! grep -q "\"version\": \"$mathjax_version\"" "$package/package.json"; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "build_book.sh: npm is needed once to fetch MathJax $mathjax_version (equations are served locally," >&2
    echo "  no CDN). Install Node.js/npm (Debian: apt-get install -y npm) and rerun." >&2
    exit 1
  fi
  echo "build_book.sh: fetching mathjax@$mathjax_version with npm into $cache"
  mkdir -p "$cache"
  npm install --prefix "$cache" --no-save --no-audit --no-fund --loglevel=error "mathjax@$mathjax_version"
fi
if [ ! -f "$static/tex-chtml.js" ] || ! cmp -s "$package/es5/tex-chtml.js" "$static/tex-chtml.js"; then
  rm -rf "$static"
  mkdir -p "$static"
  cp -R "$package/es5/." "$static/"
fi

# -- 2. generated tables and figures from the run files
"$venv/bin/python" -m iicrepro.report book/runs book/generated

# -- 3. the book
start=$(date +%s)
"$venv/bin/jupyter-book" build . --path-output "$output" --warningiserror --keep-going
html="$output/_build/html"
if grep -rlE --include='*.html' 'src="https?://[^"]*mathjax' "$html" >/dev/null; then
  echo "build_book.sh: a page loads MathJax from the network; check mathjax_path in _config.yml" >&2
  exit 1
fi
echo "build_book.sh: built $html/index.html in $(( $(date +%s) - start )) s"
