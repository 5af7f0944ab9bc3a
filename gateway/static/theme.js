/* Theme and header menu. Loaded in <head> without defer, so the stored theme applies before the
 * first paint (no flash of the wrong colours).
 * - Theme: the header's "Theme" select offers System (the default), Light and Dark. Light or Dark
 *   is kept per browser in localStorage and set as html[data-theme], which gateway.css reads
 *   (color-scheme); System removes the stored choice and the attribute, and the page follows
 *   prefers-color-scheme live (the CSS does that, no script needed). Without JavaScript the
 *   select is hidden and the system's theme applies.
 * - Menu: on a phone the header's navigation folds behind a Menu button (aria-expanded);
 *   Escape closes it and returns focus to the button. Without JavaScript the navigation shows.
 * No inline script anywhere: the Content-Security-Policy forbids it. */
(function () {
  "use strict";

  var KEY = "gateway-theme";
  var root = document.documentElement;

  function stored() {
    var choice = null;
    try { choice = window.localStorage.getItem(KEY); } catch (e) { /* storage blocked: the system's */ }
    return choice === "light" || choice === "dark" ? choice : "system";
  }

  function apply(choice) {
    if (choice === "light" || choice === "dark") {
      root.setAttribute("data-theme", choice);
    } else {
      root.removeAttribute("data-theme");
    }
  }

  apply(stored());
  root.classList.add("js");  // before the first paint: the phone header starts folded

  function remember(choice) {
    try {
      if (choice === "system") {
        window.localStorage.removeItem(KEY);
      } else {
        window.localStorage.setItem(KEY, choice);
      }
    } catch (e) { /* private mode: this page only */ }
  }

  function setUpThemeChoice() {
    var select = document.getElementById("theme-choice");
    if (!select) { return; }
    function show() {
      var choice = stored();
      apply(choice);
      select.value = choice;
    }
    show();  // the server renders System; the stored choice replaces it
    select.addEventListener("change", function () {
      var choice = select.value === "light" || select.value === "dark" ? select.value : "system";
      remember(choice);
      apply(choice);
    });
    // Another tab chose, or this page comes back from the back/forward cache: show what is stored now.
    window.addEventListener("storage", function (event) { if (event.key === KEY || event.key === null) { show(); } });
    window.addEventListener("pageshow", function (event) { if (event.persisted) { show(); } });
  }

  function setUpMenu() {
    var button = document.getElementById("menu-toggle");
    var header = button && button.closest("header");
    if (!header) { return; }
    function close() {
      header.classList.remove("open");
      button.setAttribute("aria-expanded", "false");
    }
    button.addEventListener("click", function () {
      var open = !header.classList.contains("open");
      header.classList.toggle("open", open);
      button.setAttribute("aria-expanded", open ? "true" : "false");
    });
    header.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && header.classList.contains("open")) {
        close();
        button.focus();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpThemeChoice();
    setUpMenu();
  });
})();
