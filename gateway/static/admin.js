/* Admin actions (loaded by the admin pages and the account page). Everything works without it:
 * - A form with data-confirm="Really ...?" is confirmed in a dialog here; without JavaScript the
 *   server answers the first POST with a confirmation page instead (gateway.admin.shared).
 *   Confirming adds confirm=yes and submits the form; Cancel or Escape changes nothing and puts
 *   the focus back on the button that asked.
 * - After a change the server redirects to the control's id (#grant:ops:uptime): the focus goes
 *   back to that control, so a keyboard user carries on where they were. A form that came back
 *   with errors puts the focus on its first invalid field. */
(function () {
  "use strict";

  var dialog = null;

  function buildDialog() {
    var box = document.createElement("dialog");
    box.className = "confirm-dialog";
    box.setAttribute("aria-labelledby", "confirm-dialog-question");
    box.setAttribute("aria-describedby", "confirm-dialog-note");
    var question = document.createElement("h2");
    question.id = "confirm-dialog-question";
    var note = document.createElement("p");
    note.id = "confirm-dialog-note";
    var actions = document.createElement("div");
    actions.className = "confirm-actions";
    var yes = document.createElement("button");
    yes.type = "button";
    yes.className = "danger";
    yes.setAttribute("data-role", "confirm");
    var no = document.createElement("button");
    no.type = "button";
    no.textContent = window.GatewayI18n.text("confirm.cancel", "Cancel");
    no.setAttribute("data-role", "cancel");
    actions.append(yes, no);
    box.append(question, note, actions);
    document.body.appendChild(box);
    return box;
  }

  function ask(form, opener) {
    if (!dialog) { dialog = buildDialog(); }
    dialog.querySelector("#confirm-dialog-question").textContent = form.getAttribute("data-confirm");
    dialog.querySelector("#confirm-dialog-note").textContent = form.getAttribute("data-confirm-note") || "";
    var yes = dialog.querySelector('[data-role="confirm"]');
    var no = dialog.querySelector('[data-role="cancel"]');
    yes.textContent = form.getAttribute("data-confirm-button") || window.GatewayI18n.text("confirm.confirm", "Confirm");
    function done(confirmed) {
      yes.onclick = null;
      no.onclick = null;
      dialog.onclose = null;
      if (dialog.open) { dialog.close(); }
      if (confirmed) {
        var field = document.createElement("input");
        field.type = "hidden";
        field.name = "confirm";
        field.value = "yes";
        form.appendChild(field);
        form.submit();
      } else if (opener) {
        opener.focus();
      }
    }
    yes.onclick = function () { done(true); };
    no.onclick = function () { done(false); };
    // Escape. The close event comes a task after the dialog closed: one still queued from the last
    // question (Escape, then Enter at once) finds the dialog open again, asking this one; not its answer.
    dialog.onclose = function () { if (!dialog.open) { done(false); } };
    dialog.showModal();
    yes.focus();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute || !form.hasAttribute("data-confirm")) { return; }
    if (form.querySelector('input[name="confirm"]')) { return; }
    event.preventDefault();
    ask(form, event.submitter || form.querySelector('button[type="submit"]'));
  });

  function focusable(element) {
    if (element.matches("button, input, select, textarea, a[href]")) { return element; }
    return element.querySelector("button, input:not([type=hidden]), select, textarea, a[href]");
  }

  function restoreFocus() {
    var target = null;
    if (window.location.hash.length > 1) {
      var id = window.location.hash.slice(1);
      try { id = decodeURIComponent(id); } catch (e) { /* keep it as it is */ }
      target = document.getElementById(id);
    }
    if (!target) { target = document.querySelector('form [aria-invalid="true"]'); }
    if (!target) { return; }
    var control = focusable(target);
    if (control) {
      control.focus();
      control.scrollIntoView({ block: "center" });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", restoreFocus);
  } else {
    restoreFocus();
  }
}());
