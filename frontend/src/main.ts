// routelens web app: the entry point. The parts, each in its own module:
//   state.ts                the view store (model, prompt, target, threshold, selection…) and the URL
//   app/app.ts              the shared runtime and init; app/page.ts builds the page
//   controls/*              model picker, prompt row, predictions strip, threshold, graph toolbar
//   panels/inspector.ts     which panel a selection opens (panels/*: the panels)
//   app/run.ts, route.ts, target.ts, threshold.ts, relayout.ts, selection.ts, file.ts, export.ts
//                           the flows: trace, fetch and draw the route, refine, target, threshold…
//   app/keys.ts, debugpanel.ts, debughook.ts   keyboard and help, debug panel, window.__routelensDebug
//   why/*                   asking why: the foil picker, direct logit attribution, the knockout check
//   gen/*                   generating a continuation and stepping through its routes
//   compare/*               two prompts' routes compared (edges coloured by the change)
//   dataset/*               the dataset view: an analysis's heatmaps, a head's prompts opened as routes

import "./styles.css";
import { App } from "./app/app";

new App().init();
