/* Times people read: every <time datetime> the server writes (UTC, said so in its text) is
 * shown in the reader's local time or as an age, formatted by the browser (Intl, in the
 * page's language), with local time and UTC in its title. The server never guesses a zone.
 * New elements (a refreshed tile, a finished run) are picked up as they arrive; ages tick. */
(function () {
  "use strict";

  var lang = document.documentElement.lang || undefined;
  var local = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium" });
  var utc = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium", timeZone: "UTC" });
  var relative = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(lang, { numeric: "auto" }) : null;
  var STEPS = [[60, "second"], [3600, "minute"], [86400, "hour"], [Infinity, "day"]];
  var SIZES = { second: 1, minute: 60, hour: 3600, day: 86400 };

  function age(at) {
    var seconds = Math.round((at - Date.now()) / 1000);
    if (!relative) { return null; }
    for (var i = 0; i < STEPS.length; i++) {
      if (Math.abs(seconds) < STEPS[i][0]) {
        var unit = STEPS[i][1];
        return relative.format(Math.round(seconds / SIZES[unit]), unit);
      }
    }
    return null;
  }

  function show(element) {
    var at = Date.parse(element.getAttribute("datetime"));
    if (isNaN(at)) { return; }
    var moment = new Date(at);
    var text = element.getAttribute("data-show") === "age" ? age(at) : local.format(moment);
    if (text) { element.textContent = text; }
    element.title = local.format(moment) + " (" + Intl.DateTimeFormat().resolvedOptions().timeZone + ")\n" + utc.format(moment) + " UTC";
  }

  function showAll(root) {
    var found = root.querySelectorAll ? root.querySelectorAll("time[datetime]") : [];
    for (var i = 0; i < found.length; i++) { show(found[i]); }
    if (root.matches && root.matches("time[datetime]")) { show(root); }
  }

  function start() {
    showAll(document);
    new MutationObserver(function (changes) {
      changes.forEach(function (change) {
        change.addedNodes.forEach(function (node) { if (node.nodeType === 1) { showAll(node); } });
      });
    }).observe(document.body, { childList: true, subtree: true });
    window.setInterval(function () {
      var ages = document.querySelectorAll('time[datetime][data-show="age"]');
      for (var i = 0; i < ages.length; i++) { show(ages[i]); }
    }, 30000);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
}());
