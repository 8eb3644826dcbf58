// The legend of the route graph's marks, shared by the web app and the standalone viewer.

import { h } from "../ui/dom";
import { COLORS } from "./style";

export function legend(extraClass = ""): HTMLElement {
  return h(
    "div",
    { class: `legend small${extraClass ? " " + extraClass : ""}`, "aria-label": "legend" },
    h("span", null, h("i", { class: "lg-line", style: `background:${COLORS.attn}` }), "attention"),
    h("span", null, h("i", { class: "lg-line thin", style: `background:${COLORS.resid}` }), "residual"),
    h("span", null, h("i", { class: "lg-line", style: `background:${COLORS.ffn}` }), "FFN"),
    h("span", { class: "lg-sep" }),
    h("span", { title: "residual after the whole block" }, h("i", { class: "lg-dot", style: `background:${COLORS.block}` }), "block"),
    h("span", { title: "residual after attention" }, h("i", { class: "lg-dot ring", style: `border-color:${COLORS.attn}` }), "attn"),
    h("span", null, h("i", { class: "lg-sq", style: `background:${COLORS.ffn}` }), "ffn"),
    h("span", null, h("i", { class: "lg-sq", style: `background:${COLORS.embed}` }), "embed"),
  );
}
