/* Lists of choices on a command form. Everything works without this file (a submit re-renders the
 * form with the lists for the values sent); it adds:
 * - a search box above a long list (select[data-searchable]): typing hides the options that do not match;
 * - a list that depends on another field (select[data-choices-url]) asks the server for its options as
 *   soon as that field changes, saying "Loading…" meanwhile, instead of at the next submit; when the
 *   server cannot answer (an error, or 429 past the user's CHOICES_RATE_LIMIT) the list says it failed.
 * No inline script (the Content-Security-Policy forbids it); option texts are set as text, never HTML. */
(function () {
  "use strict";

  var SEARCHABLE_FROM = 15;  // as gateway/web/paramform.py

  function labelOf(select) {
    var label = document.querySelector('label[for="' + CSS.escape(select.id) + '"]');
    return label ? label.textContent.replace("*", "").replace(window.GatewayI18n.text("choices.required", "(required)"), "").trim() : select.name;
  }

  function filter(select, text) {
    var needle = text.trim().toLowerCase();
    Array.prototype.forEach.call(select.options, function (option) {
      if (!option.value) { return; }
      option.hidden = needle !== "" && !option.selected && option.text.toLowerCase().indexOf(needle) === -1;
    });
  }

  function addSearch(select) {
    if (select.searchBox) { return; }
    var box = document.createElement("input");
    box.type = "search";
    box.className = "choice-search";
    box.placeholder = window.GatewayI18n.text("choices.search", "Search…");
    box.autocomplete = "off";
    box.setAttribute("aria-label", window.GatewayI18n.text("choices.search_label", "Search the choices of {label}", { label: labelOf(select) }));
    box.setAttribute("aria-controls", select.id);
    box.addEventListener("input", function () { filter(select, box.value); });
    select.parentNode.insertBefore(box, select);
    select.searchBox = box;
  }

  function note(select, text) {
    var holder = document.querySelector('[data-list-note="' + CSS.escape(select.name) + '"]');
    if (!holder) {
      holder = document.createElement("p");
      holder.className = "hint";
      holder.setAttribute("data-list-note", select.name);
      select.parentNode.insertBefore(holder, select.nextSibling);
    }
    holder.setAttribute("aria-live", "polite");
    holder.textContent = text;
    holder.hidden = !text;
  }

  function chosen(select) {
    return Array.prototype.filter.call(select.options, function (option) { return option.selected && option.value; })
      .map(function (option) { return option.value; });
  }

  function setOptions(select, values, keep) {
    select.replaceChildren();
    if (!select.multiple) {
      var blank = document.createElement("option");
      blank.value = "";
      blank.textContent = select.required ? window.GatewayI18n.text("choices.choose", "Choose…") : window.GatewayI18n.text("choices.none", "(none)");
      select.appendChild(blank);
    }
    values.forEach(function (value) {
      var option = document.createElement("option");
      option.value = String(value);
      option.textContent = String(value);
      option.selected = keep.indexOf(String(value)) !== -1;
      select.appendChild(option);
    });
    if (values.length > SEARCHABLE_FROM) { addSearch(select); }
    if (select.searchBox) { filter(select, select.searchBox.value); }
  }

  // The values a list depends on, nearest first: its parent's, then that one's parent's, and so on.
  function dependsOn(select) {
    var form = select.form, pairs = [], current = select, seen = {};
    while (current && current.getAttribute && current.getAttribute("data-depends-on")) {
      var name = current.getAttribute("data-depends-on");
      if (seen[name]) { break; }
      seen[name] = true;
      current = form.elements.namedItem(name);
      if (!current) { break; }
      pairs.push([name, current.value || ""]);
    }
    return pairs;
  }

  function refresh(select) {
    var pairs = dependsOn(select);
    var keep = chosen(select);
    var pending = {};
    select.pendingRefresh = pending;
    if (!pairs.length || !pairs[0][1]) {
      setOptions(select, [], keep);
      var parent = select.form.elements.namedItem(select.getAttribute("data-depends-on"));
      note(select, parent && parent.id
        ? window.GatewayI18n.text("choices.parent_first", "Choose {field} first.", { field: labelOf(parent) })
        : window.GatewayI18n.text("choices.above_first", "Choose the field above first."));
      select.dispatchEvent(new Event("change"));
      return;
    }
    var url = new URL(select.getAttribute("data-choices-url"), window.location.href);
    pairs.forEach(function (pair) { if (pair[1]) { url.searchParams.set(pair[0], pair[1]); } });
    select.disabled = true;
    select.setAttribute("aria-busy", "true");
    select.classList.add("loading");
    note(select, window.GatewayI18n.text("choices.loading", "Loading…"));
    fetch(url.toString(), { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        // Too many lists asked for (429): the API's words are about the request, not the list; say the list failed.
        if (response.status === 429) { return { ok: false, body: null }; }
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .catch(function () { return { ok: false, body: null }; })
      .then(function (answer) {
        if (select.pendingRefresh !== pending) { return; }  // a newer change asked again
        select.disabled = false;
        select.removeAttribute("aria-busy");
        select.classList.remove("loading");
        if (answer.ok) {
          setOptions(select, answer.body.choices || [], keep);
          note(select, answer.body.truncated ? window.GatewayI18n.text("choices.truncated", "Only the first {count} choices are offered.", { count: answer.body.choices.length }) : "");
        } else {
          setOptions(select, [], keep);
          // The API answers in English (for scripts and tools): its message only on an English page.
          var error = answer.body && answer.body.error;
          var english = window.GatewayI18n.language === "en";
          note(select, (english && error && error.message) || window.GatewayI18n.text("choices.failed", "The choices could not be loaded; submit the form to try again."));
        }
        select.dispatchEvent(new Event("change"));  // lists that depend on this one follow
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-searchable]").forEach(addSearch);
    document.querySelectorAll("select[data-choices-url]").forEach(function (select) {
      var parent = select.form && select.form.elements.namedItem(select.getAttribute("data-depends-on"));
      if (parent && parent.addEventListener) {
        parent.addEventListener("change", function () { refresh(select); });
      }
    });
  });
})();
