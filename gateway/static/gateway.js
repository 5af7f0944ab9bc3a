/* Ops Gateway page behaviour. Everything works without this file; it adds:
 * - live output on a run page (EventSource on the API's stream; chunks already
 *   rendered by the server are skipped by sequence number, so nothing repeats),
 * - a ticking elapsed time while a run is live,
 * - a status board that re-reads its tiles with one conditional GET (marked as a
 *   background request, so an open dashboard does not keep the session alive); it
 *   never starts a run by itself.
 * No inline script anywhere: the Content-Security-Policy forbids it. */
(function () {
  "use strict";

  var STATUS_LABELS = {
    pending_approval: "Awaiting approval", queued: "Queued", running: "Running", succeeded: "Succeeded",
    failed: "Failed", timed_out: "Timed out", cancelled: "Cancelled", lost: "Lost", denied: "Denied",
    expired: "Expired", withdrawn: "Withdrawn"
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
    startBoard();
  });
})();
