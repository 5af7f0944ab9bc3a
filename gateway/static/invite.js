/* The invite page: copy the code from the link's #fragment into the form, then drop the fragment
 * from the address bar and history. The fragment is never sent to the server, so the code stays
 * out of access logs; without this script the user pastes it by hand. */
(function () {
  "use strict";
  var field = document.getElementById("invite-code");
  var code = window.location.hash.slice(1);
  if (!field || !code) { return; }
  field.value = decodeURIComponent(code);
  window.history.replaceState(null, "", window.location.pathname);
  if (!document.getElementById("code-error")) {
    document.getElementById("invite-code-field").hidden = true;
  }
}());
