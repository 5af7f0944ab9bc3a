// The scripts' strings in the page's language: the server renders them into <html data-messages>
// (gateway/i18n/scripts.py); GatewayI18n.text("copy.copied", "Copied") reads one, and fills
// {name} placeholders from an object: text("key", "Only the first {n}", {n: 3}).
(function () {
  "use strict";
  var messages = {};
  try { messages = JSON.parse(document.documentElement.getAttribute("data-messages") || "{}"); } catch (e) { messages = {}; }
  function text(key, fallback, values) {
    var found = Object.prototype.hasOwnProperty.call(messages, key) ? String(messages[key]) : String(fallback || key);
    return found.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, function (whole, name) {
      return values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }
  window.GatewayI18n = { text: text, language: document.documentElement.lang || "en" };
})();
