"""The HTML report (`snakemake --report reports/report.html`) of the smoke study: one self-contained file whose
figures and tables sit in categories with captions, and whose figures a browser really shows.

The report is snakemake's React single-page app: every result is embedded as a base64 data URI in the JSON of
`<script id="results">`, and the app keeps its state (category, result shown) in memory, not in the URL. So, as a
reader would, the test clicks in headless Chromium the category in the menu, the subcategory, the result's "eye"
button (the content pane shows it) and its "info" button (the navbar shows its caption), and screenshots the page.
Each figure must then be on screen pixel for pixel (the app shows it at its natural size), where the start page
shows no such thing. Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: standard
library only, one browser for every figure), with the network cut off, on a copy of the report alone in a folder.
"""

import base64
import json
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from jpegstudy import audit
from PIL import Image

from .conftest import needs, run_snakemake

CHROMIUM = "chromium"
VIEWPORT = (1600, 1000)
VIEWABLE = {"image/png", "image/svg+xml", "image/jpeg", "text/html", "application/pdf"}


# --- reading the report ---------------------------------------------------------------------------------------------


def embedded_json(html, name):
    """The JSON value the report assigns to `var {name} = ...;` (results, categories, workflow_desc, ...)."""
    match = re.search(rf'<script id="{name.replace("_", "-")}">\s*var {name} = ', html) or re.search(
        rf'<script id="{name}">\s*var {name} = ', html)
    assert match, f"no `var {name}` in the report"
    value, _ = json.JSONDecoder().raw_decode(html, match.end())
    return value


def data_uri_bytes(uri):
    assert uri.startswith("data:") and ";base64," in uri, uri[:80]
    return base64.b64decode(uri.split(";base64,", 1)[1])


class _Links(HTMLParser):
    """Every URL the page's own tags would load or link to (src, href, srcset, ...)."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action") and value is not None:
                self.urls.append((tag, name, value))


def external_references(html):
    """URLs in the page's own tags that point outside the file (none when it is self-contained)."""
    parser = _Links()
    parser.feed(html)
    return [(t, n, v) for t, n, v in parser.urls if not (v.startswith(("data:", "#", "javascript:")) or v == "")]


# --- headless Chromium over the DevTools protocol -------------------------------------------------------------------


class Browser:
    """One headless Chromium, driven through --remote-debugging-pipe (it reads commands on fd 3, answers on fd 4,
    each message JSON ended by a NUL byte)."""

    def __init__(self, profile):
        self.proc = subprocess.Popen(
            ["bash", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', CHROMIUM, "--headless",
             "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--mute-audio", f"--user-data-dir={profile}", "--proxy-server=http://127.0.0.1:9",
             "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buffer, self.next_id, self.events = b"", 0, []
        try:
            page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
            self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            self.call("Page.enable", session=True)
        except BaseException:
            self.close()
            raise

    def _read(self):
        while b"\0" not in self.buffer:
            chunk = self.proc.stdout.read1(1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, session=False, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.proc.stdin.write(json.dumps(message).encode() + b"\0")
        self.proc.stdin.flush()
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self.events.append(reply.get("method"))

    def viewport(self, size):
        """A viewport of `size` (w, h) CSS pixels, one device pixel each."""
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=size[0], height=size[1],
                  deviceScaleFactor=1, mobile=False)

    def open(self, page, viewport):
        """Load a local file at a viewport of `viewport` (w, h)."""
        self.viewport(viewport)
        self.events.clear()
        self.call("Page.navigate", session=True, url=page.as_uri())
        while "Page.loadEventFired" not in self.events:
            self.events.append(self._read().get("method"))

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                           returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self, path):
        """The viewport as an RGB int16 array (also written to `path`, to look at when a test fails)."""
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"]))
        return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)

    def close(self):
        if not self.proc.stdin.closed:
            self.proc.stdin.close()  # chromium exits when its pipe closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# Waits until the app has rendered, clicks through its UI to `target` as a reader does, and returns what it did and
