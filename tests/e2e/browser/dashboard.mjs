// Drives the dashboard in headless Chromium (Debian's /usr/bin/chromium) with playwright-core.
// Usage: node dashboard.mjs '<json>' with {base, key, org, from, to, artifacts, expect: {requests,
// errors, chat_requests}}. Exits non-zero with a message on the first failed step; screenshots go to
// `artifacts`.
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2]);
const range = `from=${encodeURIComponent(cfg.from)}&to=${encodeURIComponent(cfg.to)}`;
const fmt = (n) => new Intl.NumberFormat("en-US").format(n);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error" && !/status of 40[01]/.test(m.text())) problems.push(`console: ${m.text()}`); });
const shot = (name) => page.screenshot({ path: `${cfg.artifacts}/${name}.png`, fullPage: true });
const step = async (name, f) => {
  try {
    await f();
    await shot(name);
    console.log(`ok ${name}`);
  } catch (e) {
    await shot(`${name}-failed`).catch(() => {});
    console.error(`FAILED ${name}: ${e.message}`);
    await browser.close();
    process.exit(1);
  }
};
const cardValue = (id) => page.locator(`[data-testid=${id}] .value`);
const expectText = async (loc, want) => {
  await loc.first().waitFor({ timeout: 30000 });
  for (let i = 0; i < 300; i++) {
    const t = (await loc.first().textContent()) || "";
    if (t.trim() === want) return;
    await page.waitForTimeout(100);
  }
  throw new Error(`expected ${want}, found ${await loc.first().textContent()}`);
};

await step("01-login", async () => {
  await page.goto(`${cfg.base}/#/overview?${range}`);
  if (cfg.key) {
    await page.locator("#login-key").waitFor({ state: "visible", timeout: 30000 });
    await page.fill("#login-key", "sk-loupe-wrong");
    await page.click("#login-form button[type=submit]");
    await page.locator("#login-error", { hasText: "not accepted" }).waitFor({ timeout: 30000 });
    await page.fill("#login-key", cfg.key);
    await page.click("#login-form button[type=submit]");
  }
  await page.locator("#login").waitFor({ state: "hidden", timeout: 30000 });
});

await step("02-overview", async () => {
  await expectText(cardValue("card-requests"), fmt(cfg.expect.requests));
  await expectText(cardValue("card-errors"), fmt(cfg.expect.errors));
  await page.locator("[data-testid=by-model] tbody tr").first().waitFor({ timeout: 30000 });
  await page.locator("[data-testid=by-user] tbody tr").first().waitFor({ timeout: 30000 });
  await page.locator("[data-testid=card-latency] .value", { hasText: "ms" }).waitFor({ timeout: 30000 });
  await page.locator(".chart canvas").first().waitFor({ timeout: 30000 });
});

await step("03-filter-by-property", async () => {
  await page.focus("[data-testid=prop-key]");
  await page.locator("[data-testid=prop-key] option[value=feature]").waitFor({ state: "attached", timeout: 30000 });
  await page.selectOption("[data-testid=prop-key]", "feature");
  await page.locator("[data-testid=prop-value] option[value=chat]").waitFor({ state: "attached", timeout: 30000 });
  await page.selectOption("[data-testid=prop-value]", "chat");
  await page.locator("[data-testid=chips] .chip", { hasText: "feature = chat" }).waitFor({ timeout: 30000 });
  await expectText(cardValue("card-requests"), fmt(cfg.expect.chat_requests));
});

await step("04-request-detail", async () => {
  await page.goto(`${cfg.base}/#/requests?${range}`);
  const first = page.locator("[data-testid=requests-table] tbody tr").first();
  await first.waitFor({ timeout: 30000 });
  const rows = await page.locator("[data-testid=requests-table] tbody tr").count();
  if (rows !== 50) throw new Error(`expected a first page of 50 requests, found ${rows}`);
  await page.click("[data-testid=load-more]");
  await page.locator("[data-testid=requests-table] tbody tr").nth(99).waitFor({ timeout: 30000 });
  await first.click();
  await page.locator("[data-testid=request-detail]").waitFor({ timeout: 30000 });
  await page.locator("[data-testid=request-body] pre.json").waitFor({ timeout: 30000 });
});

await step("05-session-tree", async () => {
  await page.goto(`${cfg.base}/#/sessions?${range}`);
  await page.locator("[data-testid=sessions-table] tbody tr").first().click({ timeout: 30000 });
  await page.locator("[data-testid=session-tree] [data-testid=tree-request]").first().waitFor({ timeout: 30000 });
  await page.locator("[data-testid=session-tree] [data-testid=tree-path]").first().waitFor({ timeout: 30000 });
  await page.locator("[data-testid=session-tree] [data-testid=tree-request]").first().click();
  await page.locator("[data-testid=request-detail]").waitFor({ timeout: 30000 });
});

await step("05b-session-spans", async () => {
  // An OpenTelemetry-traced session (posted by the test over OTLP): its spans as a trace tree.
  await page.goto(`${cfg.base}/#/sessions?${range}&session_view=${encodeURIComponent(cfg.otel_session)}`);
  const spans = page.locator("[data-testid=session-spans]");
  await spans.locator("[data-testid=span-node]", { hasText: "answer.workflow" }).waitFor({ timeout: 30000 });
  await spans.locator("[data-testid=span-node]", { hasText: "search.tool" }).waitFor({ timeout: 30000 });
  const llm = spans.locator("[data-testid=span-llm]");
  if ((await llm.count()) !== 1) throw new Error(`expected one LLM span, found ${await llm.count()}`);
  await llm.click();
  await page.locator("[data-testid=request-detail]").waitFor({ timeout: 30000 });
});

