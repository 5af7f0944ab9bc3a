/* Ops Gateway page behaviour. Everything works without this file; it adds:
 * - live output on a run page (EventSource on the API's stream; chunks already
 *   rendered by the server are skipped by sequence number, so nothing repeats),
 *   and at the stream's end the finished state read from the same page again and
 *   swapped in place (no reload),
 * - a ticking elapsed time while a run is live, a wrap-lines toggle for the output
 *   (remembered per browser; phones start unwrapped so columns stay aligned),
 * - on the dashboard, a "Starting…" state for a card's Run (a plain form POST) and a
 *   filter box for long command lists,
 * - a status board that re-reads its tiles with one conditional GET (marked as a
 *   background request, so an open dashboard does not keep the session alive); it
 *   never starts a run by itself.
 * No inline script anywhere: the Content-Security-Policy forbids it. */
(function () {
  "use strict";

  // The page's words (gateway/i18n/scripts.py renders them into <html data-messages>); the run
  // states' names are "status.<key>", as the server's badges say them.
  function text(key, fallback, values) {
    return window.GatewayI18n ? window.GatewayI18n.text(key, fallback, values) : fallback;
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function formatElapsed(ms) {
    var seconds = Math.max(0, Math.floor(ms / 1000));
    if (seconds < 60) { return seconds + " s"; }
    return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
  }

  function setStatus(status) {
    var holder = document.getElementById("run-status");
    if (!holder) { return; }
    var badge = document.createElement("span");
    badge.className = "badge status-" + status;
    badge.setAttribute("data-status", status);
    badge.textContent = text("status." + status, status);
    holder.replaceChildren(badge);
  }

  function appendOutput(output, stream, text) {
    var nearBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 40;
    var span = document.createElement("span");
    span.className = stream === "stderr" ? "out-stderr" : "out-stdout";
    span.textContent = text;  // text, never HTML: a command printing <script> shows it as text
    output.appendChild(span);
    if (nearBottom) { output.scrollTop = output.scrollHeight; }
    var empty = document.getElementById("output-empty");
    if (empty) { empty.remove(); }
    var legend = document.getElementById("output-legend");
    if (legend && stream === "stderr") { legend.hidden = false; }
  }

  // The finished run, read from this same page again (rendered from the database) and swapped
  // in place: status, exit, duration, end time, result table, size and checksum.
  function showFinished(attempt) {
    attempt = attempt || 0;
    var body = document.getElementById("run-body");
    if (!body || !window.fetch || !window.DOMParser) { window.location.reload(); return; }
    var focused = document.activeElement && document.activeElement.id;
    fetch(window.location.pathname, {
      credentials: "same-origin", cache: "no-store", headers: { "X-Gateway-Background": "1" }
    })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("run-body");
        if (!fresh) { throw new Error("no run-body"); }
        var stillLive = fresh.querySelector('#run[data-live="1"]');
        if (stillLive && attempt < 5) {  // the stream ended a moment before the page could say so
          window.setTimeout(function () { showFinished(attempt + 1); }, 500);
          return;
        }
        if (stillLive) { window.location.reload(); return; }
        body.replaceWith(document.importNode(fresh, true));
        applyWrap();
        var again = focused && document.getElementById(focused);
        if (again) { again.focus(); }
        var badge = document.querySelector("#run-status .badge");
        var announce = document.getElementById("run-announce");
        if (announce && badge) { announce.textContent = text("run.ended", "The run has ended: {status}.", { status: badge.textContent }); }
      })
      .catch(function () { window.location.reload(); });
  }

  function followRun(section) {
    var output = document.getElementById("output");
    var lastSeq = parseInt(section.getAttribute("data-last-seq") || "0", 10);
    var startedAt = Date.parse(section.getAttribute("data-started-at"));
    var elapsed = document.getElementById("run-elapsed");
    var ticker = null;
    if (elapsed && !isNaN(startedAt)) {
      ticker = window.setInterval(function () { elapsed.textContent = formatElapsed(Date.now() - startedAt); }, 1000);
    }
    var url = section.getAttribute("data-stream-url");
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url);
    section.setAttribute("data-streaming", "1");
    source.addEventListener("output", function (event) {
      var seq = parseInt(event.lastEventId || "0", 10);
      if (seq && seq <= lastSeq) { return; }  // already rendered by the server
      if (seq) { lastSeq = seq; }
      var data = JSON.parse(event.data);
      if (output) { appendOutput(output, data.stream, data.text); }
    });
    source.addEventListener("status", function (event) {
      var status;
      try { status = JSON.parse(event.data); } catch (e) { status = event.data; }
      if (status && typeof status === "object") { status = status.status; }
      if (status) { setStatus(status); }
    });
    source.addEventListener("end", function () {
      source.close();
      if (ticker) { window.clearInterval(ticker); }
      section.setAttribute("data-live", "0");
      showFinished();
    });
  }

  // Wrap lines: the reader's choice is remembered per browser; without one, phones start
  // unwrapped (columns of `df` stay aligned, the box scrolls sideways) and wider screens wrapped.
  var WRAP_KEY = "gateway.wrapLines";

  function wrapWanted() {
    var stored = null;
    try { stored = window.localStorage.getItem(WRAP_KEY); } catch (e) { stored = null; }
    if (stored === "1" || stored === "0") { return stored === "1"; }
    return !(window.matchMedia && window.matchMedia("(max-width: 40rem)").matches);
  }

  function applyWrap() {
    var output = document.getElementById("output");
    var toggle = document.getElementById("wrap-toggle");
    if (!output) { return; }
    var on = wrapWanted();
    output.classList.toggle("wrap", on);
    output.classList.toggle("nowrap", !on);
    if (toggle) { toggle.setAttribute("aria-pressed", on ? "true" : "false"); }
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest ? event.target.closest("#wrap-toggle") : null;
    if (!toggle) { return; }
    var on = toggle.getAttribute("aria-pressed") !== "true";
    try { window.localStorage.setItem(WRAP_KEY, on ? "1" : "0"); } catch (e) { /* not remembered */ }
    applyWrap();
  });

  // A card's Run is a plain form POST (CSRF token included) that lands on the run page;
  // the button says "Starting…" and cannot be pressed twice meanwhile.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("run-inline")) { return; }
    var button = form.querySelector("button[type=submit]");
    if (!button) { return; }
    if (button.getAttribute("data-starting") === "1") { event.preventDefault(); return; }
    button.setAttribute("data-starting", "1");
    button.gatewayLabel = Array.prototype.slice.call(button.childNodes);
    button.textContent = text("run.starting", "Starting…");
    button.disabled = true;
  });

  // Back to the dashboard from the run page (the browser's page cache): the buttons work again.
  window.addEventListener("pageshow", function () {
    var starting = document.querySelectorAll("form.run-inline button[data-starting]");
    Array.prototype.forEach.call(starting, function (button) {
      if (button.gatewayLabel) { button.replaceChildren.apply(button, button.gatewayLabel); }
      button.removeAttribute("data-starting");
      button.disabled = false;
    });
  });

  // The commands' filter box (rendered only for long lists): cards whose title or
  // description hold every word typed stay; the count is announced.
  function startFilter() {
    var box = document.getElementById("command-filter-box");
    var input = document.getElementById("command-filter");
    if (!box || !input) { return; }
    var count = document.getElementById("command-filter-count");
    var none = document.getElementById("command-filter-none");
    var cards = Array.prototype.slice.call(document.querySelectorAll(".command-card"));
    var groups = Array.prototype.slice.call(document.querySelectorAll(".command-group"));
    box.hidden = false;
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      cards.forEach(function (card) {
        var text = card.getAttribute("data-search") || "";
        var match = words.every(function (word) { return text.indexOf(word) !== -1; });
        card.hidden = !match;
        if (match) { shown += 1; }
      });
      groups.forEach(function (group) { group.hidden = !group.querySelector(".command-card:not([hidden])"); });
      if (none) { none.hidden = shown !== 0; }
      count.textContent = words.length ? text("commands.shown", "{shown} of {total} commands shown", { shown: shown, total: cards.length }) : "";
    });
  }

  // The status board refreshes with ONE conditional request for all its tiles (ETag ->
  // 304 while nothing changed), marked as background so an open dashboard does not keep
  // the session alive. It only reads: schedules produce the reports, and a run starts
  // only when the viewer presses a tile's button (a plain form POST).
  function startBoard() {
    var board = document.getElementById("board");
    if (!board) { return; }
    var url = board.getAttribute("data-board-url");
    var seconds = parseFloat(board.getAttribute("data-refresh-seconds") || "30");
    var etag = board.getAttribute("data-etag");  // the page itself is this version
    function refresh() {
      if (document.hidden) { return; }
      var headers = { "X-Gateway-Background": "1" };
      if (etag) { headers["If-None-Match"] = etag; }
      fetch(url, { method: "GET", headers: headers, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 304 || !response.ok) { return null; }
          etag = response.headers.get("ETag");
          return response.text();
        })
        .then(function (html) {
          if (html === null) { return; }
          var template = document.createElement("template");
          template.innerHTML = html;  // a fragment this app rendered (Jinja-escaped), same origin
          board.replaceChildren(template.content);
        })
        .catch(function () {});
    }
    window.setInterval(refresh, Math.max(1, seconds) * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    var run = document.getElementById("run");
    if (run && run.getAttribute("data-live") === "1") { followRun(run); }
    applyWrap();
    startBoard();
    startFilter();
  });
})();
