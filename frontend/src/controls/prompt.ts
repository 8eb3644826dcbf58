// The prompt row: the prompt list (preloaded, plus the user's own kept in this browser; add,
// remove, import a file), the prompt box, the chat-template switch, the proximity norm, and the
// Run button with what the run will cost (estimate.ts).

import { listenKeys } from "nanostores";
import { ApiError } from "../api";
import { EstimateBox } from "../estimate";
import { normaliseLineEnds, promptLines } from "../prompts";
import { $view } from "../state";
import type { Config } from "../types";
import { fill, h, truncate } from "../ui/dom";

const PROMPTS_KEY = "routelens.prompts";

export interface PromptBarHooks {
  config: Config;
  run(): void;
  /** The norm changed: a trace shown is run again with it. */
  normChanged(): void;
  /** A link waits for the user's choice: no estimate for what it filled in. */
  linkWaiting(): boolean;
  showError(err: unknown): void;
}

export class PromptBar {
  readonly select: HTMLSelectElement;
  readonly input: HTMLTextAreaElement;
  readonly count: HTMLSpanElement;
  readonly addBtn: HTMLButtonElement;
  readonly removeBtn: HTMLButtonElement;
  readonly importInput: HTMLInputElement;
  readonly importBtn: HTMLButtonElement | null;
  readonly chatBox: HTMLInputElement;
  readonly normSelect: HTMLSelectElement;
  readonly runBtn: HTMLButtonElement;
  readonly estimate: EstimateBox;

