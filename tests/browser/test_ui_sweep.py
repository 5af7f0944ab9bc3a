"""Every page in a real browser, checked by axe-core and for layout: signed out, as staff and as admin,
light and dark, at 1280 px and 390 px (Debian's Chromium via Playwright, the real app on 127.0.0.1).

On each page: no axe-core violation of impact serious or critical (axe from tests/ui_tools, pinned by
its lockfile, injected with ``page.evaluate`` of its source: the CSP blocks script tags); the page
does not scroll sideways; no table header, cell, badge or time breaks inside a word (each word's
rendered rectangles share one line; code, tokens and hashes may wrap); every field's and button's
border stands out 3:1 from what is behind it (WCAG 1.4.11, which axe does not check); no CSP
violation or script error. A screenshot of each goes to ``test-artifacts/screenshots/sweep/`` (kept, ignored by git).

The pages come from the app's URL map (``ui_sweep_pages``): a GET page route the sweep does not
visit fails ``test_the_sweep_covers_every_page_route``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser import test_web_browser as web
from tests.browser.ui_sweep_pages import SIGNED_OUT, VISITS, Visit, page_rules, seed
from tests.browser.webcat import write_catalogue
from tests.conftest import PASSWORDS

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "ui_tools" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "test-artifacts" / "screenshots" / "sweep"
WIDTHS = {"wide": (1280, 800), "phone": (390, 844)}
THEMES = ("light", "dark")

# The staff UI tests' fixtures, by name: the server on SQLite (staff granted the catalogue).
app, base_url = web.app, web.base_url

LAYOUT = """() => {
  const problems = [];
  const root = document.scrollingElement;
  if (root.scrollWidth > root.clientWidth) {
    problems.push(`scrolls sideways: ${root.scrollWidth} px wide in ${root.clientWidth} px`);
  }
  // A word (a run of letters, digits and underscores: "Succeeded", "task_status") broken across lines has
  // rectangles on more than one line. Breaks at a hyphen, a slash or a comma are the text's own.
  const free = "code, pre, kbd, samp, .token, .hash, textarea, input, select, option, script, style";
  for (const el of document.querySelectorAll("th, td, .badge, time")) {
    if (!el.getClientRects().length) continue;  // not shown
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest(free)) continue;
      for (const match of node.data.matchAll(/[\\p{L}\\p{N}_]+/gu)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (tops.size > 1) problems.push(`"${match[0]}" breaks inside the word in <${el.tagName.toLowerCase()} class="${el.className}">`);
      }
    }
  }
  return problems;
}"""

CONTRAST = """() => {
  const rgb = text => (text.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => [r, g, b]
    .map(c => c / 255).map(c => c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(rgb(a)), luminance(rgb(b))].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  // The colour behind an element: the nearest ancestor with an opaque background.
  const behind = el => {
    for (let node = el.parentElement; node; node = node.parentElement) {
      const colour = getComputedStyle(node).backgroundColor;
      const alpha = rgb(colour)[3];
      if (colour !== "transparent" && (alpha === undefined || alpha > 0.9)) return colour;
    }
    return "rgb(255, 255, 255)";
  };
  return { ratio, behind };
}"""

FIELD_BORDERS = (
    """() => {
  const { ratio, behind } = ("""
    + CONTRAST
    + """)();
  const problems = [];
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea, button")) {
    if (!el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.borderTopStyle === "none" || parseFloat(style.borderTopWidth) === 0) continue;
    const r = ratio(style.borderTopColor, behind(el));
    if (r < 3) problems.push(`${el.outerHTML.slice(0, 80)}: border ${r.toFixed(2)}:1`);
  }
  return problems;
}"""
)

FOCUS_RING = (
    """() => {
  const { ratio, behind } = ("""
    + CONTRAST
    + """)();
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const width = parseFloat(style.outlineWidth);
  const r = style.outlineStyle === "none" ? 0 : ratio(style.outlineColor, behind(el));
  return { what: el.outerHTML.slice(0, 80), visible: el.matches(":focus-visible"), width, ratio: r };
}"""
)

AXE_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => `${v.impact} ${v.id}: ${v.help} — ` + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(" | "));
}"""


