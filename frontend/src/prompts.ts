// The one reading of prompt text (docs/api.md, "Prompt files"), the same rule as the server's
// routelens/prompts.py (keep the two in step): a byte-order mark at the start is dropped; CRLF,
// CR and LF all end a line (no other character does); a line is one prompt exactly as written,
// leading and trailing spaces included (" Paris" and "Paris" are different tokens); lines that
// are empty or hold only spaces, tabs, form feeds and vertical tabs are skipped (that set, not
// String.trim, so that both sides skip the same lines).

/** The text without a leading byte-order mark, its line ends as LF. */
export function normaliseLineEnds(text: string): string {
  return text.replace(/^\uFEFF/, "").replace(/\r\n?/g, "\n");
}

/** The prompts of a text, one a line. */
export function promptLines(text: string): string[] {
  return normaliseLineEnds(text)
    .split("\n")
    .filter((l) => /[^ \t\f\v]/.test(l));
}
