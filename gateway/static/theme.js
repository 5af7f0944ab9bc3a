/* Theme and header menu. Loaded in <head> without defer, so the stored theme applies before the
 * first paint (no flash of the wrong colours).
 * - Theme: the system's (prefers-color-scheme) until someone presses the header's toggle; the
 *   choice ("light" or "dark") is kept per browser in localStorage and set as html[data-theme],
 *   which gateway.css reads (color-scheme). Without JavaScript the system's theme applies.
 * - Menu: on a phone the header's navigation folds behind a Menu button (aria-expanded);
 *   Escape closes it and returns focus to the button. Without JavaScript the navigation shows.
 * No inline script anywhere: the Content-Security-Policy forbids it. */
(function () {
  "use strict";

  var KEY = "gateway-theme";
  var root = document.documentElement;

  function stored() {
    try { return window.localStorage.getItem(KEY); } catch (e) { return null; }
  }

  function systemDark() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }

  function current() {
    var choice = root.getAttribute("data-theme");
    if (choice === "light" || choice === "dark") { return choice; }
    return systemDark() ? "dark" : "light";
  }

  var choice = stored();
  if (choice === "light" || choice === "dark") { root.setAttribute("data-theme", choice); }
  root.classList.add("js");  // before the first paint: the phone header starts folded

  function showToggle(button) {
    var dark = current() === "dark";
    button.setAttribute("aria-pressed", dark ? "true" : "false");
  }

  function setUpToggle() {
    var button = document.getElementById("theme-toggle");
    if (!button) { return; }
    showToggle(button);
    button.addEventListener("click", function () {
      var next = current() === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { window.localStorage.setItem(KEY, next); } catch (e) { /* private mode: this page only */ }
      showToggle(button);
    });
    if (window.matchMedia) {
      window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () { showToggle(button); });
    }
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
    setUpToggle();
    setUpMenu();
  });
})();