await step("06-hql-syntax-error", async () => {
  await page.goto(`${cfg.base}/#/hql`);
  await page.locator("[data-testid=saved-query]").first().waitFor({ timeout: 30000 });
  await page.fill("[data-testid=hql-editor]", "requests\n| summarise n = count()");
  await page.press("[data-testid=hql-editor]", "Control+Enter");
  const caret = page.locator("[data-testid=hql-caret]");
  await caret.waitFor({ timeout: 30000 });
  const text = await caret.textContent();
  if (!text.includes("  2 | | summarise n = count()") || !text.includes("    |   ^")) throw new Error(`caret rendering: ${JSON.stringify(text)}`);
  await page.locator("[data-testid=error]", { hasText: "hql.unknown_operator" }).waitFor({ timeout: 30000 });
});

await step("07-hql-results", async () => {
  await page.fill("[data-testid=hql-editor]", `requests | where created_at >= datetime(${cfg.from}) and created_at < datetime(${cfg.to}) | count`);
  await page.press("[data-testid=hql-editor]", "Control+Enter");
  await expectText(page.locator("[data-testid=hql-results] tbody td"), String(cfg.expect.requests));
});

await step("08-users-and-properties", async () => {
  await page.goto(`${cfg.base}/#/users?${range}`);
  await page.locator("[data-testid=users-table] tbody tr").first().waitFor({ timeout: 30000 });
  await page.goto(`${cfg.base}/#/properties?${range}&key=feature`);
  await page.locator("[data-testid=property-values] tbody tr").first().waitFor({ timeout: 30000 });
});

let newKey = "";
await step("09-key-created", async () => {
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: cfg.base });
  await page.goto(`${cfg.base}/#/settings`);
  const rows = page.locator("[data-testid=keys-table] tbody tr");
  await rows.first().waitFor({ timeout: 30000 });
  // The key signed in with cannot revoke itself.
  const own = rows.filter({ hasText: "this session" });
  if (!(await own.locator("[data-testid=revoke-key]").isDisabled())) throw new Error("the session's own key can be revoked");
  await page.fill("[data-testid=new-key-name]", "e2e browser key");
  await page.click("[data-testid=new-key-form] button[type=submit]");
  const field = page.locator("[data-testid=new-key]");
  await field.waitFor({ timeout: 30000 });
  newKey = await field.inputValue();
  if (!/^sk-loupe-[0-9a-f]{48}$/.test(newKey)) throw new Error(`not a key: ${newKey}`);
  await page.locator("[data-testid=new-key-box]", { hasText: "it will not be shown again" }).waitFor({ timeout: 30000 });
  await rows.filter({ hasText: "e2e browser key" }).waitFor({ timeout: 30000 });
  await page.click("[data-testid=copy-key]");
  await page.locator("[data-testid=copy-status]", { hasText: "Copied." }).waitFor({ timeout: 30000 });
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  if (copied !== newKey) throw new Error(`clipboard holds ${JSON.stringify(copied)}, not the new key`);
  // The new key works at once, for the same org.
  const r = await fetch(`${cfg.base}/v1/keys`, { headers: { authorization: `Bearer ${newKey}` } });
  const body = await r.json();
  if (r.status !== 200 || body.org !== cfg.org) throw new Error(`the new key: ${r.status} ${JSON.stringify(body)}`);
});

await step("10-key-revoked", async () => {
  const row = page.locator("[data-testid=keys-table] tbody tr").filter({ hasText: "e2e browser key" });
  // Cancelling the confirmation keeps the key.
  let asked = "";
  page.once("dialog", (d) => { asked = d.message(); d.dismiss(); });
  await row.locator("[data-testid=revoke-key]").click();
  if (!asked.includes("cannot be undone")) throw new Error(`confirmation: ${JSON.stringify(asked)}`);
  await page.waitForTimeout(300);
  if ((await row.count()) !== 1) throw new Error("the key went away although the revocation was cancelled");
  page.once("dialog", (d) => d.accept());
  await row.locator("[data-testid=revoke-key]").click();
  await page.locator("[data-testid=keys-feedback]", { hasText: "revoked" }).waitFor({ timeout: 30000 });
  await row.waitFor({ state: "detached", timeout: 30000 });
  await page.locator("[data-testid=new-key-box]").waitFor({ state: "detached", timeout: 30000 });
  const text = await page.locator("main").textContent();
  if (/\b(null|undefined)\b/.test(text)) throw new Error(`the settings page shows null/undefined: ${text}`);
  const r = await fetch(`${cfg.base}/v1/keys`, { headers: { authorization: `Bearer ${newKey}` } });
  if (r.status !== 401) throw new Error(`the revoked key got ${r.status}, not 401`);
  // The session's own key still works.
  const own = await fetch(`${cfg.base}/v1/keys`, { headers: { authorization: `Bearer ${cfg.key}` } });
  if (own.status !== 200) throw new Error(`the signed-in key got ${own.status} after revoking another key`);
});

await browser.close();
if (problems.length) {
  console.error(`FAILED browser errors:\n${problems.join("\n")}`);
  process.exit(1);
}
console.log("all steps passed");
