// Downloads of the current view: the pruned graph as JSON, the drawing as standalone SVG, and
// that SVG rendered to PNG through a canvas.

import { download } from "../ui/dom";

export function exportJson(graph: unknown, filename: string): void {
  download(new Blob([JSON.stringify(graph, null, 1)], { type: "application/json" }), filename);
}

export function exportSvg(text: string, filename: string): void {
  download(new Blob([text], { type: "image/svg+xml" }), filename);
}

/** Render an SVG document to a PNG (2x where the size allows, capped to what canvases take). */
export async function svgToPng(text: string, width: number, height: number): Promise<Blob> {
  const maxSide = 16000;
  const maxArea = 120e6;
  const scale = Math.max(0.05, Math.min(2, maxSide / width, maxSide / height, Math.sqrt(maxArea / (width * height))));
  const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml;charset=utf-8" }));
  try {
    const img = new Image();
    img.decoding = "async";
    await new Promise<void>((resolve, reject) => {
      img.onload = () => resolve();
      img.onerror = () => reject(new Error("the browser could not render the SVG to an image"));
      img.src = url;
    });
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(width * scale));
    canvas.height = Math.max(1, Math.round(height * scale));
    const ctx = canvas.getContext("2d")!;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    return await new Promise<Blob>((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the PNG is too large for this browser"))), "image/png"));
  } finally {
    URL.revokeObjectURL(url);
  }
}

export async function exportPng(text: string, width: number, height: number, filename: string): Promise<void> {
  download(await svgToPng(text, width, height), filename);
}
