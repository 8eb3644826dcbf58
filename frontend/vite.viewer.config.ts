// The standalone viewer (src/viewer.ts): one classic script, routelens/server/static/viewer/viewer.js,
// with its CSS inside it. `npm run build` builds it right after the app (vite.config.ts calls
// viewerConfig() with the app's outDir + "/viewer"); `npm run build:viewer` builds it alone.
//
// The viewer lands in other people's pages (self-contained HTML exports, notebook cells), so the
// app's styles.css that it reuses is scoped at build time: every rule is put under .rlv (the
// viewer's root element), :root becomes .rlv, and page-level rules (html, body, #ids) are left
// out. The bundle must not contain "</" (it is inlined in <script> elements).

import { resolve } from "node:path";
import type { InlineConfig, Plugin } from "vite";
import type { AtRule, Plugin as PostcssPlugin, Rule } from "postcss";

const HERE = import.meta.dirname;
export const SCOPE = ".rlv";

/** PostCSS: scope every rule of the viewer's CSS under SCOPE (see above). */
export function scopeCss(): PostcssPlugin {
  return {
    postcssPlugin: "routelens-viewer-scope",
    Once(root) {
      const frames = new Map<string, string>();
      root.walkAtRules(/keyframes$/i, (at: AtRule) => {
        const name = `rlv-${at.params.trim()}`;
        frames.set(at.params.trim(), name);
        at.params = name;
      });
      root.walkRules((rule: Rule) => {
        const parent = rule.parent as AtRule | undefined;
        if (parent?.type === "atrule" && /keyframes$/i.test(parent.name)) return;
        const out: string[] = [];
        for (const raw of rule.selectors) {
          const sel = raw.trim();
          if (sel === SCOPE || sel.startsWith(SCOPE + " ") || sel.startsWith(SCOPE + ".") || sel.startsWith(SCOPE + ":")) out.push(sel);
          else if (sel === ":root") out.push(SCOPE);
          else if (/^(html|body)\b/.test(sel) || sel.startsWith("#")) continue; // the app's page-level rules
          else out.push(`${SCOPE} ${sel}`);
        }
        if (out.length) rule.selectors = out;
        else rule.remove();
      });
      if (frames.size) {
        root.walkDecls(/^animation(-name)?$/i, (d) => {
          d.value = d.value.replace(/[\w-]+/g, (w) => frames.get(w) ?? w);
        });
      }
    },
  };
}

/** Refuse a bundle that could end the <script> element it is inlined in. */
function scriptSafe(): Plugin {
  return {
    name: "routelens-viewer-script-safe",
    generateBundle(_opts, bundle) {
      for (const [name, item] of Object.entries(bundle)) {
        const text = item.type === "chunk" ? item.code : typeof item.source === "string" ? item.source : "";
        if (/<\/|<!--/.test(text)) this.error(`${name} contains "</" or "<!--": it could not be inlined in a <script> element`);
      }
    },
  };
}

export function viewerConfig(outDir: string): InlineConfig {
  return {
    configFile: false,
    root: HERE,
    base: "./",
    publicDir: false,
    logLevel: "warn",
    css: { postcss: { plugins: [scopeCss()] } },
    plugins: [scriptSafe()],
    build: {
      outDir,
      emptyOutDir: true,
      copyPublicDir: false,
      sourcemap: false,
      target: "es2022",
      minify: true,
      reportCompressedSize: false,
      chunkSizeWarningLimit: 600,
      lib: {
        entry: resolve(HERE, "src/viewer.ts"),
        formats: ["iife"],
        name: "routelensViewer",
        fileName: () => "viewer.js",
      },
    },
  };
}

export default viewerConfig(resolve(HERE, "../routelens/server/static/viewer"));