@pytest.fixture
def axe_source() -> str:
    if not AXE.exists():
        if web_required():
            pytest.fail(f"{AXE} is missing: run `make test` (npm ci in tests/ui_tools)")
        pytest.skip("axe-core is not installed (npm ci --prefix tests/ui_tools)")
    return AXE.read_text()


def web_required() -> bool:
    import os

    return os.environ.get("GATEWAY_TEST_REQUIRE_BROWSER") == "1"


@pytest.fixture
def seeds(app, base_url) -> dict[str, str]:
    return seed(app)


def sign_in_state(browser: Browser, base: str, name: str) -> dict:
    """The cookies of a browser that signed in through the form (reused by every context of that person)."""
    context = browser.new_context(base_url=base)
    tab = context.new_page()
    tab.goto("/login")
    tab.get_by_label("Username").fill(name)
    tab.get_by_label("Password").fill(PASSWORDS[name])
    tab.get_by_role("button", name="Sign in").click()
    expect(tab).not_to_have_url("/login")
    state = context.storage_state()
    context.close()
    return state


def open_context(
    browser: Browser, base: str, state: dict | None, theme: str, width: str, console: list[str], locale: str = "en-US"
) -> Page:
    w, h = WIDTHS[width]
    context: BrowserContext = browser.new_context(
        base_url=base, viewport={"width": w, "height": h}, color_scheme=theme, storage_state=state, locale=locale
    )
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    tab.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    return tab


def check_page(
    tab: Page, visit: Visit, seeds: dict[str, str], who: str, axe: str, spent: dict[str, float]
) -> list[str]:
    """One page view's problems: its answer, colour scheme, layout and axe-core's serious or critical findings."""
    url = visit.url(seeds)
    where = f"{who} {url}"
    clock = time.monotonic()
    response = tab.goto(url)
    if response is None or response.status != visit.status:
        return [f"{where}: answered {response and response.status}, not {visit.status}"]
    if visit.redirects_to:
        path = tab.evaluate("location.pathname")
        return [] if path == visit.redirects_to else [f"{where}: ended at {path}, not {visit.redirects_to}"]
    tab.wait_for_load_state("load")
    problems = []
    theme = "dark" if " dark " in f" {who} " else "light"
    scheme = tab.evaluate("getComputedStyle(document.documentElement).colorScheme")
    if tab.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") != (theme == "dark"):
        problems.append(f"{where}: the page does not see the {theme} colour scheme ({scheme!r})")
    spent["load"] += time.monotonic() - clock
    clock = time.monotonic()
    problems += [f"{where}: {line}" for line in tab.evaluate(LAYOUT)]
    problems += [f"{where}: {line}" for line in tab.evaluate(FIELD_BORDERS)]
    spent["layout"] += time.monotonic() - clock
    clock = time.monotonic()
    tab.evaluate(axe)  # the CSP blocks script tags, not the DevTools protocol
    spent["axe inject"] += time.monotonic() - clock
    clock = time.monotonic()
    problems += [f"{where}: {line}" for line in tab.evaluate(AXE_RUN)]
    spent["axe"] += time.monotonic() - clock
    clock = time.monotonic()
    tab.screenshot(path=str(SHOTS / f"{visit.name}-{who.replace(' ', '-')}.png"), full_page=True)
    spent["screenshot"] += time.monotonic() - clock
    return problems


def script_problems(who: str, console: list[str]) -> list[str]:
    """The script errors and CSP violations a tab's console logged."""
    return [f"{who}: {line}" for line in console if line.startswith("pageerror") or "Content Security Policy" in line]


