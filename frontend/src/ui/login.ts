// The access-token dialog: shown when the server answers 401 "unauthorized" (it was started with
// --token or $ROUTELENS_TOKEN). The token goes into one POST /api/login, whose HttpOnly cookie
// then carries it; the page keeps no copy (the input is emptied as soon as it is sent).

import { ApiError, isUnauthorized } from "../api";
import { h } from "./dom";

/** Ask for the token until the server takes it (true) or the user cancels (false). */
export function askToken(login: (token: string) => Promise<void>, cause?: ApiError): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const input = h("input", {
      type: "password",
      class: "token-input",
      "data-testid": "token-input",
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": "access token",
      placeholder: "access token",
    });
    const error = h("p", { class: "token-error", "data-testid": "token-error", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", class: "btn primary", "data-testid": "token-submit" }, "Unlock");
    const cancel = h("button", { type: "button", class: "btn subtle", "data-testid": "token-cancel" }, "Cancel");
    // a cookie the server no longer takes (it was restarted with another token) says so
    const stale = cause && /^wrong/i.test(cause.message);
    const form = h(
      "form",
      { class: "token-form", novalidate: true },
      h("h2", { id: "token-title" }, "Access token"),
      h(
        "p",
        { class: "token-note" },
        stale ? "The token this browser had is no longer accepted. " : null,
        "This routelens server needs its access token. Ask whoever runs it (",
        h("code", null, "routelens serve --token …"),
        ").",
      ),
      input,
      error,
      h("div", { class: "token-actions" }, cancel, submit),
    );
    const dialog = h("dialog", { class: "token-dialog", "data-testid": "token-dialog", "aria-labelledby": "token-title" }, form);

    let busy = false;
    const finish = (ok: boolean) => {
      input.value = "";
      if (dialog.open) dialog.close();
      dialog.remove();
      resolve(ok);
    };
    const showError = (text: string) => {
      error.textContent = text;
      error.hidden = false;
      input.focus();
    };
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (busy) return;
      const token = input.value;
      input.value = ""; // the page keeps no copy: a retry is typed again
      if (!token.trim()) {
        showError("Enter the access token.");
        return;
      }
      busy = true;
      submit.disabled = true;
      submit.textContent = "Checking…";
      error.hidden = true;
      try {
        await login(token);
        finish(true);
      } catch (err) {
        showError(
          isUnauthorized(err)
            ? `Wrong token: ${err.message.replace(/^wrong access token:\s*/i, "")}. Try again.`
            : `Could not log in: ${(err as Error).message}`,
        );
      } finally {
        busy = false;
        submit.disabled = false;
        submit.textContent = "Unlock";
      }
    });
    cancel.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", (e) => {
      // Escape: give up, as Cancel does (the calls that waited show their error)
      e.preventDefault();
      if (!busy) finish(false);
    });

    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}
