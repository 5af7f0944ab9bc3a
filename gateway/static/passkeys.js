/* Passkeys on /account/mfa (register) and /login/mfa (sign in): ask the gateway for a challenge,
 * let the browser's WebAuthn API answer it, and post the answer with the form. The gateway checks
 * everything; this script only moves bytes between the two (base64url in JSON, ArrayBuffers in
 * the browser API). Without WebAuthn (or without JavaScript) the forms say so and stay unused. */
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i += 1) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return { type: item.type, id: toBytes(item.id), transports: item.transports };
    });
  }

  function creationOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.user.id = toBytes(options.user.id);
    options.excludeCredentials = descriptors(options.excludeCredentials);
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.allowCredentials = descriptors(options.allowCredentials);
    return options;
  }

  function created(credential) {
    var response = credential.response;
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: toText(response.clientDataJSON),
        attestationObject: toText(response.attestationObject),
        transports: response.getTransports ? response.getTransports() : []
      },
      clientExtensionResults: credential.getClientExtensionResults()
    };
  }

  function asserted(credential) {
    var response = credential.response;
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: toText(response.clientDataJSON),
        authenticatorData: toText(response.authenticatorData),
        signature: toText(response.signature),
        userHandle: response.userHandle ? toText(response.userHandle) : null
      },
      clientExtensionResults: credential.getClientExtensionResults()
    };
  }

  function wire(form, ceremony) {
    var status = form.querySelector("[data-passkey-status]");
    if (!window.PublicKeyCredential || !navigator.credentials) {
      if (status) { status.textContent = window.GatewayI18n.text("passkey.unsupported", "This browser cannot use passkeys."); }
      form.querySelector("button").disabled = true;
      return;
    }
    form.addEventListener("submit", function (event) {
      if (form.dataset.ready === "1") { return; }
      event.preventDefault();
      if (status) { status.textContent = window.GatewayI18n.text("passkey.waiting", "Waiting for your passkey…"); }
      fetch(form.dataset.options, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" }
      }).then(function (response) {
        if (!response.ok) { throw new Error(window.GatewayI18n.text("passkey.refused", "The gateway refused the request ({status}).", { status: response.status })); }
        return response.json();
      }).then(ceremony).then(function (answer) {
        form.querySelector('input[name="credential"]').value = JSON.stringify(answer);
        form.dataset.ready = "1";
        form.submit();
      }).catch(function (error) {
        if (status) { status.textContent = window.GatewayI18n.text("passkey.not_used", "No passkey was used: {reason}", { reason: error.message }); }
      });
    });
  }

  var register = document.getElementById("passkey-register");
  if (register) {
    wire(register, function (options) {
      return navigator.credentials.create({ publicKey: creationOptions(options) }).then(created);
    });
  }
  var signIn = document.getElementById("passkey-login");
  if (signIn) {
    wire(signIn, function (options) {
      return navigator.credentials.get({ publicKey: requestOptions(options) }).then(asserted);
    });
  }
}());
