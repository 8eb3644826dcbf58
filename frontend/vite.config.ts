import { build, defineConfig, type Plugin } from "vite";
import { resolve } from "node:path";
import { viewerConfig } from "./vite.viewer.config.ts";

// `npm run dev` proxies /api to a running `routelens serve` (default http://127.0.0.1:8000;
// ROUTELENS_API=http://127.0.0.1:8123 to change it). `npm run dev:mock` answers /api from
// dev/mock-api.ts instead (synthetic data, no Python needed).
const api = process.env.ROUTELENS_API ?? "http://127.0.0.1:8000";
const mock = !!process.env.ROUTELENS_MOCK;

async function mockPlugin(): Promise<Plugin[]> {
  if (!mock) return [];
  const { mockApi } = await import("./dev/mock-api.ts");
  return [mockApi()];
}

// After the app, the standalone viewer (vite.viewer.config.ts) into <outDir>/viewer, so that
// `npm run build` (and `npm run build -- --outDir DIR`) writes both.
function viewerBuild(): Plugin {
  let outDir = "";
  return {
    name: "routelens-viewer-build",
    apply: "build",
    configResolved(config) {
      outDir = resolve(config.root, config.build.outDir);
    },
    async closeBundle() {
      await build(viewerConfig(resolve(outDir, "viewer")));
    },
  };
}

export default defineConfig(async () => ({
  base: "./",
  plugins: [...(await mockPlugin()), viewerBuild()],
  build: {
    outDir: "../routelens/server/static",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    target: "es2022",
    chunkSizeWarningLimit: 600,
  },
  server: {
    host: "127.0.0.1",
    port: 5173,
    proxy: mock ? undefined : { "/api": { target: api, changeOrigin: true } },
  },
  preview: { host: "127.0.0.1" },
}));
