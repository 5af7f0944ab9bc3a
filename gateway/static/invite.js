/* The invite page: copy the code from the link's #fragment into the form, then drop the fragment
 * from the address bar and history. The fragment is never sent to the server, so the code stays
 * out of access logs; without this script the user pastes it by hand. The script then asks whose
 * password the link sets (a POST with the code in its body, CSRF header) and says so on the page
 * (and in a hidden username field, for password managers); a refused link is said at once. */
(function () {
  "use strict";
  var field = document.getElementById("invite-code");
  var code = window.location.hash.slice(1);
  if (!field || !code) { return; }
  try { code = decodeURIComponent(code); } catch (e) { /* keep it as it is; the server refuses it */ }
  field.value = code;
  window.history.replaceState(null, "", window.location.pathname);
  if (!document.getElementById("code-error")) {
    document.getElementById("invite-code-field").hidden = true;
  }

  var holder = document.getElementById("invite-for");
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (!holder || !window.fetch) { return; }
  var body = new URLSearchParams();
  body.set("code", code);
  fetch(holder.getAttribute("data-name-url"), {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRFToken": meta ? meta.getAttribute("content") : "", "Accept": "application/json" },
    body: body
  }).then(function (response) {
    return response.json().then(function (answer) { return { ok: response.ok, answer: answer }; });
  }).then(function (result) {
    holder.textContent = "";
    if (result.ok && typeof result.answer.username === "string") {
      holder.className = "invite-for";
      // The sentence in the page's language, the name in bold where its {name} stands.
      var around = window.GatewayI18n.text("invite.for", "You are choosing the password for {name}.").split("{name}");
      var name = document.createElement("strong");
      name.id = "invite-name";
      name.textContent = result.answer.username;
      holder.appendChild(document.createTextNode(around[0]));
      holder.appendChild(name);
      holder.appendChild(document.createTextNode(around.slice(1).join("")));
      var username = document.getElementById("invite-username");
      if (username) { username.value = result.answer.username; }
    } else if (result.answer && typeof result.answer.error === "string") {
      holder.className = "error";
      holder.textContent = result.answer.error;
    } else {
      return;
    }
    holder.hidden = false;
  }).catch(function () { /* the form still works: the server checks the link when it is sent */ });
}());