@pytest.mark.slow
def test_every_page_passes_axe_and_fits_at_both_widths_in_both_themes(
    browser: Browser, app, base_url: str, seeds: dict[str, str], axe_source: str
):
    started = time.monotonic()
    states = {SIGNED_OUT: None, "staff": sign_in_state(browser, base_url, "staff")}
    states["admin"] = sign_in_state(browser, base_url, "admin")
    states["half-signed-in"] = sign_in_state(browser, base_url, "other")  # a second factor is due
    visits: dict[str, list[Visit]] = {}
    for endpoint_visits in VISITS.values():
        for visit in endpoint_visits:
            visits.setdefault(visit.role, []).append(visit)

    shutil.rmtree(SHOTS, ignore_errors=True)  # this run's pictures only
    SHOTS.mkdir(parents=True)
    problems: list[str] = []
    count = 0
    spent = dict.fromkeys(("load", "layout", "axe inject", "axe", "screenshot"), 0.0)
    for role, role_visits in visits.items():
        for theme in THEMES:
            for width in WIDTHS:
                console: list[str] = []
                tab = open_context(browser, base_url, states[role], theme, width, console)
                for visit in role_visits:
                    problems += check_page(tab, visit, seeds, f"{role} {theme} {width}", axe_source, spent)
                    count += 1
                problems += script_problems(f"{role} {theme} {width}", console)
                tab.context.close()
    shown = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in spent.items())
    print(f"ui sweep: {count} page views in {time.monotonic() - started:.1f} s ({shown})")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_page_in_german_says_lang_de_and_passes_axe(
    browser: Browser, app, base_url: str, seeds: dict[str, str], axe_source: str
):
    """Issue 23: the sweep's pages in a German browser (Accept-Language: de), light at 1280 px: signed out,
    half signed in, staff and admin. Each says ``<html lang="de">`` and has no serious or critical axe finding
    (longer German words in headers, badges and buttons must still fit and not break mid-word)."""
    started = time.monotonic()
    states = {SIGNED_OUT: None, "staff": sign_in_state(browser, base_url, "staff")}
    states["admin"] = sign_in_state(browser, base_url, "admin")
    states["half-signed-in"] = sign_in_state(browser, base_url, "other")
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    count = 0
    spent = dict.fromkeys(("load", "layout", "axe inject", "axe", "screenshot"), 0.0)
    for role in states:
        console: list[str] = []
        tab = open_context(browser, base_url, states[role], "light", "wide", console, locale="de-DE")
        for visit in (visit for visits in VISITS.values() for visit in visits if visit.role == role):
            who = f"{role} light wide de"
            problems += check_page(tab, visit, seeds, who, axe_source, spent)
            language = tab.evaluate("document.documentElement.lang")
            if language != "de":
                problems.append(f"{who} {visit.url(seeds)}: <html lang={language!r}>")
            count += 1
        problems += script_problems(f"{role} de", console)
        tab.context.close()
    assert count >= sum(len(visits) for visits in VISITS.values())
    print(f"ui sweep in German: {count} page views in {time.monotonic() - started:.1f} s")
    assert not problems, "\n".join(problems)


def test_the_sweep_covers_every_page_route(make_app, tmp_path):
    """A GET page route the sweep does not visit fails here (add it to VISITS in ui_sweep_pages.py)."""
    application = make_app(GATEWAY_COMMANDS_FILE=write_catalogue(tmp_path))
    endpoints = {rule.endpoint for rule in page_rules(application)}
    missing = sorted(endpoints - VISITS.keys())
    assert not missing, f"pages the UI sweep does not visit: {missing}"
    stale = sorted(VISITS.keys() - endpoints)
    assert not stale, f"the UI sweep names routes that are gone: {stale}"


