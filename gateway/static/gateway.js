/* Ops Gateway page behaviour. Everything works without this file; it adds:
 * - live output on a run page (EventSource on the API's stream; chunks already
 *   rendered by the server are skipped by sequence number, so nothing repeats),
 * - a ticking elapsed time while a run is live,
 * - status tiles that refresh themselves (marked as background requests, so an
 *   open dashboard does not keep the session alive).
 * No inline script anywhere: the Content-Security-Policy forbids it. */
(function () {
  "use strict";

  var STATUS_LABELS = {
    queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed",
    timed_out: "Timed out", cancelled: "Cancelled", lost: "Lost"
  };

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
    badge.textContent = STATUS_LABELS[status] || status;
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
      // The finished run (exit code, duration, result table) renders from the database.
      window.location.reload();
    });
  }

  function replaceTile(tile, html) {
    var template = document.createElement("template");
    template.innerHTML = html;  // a fragment this app rendered (Jinja-escaped), same origin
    var body = template.content.querySelector(".tile-body");
    if (body) { tile.replaceChildren(body); }
    return body;
  }

  function tileRequest(tile, method) {
    var headers = { "X-Gateway-Background": "1" };
    if (method === "POST") { headers["X-CSRFToken"] = csrfToken(); }
    var url = tile.getAttribute(method === "POST" ? "data-refresh-url" : "data-tile-url");
    return fetch(url, { method: method, headers: headers, credentials: "same-origin" }).then(function (response) {
      if (!response.ok) { throw new Error("tile refresh failed: " + response.status); }
      return response.text();
    }).then(function (html) {
      var body = replaceTile(tile, html);
      if (body && body.getAttribute("data-live") === "1") {
        window.setTimeout(function () { tileRequest(tile, "GET").catch(function () {}); }, 2000);
      }
      return body;
    });
  }

  function startTiles() {
    var tiles = document.querySelectorAll(".tile[data-refresh-url]");
    tiles.forEach(function (tile) {
      var seconds = parseInt(tile.getAttribute("data-refresh-seconds") || "60", 10);
      // Someone opening the board should see the status without pressing anything: a report
      // with no result yet is run at once (through the cache, so many viewers cost one run).
      if (tile.querySelector("[data-empty]")) { tileRequest(tile, "POST").catch(function () {}); }
      window.setInterval(function () {
        if (document.hidden) { return; }
        tileRequest(tile, "POST").catch(function () {});
      }, Math.max(5, seconds) * 1000);
    });
    window.GatewayTiles = { refresh: function (tile) { return tileRequest(tile, "POST"); } };
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    var run = document.getElementById("run");
    if (run && run.getAttribute("data-live") === "1") { followRun(run); }
    startTiles();
  });
})();
