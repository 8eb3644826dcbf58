import { defineConfig, type Plugin } from "vite";

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

export default defineConfig(async () => ({
  base: "./",
  plugins: await mockPlugin(),
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