@pytest.fixture
def tab(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url, viewport={"width": 390, "height": 844}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.mark.slow
def test_the_theme_choice_is_remembered_and_the_phone_menu_works_by_keyboard(tab: Page):
    tab.goto("/login")
    background = "getComputedStyle(document.body).backgroundColor"
    light = tab.evaluate(background)
    theme = tab.get_by_role("combobox", name="Theme")
    expect(theme).to_have_value("system")
    for _ in range(10):  # by keyboard only: the skip link, the brand, the language switch, then the theme
        tab.keyboard.press("Tab")
        if tab.evaluate("document.activeElement.id") == "theme-choice":
            break
    expect(theme).to_be_focused()
    tab.keyboard.press("ArrowDown")  # System -> Light -> Dark, each applied as it is chosen
    tab.keyboard.press("ArrowDown")
    expect(theme).to_have_value("dark")
    expect(tab.locator("html")).to_have_attribute("data-theme", "dark")
    assert tab.evaluate(background) != light
    tab.reload()  # remembered by this browser
    expect(tab.locator("html")).to_have_attribute("data-theme", "dark")
    expect(theme).to_have_value("dark")

    tab.get_by_label("Username").fill("staff")
    tab.get_by_label("Password").fill(PASSWORDS["staff"])
    tab.get_by_label("Password").press("Enter")
    menu = tab.get_by_role("button", name="Menu")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(tab.get_by_role("link", name="My runs")).to_be_hidden()
    header = tab.locator("header.topbar")
    assert header.bounding_box()["height"] < 60, "the phone header is one line"
    menu.focus()
    tab.keyboard.press("Enter")
    expect(menu).to_have_attribute("aria-expanded", "true")
    SHOTS.parent.mkdir(parents=True, exist_ok=True)  # not in the sweep's folder, which each sweep empties
    tab.screenshot(path=str(SHOTS.parent / "phone-menu-open-dark.png"))
    expect(tab.get_by_role("combobox", name="Theme")).to_have_value("dark")  # in the open menu
    tab.keyboard.press("Tab")
    expect(tab.get_by_role("link", name="Dashboard")).to_be_focused()
    tab.keyboard.press("Escape")
    expect(menu).to_be_focused()
    expect(tab.get_by_role("link", name="My runs")).to_be_hidden()
    expect(tab.locator("html")).to_have_attribute("data-theme", "dark")  # the choice follows across pages


@pytest.mark.slow
def test_the_layout_check_finds_a_word_broken_mid_word_and_a_page_wider_than_the_screen(browser: Browser):
    """The sweep's own detector, on a page made to fail it: what body { overflow-wrap: anywhere } did."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_content(
        "<body style='margin:0; overflow-wrap:anywhere'><table style='width:5rem'><tr><th>Succeeded</th>"
        "<td><code>task_status_is_a_long_name</code></td><td style='overflow-wrap:normal'>fine-grained-text</td></tr>"
        "</table>"
        "<div style='width:500px'>wide</div></body>"
    )
    problems = page.evaluate(LAYOUT)
    context.close()
    assert any("scrolls sideways: 500 px wide in 390 px" in p for p in problems), problems
    assert any('"Succeeded" breaks inside the word in <th' in p for p in problems), problems
    assert not any("task_status" in p or "fine" in p or "grained" in p for p in problems), problems  # code; hyphens


@pytest.mark.slow
@pytest.mark.parametrize("theme", THEMES)
def test_field_borders_and_focus_rings_stand_out_3_to_1(browser: Browser, base_url: str, theme: str):
    """WCAG 1.4.11: each field's and button's border, and the keyboard focus ring (2-3 px), 3:1 against what is behind."""
    state = sign_in_state(browser, base_url, "staff")
    context = browser.new_context(base_url=base_url, color_scheme=theme, storage_state=state)
    tab = context.new_page()
    problems = []
    for path in ("/commands/greet", "/runs", "/account"):
        tab.goto(path)
        problems += [f"{path}: {line}" for line in tab.evaluate(FIELD_BORDERS)]
        for _ in range(12):  # the header's controls, the skip link, then the page's fields
            tab.keyboard.press("Tab")
            ring = tab.evaluate(FOCUS_RING)
            if not (ring["visible"] and 2 <= ring["width"] <= 3 and ring["ratio"] >= 3):
                problems.append(f"{path}: focus ring {ring}")
    context.close()
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_without_javascript_the_phone_header_shows_its_links_and_fits(browser: Browser, base_url: str):
    state = sign_in_state(browser, base_url, "staff")
    context = browser.new_context(
        base_url=base_url, viewport={"width": 390, "height": 844}, java_script_enabled=False, storage_state=state
    )
    tab = context.new_page()
    tab.goto("/runs")
    expect(tab.get_by_role("link", name="My runs")).to_be_visible()
    expect(tab.get_by_role("button", name="Sign out")).to_be_visible()
    expect(tab.get_by_role("button", name="Menu")).to_be_hidden()  # it needs JavaScript; the links show instead
    expect(tab.get_by_label("Theme")).to_be_hidden()  # the system's theme applies
    assert tab.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")
    SHOTS.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS.parent / "phone-no-javascript-my-runs.png"), full_page=True)
    context.close()
