// Loupe dashboard: hash router, sign-in, drawer. Plain ES modules, no build step.

import { get, setApiKey, setUnauthenticatedHandler } from "./api.js";
import { Filter, currentRoute, renderFilterBar } from "./filter.js";
import { h, clear, errorBox } from "./ui.js";
import overview from "./pages/overview.js";
import requests from "./pages/requests.js";
import users from "./pages/users.js";
import sessions from "./pages/sessions.js";
import properties from "./pages/properties.js";
import hql from "./pages/hql.js";
import settings from "./pages/settings.js";

const PAGES = { overview, requests, users, sessions, properties, hql, settings };
const TITLES = { overview: "Overview", requests: "Requests", users: "Users", sessions: "Sessions", properties: "Properties", hql: "HQL console", settings: "Settings" };
const NO_FILTER = new Set(["hql", "settings"]);

const $ = (id) => document.getElementById(id);

export const drawer = {
  open(title, body) {
    $("drawer-title").textContent = title;
    clear($("drawer-body")).append(body);
    $("drawer").hidden = false;
  },
  close() { $("drawer").hidden = true; },
};

function showLogin(message) {
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-key").focus();
}

async function checkAuth() {
  try {
    const r = await get("/v1/keys");
    $("org-label").textContent = `org: ${r.org}`;
    return true;
  } catch (e) {
    if (e.status === 401) { showLogin(); return false; }
    throw e;
  }
}

let renderSeq = 0;
async function render() {
  const { page, params } = currentRoute();
  const view = PAGES[page] ? page : "overview";
  const filter = new Filter(params);
  document.title = `${TITLES[view]} · Loupe`;
  for (const a of document.querySelectorAll(".side a")) a.classList.toggle("active", a.dataset.page === view);
  const bar = $("filterbar");
  bar.hidden = NO_FILTER.has(view);
  if (!bar.hidden) renderFilterBar(bar, view, filter);
  const seq = ++renderSeq;
  const root = clear($("page"));
  root.append(h("h1.page", TITLES[view]));
  const body = h("div");
  root.append(body);
  try {
    await PAGES[view](body, filter, params, { drawer, isCurrent: () => seq === renderSeq });
  } catch (e) {
    if (seq === renderSeq && e.status !== 401) body.append(errorBox(e));
  }
}

setUnauthenticatedHandler(() => showLogin("Your key was not accepted. Sign in again."));

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  setApiKey($("login-key").value.trim());
  if (await checkAuth().catch(() => false)) {
    $("login").hidden = true;
    $("login-key").value = "";
    render();
  } else {
    $("login-error").textContent = "That key was not accepted.";
  }
});
$("drawer-close").addEventListener("click", () => drawer.close());
document.addEventListener("keydown", (e) => { if (e.key === "Escape") drawer.close(); });
window.addEventListener("hashchange", () => { drawer.close(); render(); });

checkAuth().then((ok) => { if (ok) render(); }).catch((e) => $("page").append(errorBox(e)));