# what the page then shows.
DRIVER = """
(async function (target) {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const text = (el) => el.textContent.trim();
  const steps = [];
  function click(el, what) {
    if (!el) throw new Error("not found: " + what);
    el.click();
    steps.push(what);
  }
  const menuLink = (label) => Array.from(document.querySelectorAll("nav a")).find((a) => text(a) === label);
  try {
    for (let i = 0; i < 200 && !document.querySelector("nav a"); i++) await sleep(25);  // the app has rendered
    if (target !== null) {
      if (!menuLink("Workflow")) {  // back to the menu, by the breadcrumbs' home link
        click(document.querySelector("nav ol li a"), "home");
        await frame();
      }
      const category = Object.keys(categories).find(
        (c) => Object.values(categories[c]).some((paths) => paths.includes(target)));
      const subcategory = Object.keys(categories[category]).find((s) => categories[category][s].includes(target));
      click(menuLink(isSingleCategory() ? "Results" : category), "category " + category);
      await frame();
      if (!isSingleSubcategory(category)) {
        click(menuLink(subcategory), "subcategory " + subcategory);
        await frame();
      }
      // the row of the results table whose cells are the target's labels (its path when it has none)
      const entry = results[target];
      const cells = entry.labels ? Object.values(entry.labels).map(String) : [target];
      const row = Array.from(document.querySelectorAll("nav tbody tr")).find((tr) => {
        const tds = Array.from(tr.querySelectorAll("td")).slice(0, -1);
        return tds.length > 0 && tds.every((td) => cells.includes(text(td)));
      });
      if (!row) throw new Error("no row for " + target + " with cells " + JSON.stringify(cells));
      const buttons = row.querySelectorAll("td:last-child a");
      click(buttons[0], "view");  // the eye button: the content pane shows the result
      await frame();
      click(buttons[1], "info");  // the info button: the navbar shows the result's caption
      await frame();
      const img = Array.from(document.images).find((i) => i.getAttribute("src") === entry.data_uri);
      if (img) await img.decode();
      await sleep(document.querySelector("#app iframe") ? 500 : 100);  // a data: iframe is cross-origin: no hook
      await frame();
    }
  } catch (err) {
    steps.push("ERROR " + err.message);
  }
  const shown = Array.from(document.querySelectorAll("#app img, #app iframe")).find(
    (el) => el.getAttribute("src") !== logo_uri);  // the content pane's (the navbar shows the logo)
  return {steps: steps, content: app.state.content, resultPath: app.state.resultPath || null,
          shown: shown ? {tag: shown.tagName.toLowerCase(), src: shown.getAttribute("src")} : null,
          nav: document.querySelector("nav").innerText, menu: Array.from(document.querySelectorAll("nav a span"),
          (s) => s.textContent)};
})(%s)
"""


def figure_pixels(png):
    """The figure as the browser paints it: RGB, transparency composited over the page's white."""
    image = Image.open(png).convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, image).convert("RGB"), dtype=np.int16)


def find_figure(shot, figure, tolerance=6):
    """Where `figure` appears in `shot` at 1:1 scale (top-left (y, x)), or None. Candidates are the places where
    the figure's rarest colour lies; a candidate matches when 99 % of its pixels are within `tolerance`."""
    h, w = figure.shape[:2]
    if h > shot.shape[0] or w > shot.shape[1]:
        return None
    colours, inverse, counts = np.unique(figure.reshape(-1, 3), axis=0, return_inverse=True, return_counts=True)
    rare = int(np.argmin(counts))
    fy, fx = np.unravel_index(int(np.flatnonzero(inverse.ravel() == rare)[0]), (h, w))
    probe = np.random.default_rng(0).integers(0, [h, w], size=(64, 2))  # a cheap first test of each candidate
    for sy, sx in np.argwhere(np.all(np.abs(shot - colours[rare]) <= tolerance, axis=-1)):
        y, x = sy - fy, sx - fx
        if y < 0 or x < 0 or y + h > shot.shape[0] or x + w > shot.shape[1]:
            continue
        near = np.abs(shot[y + probe[:, 0], x + probe[:, 1]] - figure[probe[:, 0], probe[:, 1]]) <= tolerance
        if near.all(axis=-1).mean() < 0.9:
            continue
        if np.all(np.abs(shot[y:y + h, x:x + w] - figure) <= tolerance, axis=-1).mean() > 0.99:
            return int(y), int(x)
    return None


