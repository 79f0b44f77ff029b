// HQL console: editor (Ctrl/Cmd+Enter runs), saved queries from queries/, results, and errors
// shown under the offending line with a caret.

import { get, post } from "../api.js";
import { h, table, errorBox, loading } from "../ui.js";

const DRAFT = "loupe.hql.draft";

export default async function hql(root, _filter, _params, ctx) {
  const editor = h("textarea.editor", { spellcheck: "false", "data-testid": "hql-editor" });
  editor.value = localStorage.getItem(DRAFT) || "requests\n| where created_at > ago(24h)\n| summarize requests = count(), cost = sum(cost_usd) by model\n| top 10 by cost";
  const out = h("div", { "data-testid": "hql-output" });
  const run = h("button.primary", { "data-testid": "hql-run" }, "Run");
  const stats = h("span.muted");
  const saved = h("div.saved", loading());
  const go = async () => {
    localStorage.setItem(DRAFT, editor.value);
    run.disabled = true;
    out.replaceChildren(loading());
    stats.textContent = "";
    try {
      const r = await post("/v1/hql", { query: editor.value });
      const cols = r.columns.map((c, i) => ({
        label: `${c.name}`,
        num: ["int", "float"].includes(c.type) || c.type.startsWith("decimal"),
        fmt: (row) => { const v = row[i]; return v !== null && typeof v === "object" ? JSON.stringify(v) : v; },
      }));
      out.replaceChildren(table(cols, r.rows, null, "hql-results"));
      stats.textContent = `${r.stats.rows} rows · ${r.stats.elapsed_ms.toFixed(1)} ms · ${r.stats.files_scanned} files`;
    } catch (e) {
      out.replaceChildren(queryError(editor.value, e));
    } finally {
      run.disabled = false;
    }
  };
  run.onclick = go;
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); go(); }
    if (e.key === "Tab") { e.preventDefault(); editor.setRangeText("  ", editor.selectionStart, editor.selectionEnd, "end"); }
  });
  root.append(h("div.hql",
    h("div.panel", h("h2", "Saved queries"), saved),
    h("div",
      h("div.panel", editor, h("div.run-row", run, h("span.muted", "Ctrl+Enter to run"), h("span.spacer"), stats)),
      h("div.panel", out))));
  editor.focus();
  try {
    const q = await get("/v1/queries");
    if (!ctx.isCurrent()) return;
    saved.replaceChildren(...q.queries.map((s) =>
      h("a", { href: "#", "data-testid": "saved-query", onclick: (e) => { e.preventDefault(); editor.value = s.query; go(); } },
        s.name, h("small", s.title || ""))));
  } catch (e) {
    saved.replaceChildren(errorBox(e));
  }
}

/** The error message, then the offending line with a caret under the column. */
function queryError(src, e) {
  const box = errorBox(e);
  const d = e.body || {};
  if (d.code) box.prepend(h("strong", `${d.code}: `));
  if (d.line) {
    const line = src.split("\n")[d.line - 1] || "";
    const width = d.span ? Math.max(1, [...src.slice(d.span[0], d.span[1])].length) : 1;
    const caret = " ".repeat(Math.max(0, d.column - 1)) + "^".repeat(Math.min(width, Math.max(1, line.length - d.column + 1)));
    box.append(h("pre", { "data-testid": "hql-caret" }, `${String(d.line).padStart(3)} | ${line}\n    | ${caret}`));
  }
  if (d.hint) box.append(h("div", `hint: ${d.hint}`));
  return box;
}
