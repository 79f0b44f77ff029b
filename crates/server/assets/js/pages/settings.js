// Settings: the signed-in org, its API keys (prefixes only) and sign-out.

import { get, apiKey, setApiKey } from "../api.js";
import { h, table, fmtTime } from "../ui.js";

export default async function settings(root) {
  const r = await get("/v1/keys");
  const key = apiKey();
  root.append(
    h("div.panel",
      h("h2", "Session"),
      h("dl.kv",
        h("dt", "Organisation"), h("dd", { "data-testid": "org" }, r.org),
        h("dt", "Signed in with"), h("dd.mono", key ? `${key.slice(0, 13)}…` : r.auth_required ? "–" : "no key needed (no keys exist on this server)")),
      key ? h("button", { onclick: () => { setApiKey(""); location.reload(); } }, "Sign out") : null),
    h("div.panel",
      h("h2", "API keys of this organisation"),
      table([
        { label: "Name", key: "name" },
        { label: "Prefix", fmt: (k) => h("span.mono", `${k.prefix}…`) },
        { label: "Created", fmt: (k) => fmtTime(k.created_at) },
        { label: "Id", fmt: (k) => h("span.mono", k.id) },
      ], r.keys, null, "keys-table"),
      h("p.muted", "Keys are stored hashed and shown once. Create one on the server with ",
        h("code", `loupe keys create --org ${r.org} --name LABEL`),
        "; it works at once, without a restart.")),
  );
}
