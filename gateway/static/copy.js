/* Copy buttons: <button type="button" data-copy="#element-id"> copies that element's value
 * (an input) or text (anything else) and says so in its own label for a moment, which a
 * screen reader announces through the button's aria-live region. Without JavaScript the
 * buttons are hidden (class "js-only"), the text stays selectable. */
(function () {
  "use strict";

  function copied(button, label) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = label;
    window.setTimeout(function () { button.textContent = original; }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) { return; }
    var text = "value" in source && source.tagName !== "BUTTON" ? source.value : source.textContent;
    if (!navigator.clipboard) {
      if (source.select) { source.select(); }
      copied(button, button.getAttribute("data-copy-failed") || window.GatewayI18n.text("copy.failed", "Press Ctrl+C to copy"));
      return;
    }
    navigator.clipboard.writeText(text).then(
      function () { copied(button, button.getAttribute("data-copied") || window.GatewayI18n.text("copy.copied", "Copied")); },
      function () { copied(button, button.getAttribute("data-copy-failed") || window.GatewayI18n.text("copy.failed", "Press Ctrl+C to copy")); }
    );
  });
}());
