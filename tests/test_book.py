"""The book: it builds with warnings as errors (as `make book` does), serves MathJax itself, and its pages
render in a real browser (headless Chromium): the Results page not blank, its answer and table there; on
every page every figure loaded (natural width above 0) and every equation typeset (no raw TeX).

Needs npm once (MathJax is fetched into .cache/mathjax) and Chromium (tools/ensure_chromium.sh installs
it; `make test` runs that first). Missing either is a failure, not a skip: CI must check the book.
"""

import html.parser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent  # the environment running the tests builds the book
BUILD_TIMEOUT_S = 240

pytestmark = [pytest.mark.book, pytest.mark.timeout(600)]


def build(root: Path, output: Path) -> Path:
    """tools/build_book.sh of `root` into output/_build/html; fails the test with the build's log."""
    result = subprocess.run(["bash", str(root / "tools" / "build_book.sh"), str(VENV), str(output)], cwd=root,
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if result.returncode != 0:
        pytest.fail(f"book build failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return output / "_build" / "html"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The repository's book, built as `make book` builds it (run files as committed in book/runs)."""
    return build(REPO, tmp_path_factory.mktemp("book"))


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("Chromium not found: the browser test of the book needs it (bash tools/ensure_chromium.sh, or "
                "apt-get install -y chromium)")


def browse(page: Path, profile: Path, *args: str, budget_ms: int = 10000) -> subprocess.CompletedProcess:
    """Open a built page in headless Chromium, with a virtual time budget for MathJax; no network."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
               "--window-size=1280,2000", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=60 + budget_ms / 1000)


class MathText(html.parser.HTMLParser):
    """Collects the text of elements of class "math" that is not inside MathJax output (raw TeX left)."""

    def __init__(self):
        super().__init__()
        self.stack, self.raw, self.math_nodes = [], [], 0

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        self.math_nodes += "math" in classes and tag in ("div", "span")
        rendered = tag.startswith("mjx-") or "eqno" in classes  # MathJax output, Sphinx's equation number
        self.stack.append(("math" in classes, rendered))

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        in_math = any(m for m, _ in self.stack)
        in_output = any(o for _, o in self.stack)
        if in_math and not in_output and data.strip():
            self.raw.append(data.strip())


def test_build_serves_mathjax_locally(built):
    results = (built / "book" / "results.html").read_text()
    scripts = re.findall(r'<script[^>]*src="([^"]*)"', results)
    assert any(re.search(r"_static/mathjax/tex-chtml\.js", s) for s in scripts), scripts
    assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))], scripts
    assert (built / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert (built / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    for page in ("intro", "method", "datasets", "results", "ablations", "performance", "deviations",
                 "run_notebooks"):
        assert (built / "book" / f"{page}.html").is_file(), page


def test_results_page_renders_in_chromium(built, tmp_path):
    from PIL import Image, ImageStat

    page = built / "book" / "results.html"
    shot = tmp_path / "results.png"
    result = browse(page, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.is_file(), result.stderr[-3000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "screenshot has almost no distinct colours (blank?)"
    grey = image.convert("L")
    assert ImageStat.Stat(grey).stddev[0] > 10, "screenshot is nearly uniform"
    dark = sum(grey.histogram()[:128]) / (image.width * image.height)
    assert dark > 0.01, f"only {dark:.2%} dark pixels: no text rendered"

    dom = browse(page, tmp_path / "profile", "--dump-dom").stdout
    assert "Table 4, paper protocol" in dom
    assert "IIC run yet" in dom or "gain over k-means is" in dom  # the answer the page opens with
    tables = re.findall(r"<table.*?</table>", dom, flags=re.S)  # the answer's own table may come first
    assert any("ours faithful" in t and "COCO-Stuff-3" in t for t in tables)
    assert dom.count("<mjx-container") >= 1, "MathJax typeset nothing"
    assert "<mjx-merror" not in dom and "data-mjx-error" not in dom, "MathJax reported a TeX error"
    parser = MathText()
    parser.feed(dom)
    assert parser.math_nodes >= 1 and not parser.raw, f"raw TeX left on the page: {parser.raw[:3]}"
    text = re.sub(r"<(script|pre|code)\b.*?</\1>", "", dom, flags=re.S)
    assert "$$" not in text and "\\begin{" not in text


# Added to a copy of every page: once the page, its images and MathJax are done, it reports to the harness
# that frames it which images it shows (natural width 0: not loaded) and which math elements MathJax left raw.
PROBE = """<script>
document.addEventListener("DOMContentLoaded", function () {
  Array.prototype.forEach.call(document.images, function (i) { i.loading = "eager"; });
});
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = Promise.all(images.map(function (i) {
    return i.complete ? null : new Promise(function (done) { i.onload = i.onerror = done; });
  }));
  var typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
  Promise.all([loaded, typeset]).then(function () {
    parent.postMessage({page: location.pathname.split("/").slice(-2).join("/"),
      images: images.map(function (i) { return [i.getAttribute("src").slice(0, 100), i.naturalWidth]; }),
      raw: Array.prototype.filter.call(document.querySelectorAll(".math"), function (e) {
        return !e.querySelector("mjx-container"); }).map(function (e) { return e.textContent.slice(0, 80); }),
      dollars: document.body.innerText.indexOf("$$") >= 0}, "*");
  });
});
</script>"""

HARNESS = """<!DOCTYPE html><html><body><pre id="out">[]</pre><script>
var results = [];
window.addEventListener("message", function (event) {
  results.push(event.data);
  document.getElementById("out").textContent = JSON.stringify(results);
});
</script>FRAMES</body></html>"""


def probe_pages(html_dir: Path, profile: Path) -> tuple[list[str], list[dict]]:
    """Every page of the built book, loaded in frames of one harness page: (pages, their reports)."""
    pages = sorted(p for p in (html_dir / "book").rglob("*.html") if not p.name.endswith(".probe.html"))
    frames = []
    for page in pages:
        probe = page.with_name(page.stem + ".probe.html")
        probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        frames.append(f'<iframe src="{probe.relative_to(html_dir).as_posix()}" width="1000" height="700"></iframe>')
    harness = html_dir / "probe-harness.html"
    harness.write_text(HARNESS.replace("FRAMES", "".join(frames)))
    dom = browse(harness, profile, "--dump-dom", budget_ms=120000).stdout
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, flags=re.S)
    reports = json.loads(html.unescape(found.group(1))) if found else []
    return [p.relative_to(html_dir / "book").as_posix() for p in pages], reports


def test_every_page_shows_its_figures_and_typesets_its_math(built, tmp_path):
    pages, reports = probe_pages(built, tmp_path / "profile")
    reported = {r["page"].replace(".probe", "") for r in reports}
    assert len(reports) == len(pages), f"pages that never reported: {sorted(set(pages) - reported)[:10]}"
    broken = [(r["page"], src) for r in reports for src, width in r["images"] if not width]
    assert not broken, f"figures that did not load: {broken[:10]}"
    raw = [(r["page"], r["raw"][:2]) for r in reports if r["raw"]]
    assert not raw, f"raw TeX left on pages: {raw[:5]}"
    assert not [r["page"] for r in reports if r["dollars"]], "a page shows $$"
    figures = {r["page"]: len(r["images"]) for r in reports}
    assert figures["book/results.probe.html"] >= 2, figures  # the answer's figure and the confusion matrix


def test_book_with_run_files_builds(tmp_path):
    """A copy of the book with an executed run notebook, a failed run and a "not run" run file: the
    toc's glob picks the notebook up, numbers link to it, the build has no warning."""
    import nbformat

    root = tmp_path / "repo"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml", "study.yaml"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("runs", "generated", "mathjax"))
    shutil.copytree(REPO / "tools", root / "tools")
    shutil.copytree(REPO / "iicrepro", root / "iicrepro", ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".cache").mkdir()
    if (REPO / ".cache" / "mathjax").is_dir():  # reuse the npm download
        (root / ".cache" / "mathjax").symlink_to(REPO / ".cache" / "mathjax")
    runs = root / "book" / "runs"
    runs.mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Run camvid3-faithful-s0\n\nA fixture."),
                      nbformat.v4.new_code_cell("print(1)", execution_count=1,
                                                outputs=[nbformat.v4.new_output("stream", text="1\n")])]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, runs / "camvid3-faithful-s0.ipynb")
    base = {"profile": "full", "study_group": "main", "dataset": "camvid3", "params": {"preset": "camvid3"}}
    selection = {rule: {"epoch": 2, "split": "heldout", "acc": 0.5, "miou": 0.3}
                 for rule in ("paper", "last", "lowest_loss")}
    files = {"camvid3-faithful-s0": {"status": "ok", "variant": "faithful", "seed": 0, "selection": selection},
             "camvid3-improved-s0": {"status": "failed", "variant": "improved", "seed": 0},
             "potsdam3-faithful-s0": {"status": "not run", "variant": "faithful", "seed": 0, "dataset": "potsdam3",
                                      "command": "iicrepro study run --only potsdam3-faithful-s0 --with-downloads"}}
    for name, data in files.items():
        (runs / f"{name}.json").write_text(json.dumps({**base, "name": name, **data}))
    html_dir = build(root, tmp_path / "out")
    page = html_dir / "book" / "runs" / "camvid3-faithful-s0.html"
    assert page.is_file()
    results = (html_dir / "book" / "results.html").read_text()
    assert 'href="runs/camvid3-faithful-s0.html"' in results
    text = re.sub(r"<[^>]+>", "", results)  # code is split into one <span> per word
    assert "failed: s0" in text and "iicrepro study run --only potsdam3-faithful-s0 --with-downloads" in text


def test_build_without_npm_fails_clearly(tmp_path):
    """On a machine without npm and without the MathJax cache the build stops with a message saying why."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "tools", root / "tools")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "grep", "cmp", "mkdir", "rm", "cp", "date", "cat"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    result = subprocess.run(["bash", str(root / "tools" / "build_book.sh"), str(VENV), str(tmp_path / "out")],
                            cwd=root, capture_output=True, text=True, timeout=60, env={"PATH": str(bin_dir)})
    assert result.returncode != 0
    assert "npm is needed" in result.stderr

