// Building the page: the top bar (model, prompt, run), the link and error banners, the predictions
// strip, the graph section (toolbar, route line, drawing) and the resizable inspector; each part's
// events go to the flow that handles them.

import { onRequest } from "../api";
import { ModelPicker } from "../controls/model";
import { PredictionsStrip } from "../controls/predictions";
import { PromptBar } from "../controls/prompt";
import { RouteLine } from "../controls/routeline";
import { ThresholdControl } from "../controls/threshold";
import { graphToolbar, toggleFullscreen } from "../controls/toolbar";
import { GraphView } from "../graph/view";
import { Inspector } from "../panels/inspector";
import { $view } from "../state";
import { clamp, h, icon } from "../ui/dom";
import { Banner, Overlay } from "../ui/notices";
import type { App } from "./app";
import { DebugPanel } from "./debugpanel";
import { exportAs } from "./export";
import { installDrop, openFile } from "./file";
import { installKeys, toggleHelp } from "./keys";
import { run } from "./run";
import { select } from "./selection";
import { setTarget } from "./target";
import { applyThreshold, limits } from "./threshold";
import { setCompact } from "./relayout";
import { Why } from "../why/why";

const SIDE_KEY = "routelens.sideWidth";

export function buildPage(app: App): void {
  const c = app.config;
  document.body.classList.toggle("demo", c.demo_mode);
  app.banner = new Banner();
  app.overlay = new Overlay();
  app.linkSlot = h("div", { class: "banner-slot" });
  const showError = (err: unknown) => app.banner.show(err);

  app.models = new ModelPicker({
    config: c,
    customAllowed: app.customAllowed(),
    choosing: () => app.dropLinkAsk(),
    chosen: () => app.prompts.estimate.schedule(),
    traceFacts: (model) => (app.trace?.model === model ? (app.trace.facts ?? null) : null),
    showError,
  });
  app.prompts = new PromptBar({
    config: c,
    run: () => run(app),
    normChanged: () => {
      const v = $view.get();
      if (app.trace && !app.file) run(app, { target: v.target, sel: v.sel });
    },
    linkWaiting: () => !!app.linkAsk,
    showError,
  });
  const p = app.prompts;
  const brand = h(
    "div",
    { class: "brand" },
    h("span", { class: "logo", "aria-hidden": "true" }, "◭"),
    h("span", null, "routelens"),
    c.demo_mode ? h("span", { class: "badge" }, "demo") : null,
  );
  const debug = c.debug ? new DebugPanel(app) : null;
  if (debug) app.renderDebug = () => debug.render();
  const top = h(
    "header",
    { class: "topbar" },
    h(
      "div",
      { class: "row" },
      brand,
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Model"), app.models.select),
      app.models.customBox,
      app.models.pill,
      app.models.facts,
      h("div", { class: "spacer" }),
      p.normSelect,
      debug ? h("button", { class: "btn subtle", "data-testid": "debug-toggle", onclick: () => debug.toggle() }, "Debug") : null,
      h("button", { class: "icon-btn", title: "keyboard shortcuts", onclick: toggleHelp }, "?"),
    ),
    h(
      "div",
      { class: "row prompt-row" },
      h("label", { class: "field" }, h("span", { class: "field-label" }, "Prompt"), p.select),
      h("div", { class: "prompt-wrap" }, p.input, p.count),
      p.addBtn,
      p.removeBtn,
      p.importBtn,
      p.importInput,
      h("label", { class: "check", title: "wrap the prompt in the model's chat template (instruct models)" }, p.chatBox, " Chat template"),
      h("div", { class: "run-wrap" }, p.runBtn, p.estimate.el),
    ),
  );

  app.preds = new PredictionsStrip((t) => setTarget(app, t));

  // graph section
  app.thresholdCtl = new ThresholdControl({ apply: (tau, dragging) => applyThreshold(app, tau, dragging), setCompact: (on) => setCompact(app, on), compact: app.compact, min: limits.fetchMin });
  app.routeLine = new RouteLine();
  app.why = new Why(app);
  const toolbar = graphToolbar({
    threshold: app.thresholdCtl,
    view: () => app.view,
    exportAs: (fmt) => exportAs(app, fmt),
    openFile: (f) => openFile(app, f),
    fullscreen: () => toggleFullscreen(app.graphSection),
  });
  // the refinement's note sits at the right end of the route line: over neither the drawing nor
  // the toolbar, and its coming and going moves nothing
  app.graphSection = h("section", { class: "graph-section" }, toolbar, h("div", { class: "route-line" }, app.routeLine.el, app.refine.el), app.why.line, app.why.verify.card);
  app.thresholdCtl.counts.before(app.why.verify.button); // the knockout check, beside the threshold
  app.preds.el.append(app.why.foilBar.el); // the foil picker, under the predictions
  installDrop(app, app.graphSection);
  app.view = new GraphView(app.graphSection, {
    select: (s) => select(app, s),
    target: (pos) => setTarget(app, pos),
  });
  app.graphSection.append(app.overlay.el);
  app.overlay.set("Pick a model and a prompt, then press Run.");

  // the inspector, resizable
  app.inspector = new Inspector(app);
  const side = h(
    "aside",
    { class: "side" },
    h("div", { class: "side-tools" }, h("button", { class: "icon-btn", title: "fullscreen", onclick: () => toggleFullscreen(side) }, icon("fullscreen"))),
    app.inspector.body,
  );
  const resizer = sideResizer();
  const main = h("main", { class: "main" }, app.graphSection, resizer, side);

  app.root.replaceChildren(top, app.linkSlot, app.banner.el, app.preds.el, main);
  app.inspector.render();
  installKeys(app);
  if (debug) onRequest(() => debug.render());
}

/** The handle between the graph and the inspector; the width is kept in this browser. */
function sideResizer(): HTMLElement {
  const resizer = h("div", { class: "resizer", title: "drag to resize" });
  const savedW = Number(localStorage.getItem(SIDE_KEY));
  if (savedW > 200) document.documentElement.style.setProperty("--side-w", `${savedW}px`);
  resizer.addEventListener("pointerdown", (e) => {
    resizer.setPointerCapture(e.pointerId);
    const move = (ev: PointerEvent) => {
      const w = clamp(window.innerWidth - ev.clientX, 260, window.innerWidth * 0.7);
      document.documentElement.style.setProperty("--side-w", `${w}px`);
      localStorage.setItem(SIDE_KEY, String(Math.round(w)));
    };
    const up = () => {
      resizer.removeEventListener("pointermove", move);
      resizer.removeEventListener("pointerup", up);
    };
    resizer.addEventListener("pointermove", move);
    resizer.addEventListener("pointerup", up);
  });
  return resizer;
}