def ink(image, threshold=40):
    """`image` (RGB on white) cropped to what is drawn on it."""
    ys, xs = np.nonzero(np.abs(image - 255).max(axis=-1) > threshold)
    assert len(ys), "nothing drawn"
    return image[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def saturated_colours(image, min_pixels=20):
    """Saturated colours (plot lines, markers) covering at least `min_pixels` pixels of `image`."""
    rgb = image.reshape(-1, 3)
    colours, counts = np.unique(rgb[(rgb.max(axis=1) - rgb.min(axis=1)) > 60], axis=0, return_counts=True)
    return {tuple(c) for c, n in zip(colours.tolist(), counts) if n >= min_pixels}


def viewport_for(size):
    """A viewport in which a result of `size` (w, h) shows at its natural size: with a result's info open, the
    navbar takes half the width."""
    return max(VIEWPORT[0], 2 * (size[0] + 64)), max(VIEWPORT[1], size[1] + 100)


# --- the tests ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(smoke_runs):
    workdir = smoke_runs[0]
    path = workdir / "reports" / "report.html"
    result = run_snakemake(workdir, "--report", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    html = path.read_text()
    return {"workdir": workdir, "path": path, "html": html, "results": embedded_json(html, "results"),
            "categories": embedded_json(html, "categories")}


def test_report_is_self_contained(report):
    html, results = report["html"], report["results"]
    assert external_references(html) == []
    assert not re.search(r"""<(?:script|img|link|iframe)[^>]*\b(?:src|href)\s*=\s*["'](?!data:|#)""", html)
    # every result is embedded, byte for byte
    for path, entry in results.items():
        assert data_uri_bytes(entry["data_uri"]) == (report["workdir"] / path).read_bytes(), path


def test_report_has_every_figure_and_table_in_a_category_with_a_caption(report):
    results, categories, workdir = report["results"], report["categories"], report["workdir"]
    assert results, "no output is marked with report() in the rules"
    assert "Other" not in categories, "a result without category: report(..., category=...)"
    assert {p for subcats in categories.values() for ps in subcats.values() for p in ps} == set(results)
    for path, entry in results.items():
        assert entry["caption"].strip(), f"{path} has no caption: report(..., caption='captions/....rst')"
        assert "{{" not in entry["caption"] and "{%" not in entry["caption"], path  # jinja was rendered
    figures = {str(p.relative_to(workdir)) for p in (workdir / "reports").rglob("*.png")}
    assert not figures - set(results), f"figures not in the report: {sorted(figures - set(results))}"
    # each LaTeX table is in the report in a form a browser shows: typeset in the study PDF (every number of
    # every table is among the refs the PDF shows), or an .html/.png/.svg/.pdf of the same name
    tables = {p.stem for p in (workdir / "reports" / "tables").glob("*.tex")}
    viewable = {Path(p).stem for p, e in results.items() if e["mime_type"] in VIEWABLE}
    assert "reports/study.pdf" in results
    in_pdf = {"/".join(ref[:2]) if not ref[0].startswith("torchvision:") else ":".join(ref[:2])
              for ref in audit.figure_refs(workdir / "reports" / "study.pdf")}
    for table in tables - viewable:
        refs, _ = audit.table_refs((workdir / "reports" / "tables" / f"{table}.tex").read_text())
        shown = {f"{what}:{field}" if what.startswith("torchvision:") else f"{what}/{field}" for what, field, _ in refs}
        assert refs and shown <= in_pdf, f"table {table} is neither viewable in the report nor in the study PDF"
    # the start page describes the study (report: "captions/workflow.rst")
    assert "jpegstudy" in embedded_json(report["html"], "workflow_desc")


def chosen(report, most=12):
    """What the browser opens (a second or two each): the first PNG of each category, then the other PNGs under
    reports/figures/, `most` in all; and the first HTML result (a table)."""
    results, categories = report["results"], report["categories"]
    pngs = {p for p, e in results.items() if e["mime_type"] == "image/png"}
    picked = []
    for category in sorted(categories):
        paths = sorted(p for ps in categories[category].values() for p in ps if p in pngs)
        picked += paths[:1]
    picked += sorted(p for p in pngs - set(picked) if p.startswith("reports/figures/"))
    tables = sorted(p for p, e in results.items() if e["mime_type"] == "text/html")
    return picked[:most], tables[:1]


@needs(CHROMIUM)
def test_report_renders_its_figures_in_a_browser(report, tmp_path):
    results = report["results"]
    figures, tables = chosen(report)
    assert figures, "no PNG figure in the report"
    page = tmp_path / "alone" / "report.html"  # alone in its folder: nothing beside it can be loaded
    page.parent.mkdir()
    shutil.copy(report["path"], page)

    browser = Browser(tmp_path / "profile")
    try:
        # the start page: the app renders its menu with every category, and shows none of the figures
        browser.open(page, VIEWPORT)
        state = browser.evaluate(DRIVER % "null")
        assert {"Workflow", "Statistics", "About"} <= set(state["menu"]), state
        if len(report["categories"]) > 1:
            assert set(report["categories"]) <= set(state["menu"]), state
        blanks = {VIEWPORT: browser.screenshot(tmp_path / "start.png")}

        for target in figures + tables:  # one after the other in the app, going home in between, as a reader does
            name = Path(target).name
            if target in figures:
                figure = figure_pixels(report["workdir"] / target)
                viewport = viewport_for((figure.shape[1], figure.shape[0]))
                if viewport not in blanks:  # the start page as wide as this figure's viewport, to compare with
                    browser.open(page, viewport)
                    browser.evaluate(DRIVER % "null")
                    blanks[viewport] = browser.screenshot(tmp_path / f"start-{viewport[0]}x{viewport[1]}.png")
            else:  # the table as a browser paints the file on its own, as wide as the report's content pane
                viewport = VIEWPORT
                alone = tmp_path / name / "table.html"
                alone.parent.mkdir()
                shutil.copy(report["workdir"] / target, alone)
                browser.open(alone, (viewport[0] // 2, viewport[1]))
                figure = ink(browser.screenshot(tmp_path / f"{name}.alone.png"))
                browser.open(page, viewport)
            browser.viewport(viewport)
            state = browser.evaluate(DRIVER % json.dumps(target))
            shot = browser.screenshot(tmp_path / f"{name}.png")
            assert not any(s.startswith("ERROR") for s in state["steps"]), (target, state["steps"])
            kind = "img" if target in figures else "html"
            assert state["content"] == kind and state["resultPath"] == target, (target, state)
            assert state["shown"]["src"] == results[target]["data_uri"], target  # the embedded file is shown
            caption = unescape(re.sub(r"<[^>]+>", "", results[target]["caption"])).split()
            assert " ".join(caption[:6]) in " ".join(state["nav"].split()), target  # with its caption

            where = find_figure(shot, figure)
            assert where is not None, f"{target} is not on screen: see {tmp_path / name}.png"
            blank = blanks[viewport]
            assert find_figure(blank, figure) is None, target
            if kind == "img":  # the figure's own colours (lines, markers) are on screen where the start page lacks them
                (y, x), (h, w) = where, figure.shape[:2]
                assert saturated_colours(figure) <= saturated_colours(shot[y:y + h, x:x + w], min_pixels=1), target
                assert np.abs(shot[y:y + h, x:x + w] - blank[y:y + h, x:x + w]).mean() > 5, target
    finally:
        browser.close()
