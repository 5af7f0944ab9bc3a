/* The audit filters in the reader's time zone. The server reads the "From" and "Until" pickers
 * (datetime-local) as UTC, and says so when this script does not run. Here the pickers show and
 * take local time: a value the server sent is turned into local time on load, and on submit each
 * value goes out as UTC ISO ("2026-12-07T09:00:00Z") in a hidden field of the same name. The quick
 * ranges (last hour, today, 7 days) are links that work without this script (in UTC); here they
 * fill the pickers in local time ("today" from local midnight) and submit the form. */
(function () {
  "use strict";

  var form = document.getElementById("audit-filters");
  if (!form) { return; }
  var pickers = form.querySelectorAll("input[data-utc-picker]");
  var PICKED = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/;

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function parts(value) {
    var m = PICKED.exec(value || "");
    return m ? [+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)] : null;
  }

  function localValue(date) {
    var text = date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      "T" + pad(date.getHours()) + ":" + pad(date.getMinutes());
    return date.getSeconds() ? text + ":" + pad(date.getSeconds()) : text;
  }

  function utcIso(date) { return date.toISOString().slice(0, 19) + "Z"; }

  // What the server sent is UTC: show it as local time.
  Array.prototype.forEach.call(pickers, function (picker) {
    var p = parts(picker.value);
    if (p) { picker.value = localValue(new Date(Date.UTC(p[0], p[1], p[2], p[3], p[4], p[5]))); }
  });
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  Array.prototype.forEach.call(form.querySelectorAll("[data-zone-note]"), function (note) {
    note.textContent = zone ? window.GatewayI18n.text("audit.your_time_in", "(your time, {zone})", { zone: zone }) : window.GatewayI18n.text("audit.your_time", "(your time)");
  });

  function toUtcFields() {
    Array.prototype.forEach.call(pickers, function (picker) {
      var name = picker.getAttribute("name") || picker.getAttribute("data-name");
      picker.setAttribute("data-name", name);
      var hidden = form.querySelector('input[type="hidden"][name="' + name + '"]');
      var p = parts(picker.value);
      if (!p) {
        picker.setAttribute("name", name);  // empty or unreadable: sent as it is, the server says what is wrong
        if (hidden) { hidden.remove(); }
        return;
      }
      picker.removeAttribute("name");
      if (!hidden) {
        hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = name;
        form.appendChild(hidden);
      }
      hidden.value = utcIso(new Date(p[0], p[1], p[2], p[3], p[4], p[5]));
    });
  }

  form.addEventListener("submit", toUtcFields);
  // Coming back through the history: the pickers submit by name again until the next submit.
  window.addEventListener("pageshow", function () {
    Array.prototype.forEach.call(pickers, function (picker) {
      if (picker.getAttribute("data-name")) { picker.setAttribute("name", picker.getAttribute("data-name")); }
    });
  });

  var since = document.getElementById("f-since");
  var until = document.getElementById("f-until");
  Array.prototype.forEach.call(document.querySelectorAll("a[data-range]"), function (link) {
    link.addEventListener("click", function (event) {
      var now = new Date();
      var start;
      var range = link.getAttribute("data-range");
      if (range === "hour") { start = new Date(now.getTime() - 3600 * 1000); }
      else if (range === "today") { start = new Date(now.getFullYear(), now.getMonth(), now.getDate()); }
      else if (range === "week") { start = new Date(now.getTime() - 7 * 86400 * 1000); }
      else { return; }
      event.preventDefault();
      start.setMilliseconds(0);
      since.value = localValue(start);
      until.value = "";
      toUtcFields();
      form.submit();
    });
  });
}());
