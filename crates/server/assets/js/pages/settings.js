// Settings: the signed-in org, its API keys (prefixes only), creating a key (shown once) and
// revoking keys, and sign-out.

import { get, post, del, apiKey, setApiKey } from "../api.js";
import { h, table, fmtTime, errorBox } from "../ui.js";

/** Copies `text`: the Clipboard API where the page may use it, else a selected text field. */
async function copy(text, field) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    field.select();
    return document.execCommand("copy");
  }
}

/** The box showing a new key, once. */
function newKeyBox(created) {
  const field = h("input.mono.key-field", { type: "text", readonly: true, value: created.key, "data-testid": "new-key", "aria-label": "New API key" });
  const status = h("span.muted", { "data-testid": "copy-status" });
  const button = h("button.primary", {
    "data-testid": "copy-key",
    onclick: async () => {
      status.textContent = (await copy(created.key, field)) ? "Copied." : "Copy failed: select the key and copy it by hand.";
    },
  }, "Copy");
  return h("div.new-key", { "data-testid": "new-key-box" },
    h("p", h("strong", `Key "${created.name}" created.`), " Copy it now: ",
      h("strong", "it will not be shown again"), " (only its hash is stored)."),
    h("div.key-row", field, button, status));
}

/** replaceChildren without the nulls (which the DOM would print as "null"). */
const fill = (el, ...children) => el.replaceChildren(...children.filter((c) => c !== null && c !== undefined));

export default async function settings(root) {
  const key = apiKey();
  const keysPanel = h("div.panel", { "data-testid": "keys-panel" });
  const session = h("div.panel");
  root.append(session, keysPanel);
  let shown = null; // the box of a key just created, kept over refreshes of the list

  const render = async (message) => {
    const r = await get("/v1/keys");
    fill(session,
      h("h2", "Session"),
      h("dl.kv",
        h("dt", "Organisation"), h("dd", { "data-testid": "org" }, r.org),
        h("dt", "Signed in with"), h("dd.mono", key ? `${key.slice(0, 13)}…` : r.auth_required ? "–" : "no key needed (no keys exist on this server)")),
      key ? h("button", { onclick: () => { setApiKey(""); location.reload(); } }, "Sign out") : null);

    if (!r.auth_required) {
      fill(keysPanel,
        h("h2", "API keys"),
        h("p.muted", "No API keys exist, so this server accepts every request as org ", h("code", r.org),
          " (it only listens on loopback). Create the first key on the server with ",
          h("code", "loupe keys create --org NAME --name LABEL"),
          ": that turns authentication on for every client. After that, keys can be created and revoked here."));
      return;
    }

    const feedback = h("div", { "data-testid": "keys-feedback" }, message ? h("p.ok-msg", message) : null);
    const name = h("input", { type: "text", placeholder: "Name, e.g. ci-pipeline", maxlength: 100, required: true, "data-testid": "new-key-name", "aria-label": "Key name" });
    const form = h("form.key-form", {
      "data-testid": "new-key-form",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const button = form.querySelector("button");
        button.disabled = true;
        try {
          const created = await post("/v1/keys", { name: name.value.trim() });
          shown = newKeyBox(created);
          await render();
        } catch (e) {
          feedback.replaceChildren(errorBox(e));
          button.disabled = false;
        }
      },
    }, name, h("button.primary", { type: "submit" }, "Create key"));

    const revoke = async (k) => {
      if (!confirm(`Revoke the key "${k.name || k.prefix + "…"}" (${k.prefix}…)?\n\nEvery client using it is refused from its next request. This cannot be undone.`)) return;
      try {
        await del(`/v1/keys/${encodeURIComponent(k.id)}`);
        if (shown && shown.querySelector("input").value.startsWith(k.prefix)) shown = null;
        await render(`Key "${k.name || k.prefix + "…"}" revoked.`);
      } catch (e) {
        feedback.replaceChildren(errorBox(e));
      }
    };
    const byId = new Map(r.keys.map((k) => [k.id, k]));
    fill(keysPanel,
      h("h2", "API keys of this organisation"),
      h("h3", "Create a key"),
      form,
      shown,
      feedback,
      table([
        { label: "Name", fmt: (k) => h("span", { "data-testid": "key-name" }, k.name || "–", k.current ? h("span.badge", "this session") : null) },
        { label: "Prefix", fmt: (k) => h("span.mono", `${k.prefix}…`) },
        { label: "Created", fmt: (k) => fmtTime(k.created_at) },
        { label: "Created by", fmt: (k) => (k.created_by ? (byId.has(k.created_by) ? h("span.mono", `${byId.get(k.created_by).prefix}…`) : "a revoked key") : "the server (CLI)") },
        { label: "Id", fmt: (k) => h("span.mono", k.id) },
        {
          label: "",
          fmt: (k) => h("button.danger", {
            "data-testid": "revoke-key",
            disabled: k.current,
            title: k.current ? "You are signed in with this key: sign in with another key of the org to revoke it" : "Revoke this key",
            onclick: () => revoke(k),
          }, "Revoke"),
        },
      ], r.keys, null, "keys-table"),
      h("p.muted", "Keys are stored hashed: a key is shown once, when it is created. Any key of the organisation can create and revoke its keys (a key cannot revoke itself). On the server: ",
        h("code", `loupe keys create --org ${r.org} --name LABEL`), ", ", h("code", "loupe keys list"), ", ", h("code", "loupe keys revoke ID"), "."),
    );
  };
  await render();
}