  constructor(private o: PromptBarHooks) {
    const c = o.config;
    this.select = h("select", { class: "prompt-select", "data-testid": "prompt-select", "aria-label": "prompt list" });
    this.select.addEventListener("change", () => {
      const v = this.select.value;
      if (v) {
        this.text = v;
        this.estimate.schedule();
      }
    });
    this.input = h("textarea", {
      "data-testid": "prompt-input",
      class: "prompt-input",
      rows: 1,
      spellcheck: "false",
      placeholder: "Type a prompt…  (Ctrl+Enter runs)",
      "aria-label": "prompt",
    });
    // no maxlength: a longer prompt is refused by the server with a message that says so
    this.input.addEventListener("input", () => {
      this.onEdit();
      this.estimate.schedule(); // the user typed: what the run will cost, once typing stops
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        o.run();
      }
    });
    this.count = h("span", { class: "prompt-count muted small" });
    this.addBtn = h("button", { class: "btn", "data-testid": "add-prompt", title: "keep this prompt in your list (stored in this browser)", onclick: () => this.add() }, "Add to list");
    this.removeBtn = h("button", { class: "btn subtle", "data-testid": "remove-prompt", title: "remove this prompt from your list", onclick: () => this.remove(), hidden: true }, "Remove");
    this.importInput = h("input", { type: "file", "data-testid": "import-input", accept: ".txt,.json,.jsonl,text/plain,application/json", hidden: true });
    this.importInput.addEventListener("change", () => this.importFile(this.importInput));
    this.importBtn = c.allow_loading_dataset_files && !c.demo_mode ? h("button", { class: "btn subtle", title: "add prompts from a .txt (one per line), .json or .jsonl file", onclick: () => this.importInput.click() }, "Import…") : null;
    this.chatBox = h("input", { type: "checkbox", "data-testid": "chat-toggle" });
    this.chatBox.addEventListener("change", () => {
      $view.setKey("chat", this.chatBox.checked);
      this.estimate.schedule();
    });
    this.normSelect = h(
      "select",
      { "data-testid": "norm-select", title: "proximity norm of the importances (routes-math.md §3): L1 is the paper's choice" },
      h("option", { value: "l1" }, "L1 proximity"),
      h("option", { value: "l2" }, "L2 proximity"),
    );
    this.normSelect.addEventListener("change", () => {
      $view.setKey("norm", this.normSelect.value as "l1" | "l2");
      o.normChanged();
    });
    listenKeys($view, ["chat", "norm"], (v) => {
      this.chatBox.checked = v.chat;
      this.normSelect.value = v.norm;
    });
    this.runBtn = h("button", { class: "btn primary run", "data-testid": "run-button", onclick: () => o.run() }, "Run");
    this.estimate = new EstimateBox(() => (o.linkWaiting() ? null : { model: $view.get().model || null, prompt: this.input.value, chat: $view.get().chat }));
    this.refreshList();
  }

  get text(): string {
    return this.input.value;
  }

  set text(v: string) {
    this.input.value = v;
    this.onEdit();
  }

  setBusy(b: boolean): void {
    this.runBtn.disabled = b;
    this.runBtn.classList.toggle("busy", b);
    this.runBtn.textContent = b ? "Running…" : "Run";
  }

  private userPrompts(): string[] {
    try {
      const v = JSON.parse(localStorage.getItem(PROMPTS_KEY) ?? "[]");
      return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
    } catch {
      return [];
    }
  }

  private saveUserPrompts(list: string[]): void {
    try {
      localStorage.setItem(PROMPTS_KEY, JSON.stringify(list.slice(0, 500)));
    } catch {
      this.o.showError(new ApiError("Could not save the prompt list in this browser (storage full or disabled).", "storage", 0, "localStorage"));
    }
  }

  private refreshList(): void {
    const opt = (p: string) => h("option", { value: p, title: p }, truncate(p.replace(/\s+/g, " "), 60));
    const mine = this.userPrompts();
    fill(
      this.select,
      h("option", { value: "" }, "Choose…"),
      this.o.config.prompts.length ? h("optgroup", { label: "Preloaded" }, this.o.config.prompts.map(opt)) : null,
      mine.length ? h("optgroup", { label: "Your prompts" }, mine.map(opt)) : null,
    );
    this.onEdit();
  }

  /** The prompt changed: its length against the limit, the list's choice, Add / Remove, the height. */
  private onEdit(): void {
    const v = this.input.value;
    const max = this.o.config.max_user_string_length;
    this.count.textContent = max && (v.length > max * 0.7 || this.o.config.demo_mode) ? `${v.length}/${max}` : "";
    this.count.classList.toggle("over", !!max && v.length >= max);
    const inList = [...this.select.options].some((o) => o.value === v && v);
    this.select.value = inList ? v : "";
    const mine = this.userPrompts().includes(v);
    this.removeBtn.hidden = !mine;
    this.addBtn.disabled = !v.trim() || mine || this.o.config.prompts.includes(v);
    // grow up to 4 lines
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight + 2, 78)}px`;
  }

  private add(): void {
    const v = this.input.value;
    if (!v.trim()) return;
    const list = this.userPrompts().filter((p) => p !== v);
    list.unshift(v);
    this.saveUserPrompts(list);
    this.refreshList();
  }

  private remove(): void {
    const v = this.input.value;
    this.saveUserPrompts(this.userPrompts().filter((p) => p !== v));
    this.refreshList();
  }

  private async importFile(input: HTMLInputElement): Promise<void> {
    const file = input.files?.[0];
    input.value = "";
    if (!file) return;
    const bytes = await file.arrayBuffer();
    let found: string[] = [];
    const pick = (x: unknown): string | null => (typeof x === "string" ? x : x && typeof x === "object" ? (((x as Record<string, unknown>).prompt ?? (x as Record<string, unknown>).text ?? null) as string | null) : null);
    try {
      // the server's reading (prompts.ts): UTF-8 or refused, the byte-order mark dropped, CR / CRLF as LF
      const text = normaliseLineEnds(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
      if (/\.json$/i.test(file.name)) {
        const data = JSON.parse(text);
        found = (Array.isArray(data) ? data : (data.prompts ?? [])).map(pick).filter((x: string | null): x is string => !!x);
      } else if (/\.jsonl$/i.test(file.name)) {
        found = promptLines(text)
          .map((l) => pick(JSON.parse(l)))
          .filter((x): x is string => !!x);
      } else {
        found = promptLines(text);
      }
    } catch (err) {
      this.o.showError(new ApiError(`Could not read ${file.name}: ${(err as Error).message}. Use a .txt file (one prompt per line), a JSON list, or JSON lines.`, "bad_file", 0, "import"));
      return;
    }
    const max = this.o.config.max_user_string_length || Infinity;
    const ok = found.filter((p) => p.length <= max);
    const list = this.userPrompts();
    for (const p of ok) if (!list.includes(p)) list.push(p);
    this.saveUserPrompts(list);
    this.refreshList();
    if (ok.length < found.length) this.o.showError(new ApiError(`${found.length - ok.length} prompt(s) longer than ${max} characters were left out.`, "prompt_too_long", 0, "import"));
  }
}
