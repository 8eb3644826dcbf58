// A link that asks for work (ui/linkconfirm.ts): the controls show what it asks for, and nothing
// the link wants is loaded or run before the user's Run; the URL is held meanwhile (state.ts).

import { $view, holdUrl, setView, syncUrl, type UrlState } from "../state";
import { type LinkWork, linkConfirmBar } from "../ui/linkconfirm";
import type { App } from "./app";
import { run } from "./run";

/** Show what the link asks for in the controls and ask; load or run nothing the link wants. */
export function askLink(app: App, work: LinkWork, u: UrlState, plainModel: string): void {
  holdUrl(true);
  app.linkAsk = linkConfirmBar(work, {
    run: () => {
      app.linkAsk = null;
      holdUrl(false);
      if (work.loadModel) app.models.load(work.model);
      if (!work.prompt) return;
      setView({ head: u.head ?? null, neuron: u.neuron ?? null, foil: u.foil ?? null });
      app.cmpPending = u.compare ?? "";
      run(app, { target: u.target, sel: u.sel ?? null });
    },
    dismiss: () => {
      app.linkAsk = null;
      holdUrl(false);
      if ($view.get().model !== plainModel) app.models.load(plainModel);
      else syncUrl();
    },
  });
  app.linkSlot.replaceChildren(app.linkAsk.el);
  if (!work.loadModel) app.models.load(work.model); // the default model, as a plain visit loads it
  else app.models.show(work.model, { model: work.model, state: "absent" });
}
