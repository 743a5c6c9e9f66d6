// Operator console of tenant-gateway. Talks only to the admin API of the origin it was served
// from, with the token kept in sessionStorage. Every value from the API is rendered as text
// (createElement + textContent); nothing is ever parsed as HTML.
"use strict";

const TOKEN_KEY = "tenant-gateway-admin-token";
const CERT_WARNING_DAYS = 14;
const RECENT_WINDOW_MS = 60000;
const REFRESH_MS = 5000;

// Request counts seen per tenant: [{at, counts}] for the "last minute" deltas.
const samples = new Map();
let refreshTimer = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// el("td", {className: "x", dataset: {tenant: id}, onclick: fn}, "text", childNode, ...)
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "className" || key === "id" || key === "type" || key === "title" || key === "hidden" || key === "disabled" || key === "value" || key === "placeholder") node[key] = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function say(text, isError) {
  const m = document.getElementById("message");
  m.textContent = text || "";
  m.className = isError ? "error" : "";
}

class Unauthorized extends Error {}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + token() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) throw new Unauthorized("the admin token was rejected");
  let data = null;
  try {
    data = await resp.json();
  } catch (_) {
    throw new Error(method + " " + path + ": HTTP " + resp.status + " without a JSON body");
  }
  return { status: resp.status, ok: resp.ok, data };
}

function when(ts) {
  if (!ts) return "never";
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toISOString().replace(".000Z", "Z");
}

function badge(text) {
  return el("span", { className: "badge " + String(text) }, text);
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function showLogin(reason) {
  document.getElementById("login").hidden = false;
  document.getElementById("nav").hidden = true;
  document.getElementById("view").replaceChildren();
  say(reason || "", Boolean(reason));
  document.getElementById("token").focus();
}

// ---------------------------------------------------------------------------------------------
// Tenants

async function tenantsView(view) {
  const { data } = await api("GET", "/admin/v1/tenants");
  const search = el("input", { type: "search", id: "search", placeholder: "search id, name, plan, host, feature" });
  const body = el("tbody", {});
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const rows = data.tenants
      .filter((t) => !q || [t.id, t.name, t.plan, t.status, ...t.hosts, ...t.features].some((v) => String(v).toLowerCase().includes(q)))
      .map((t) => el("tr", { className: "clickable", dataset: { tenant: t.id }, onclick: () => { location.hash = "#/tenant/" + encodeURIComponent(t.id); } },
        el("td", {}, el("a", { href: "#/tenant/" + encodeURIComponent(t.id), className: "tenant-link" }, t.id)),
        el("td", { className: "tenant-name" }, t.name),
        el("td", {}, badge(t.status)),
        el("td", {}, t.plan),
        el("td", {}, t.hosts.map((h) => el("div", {}, h))),
        el("td", {}, t.features.join(", "))));
    body.replaceChildren(...rows);
  };
  for (const ev of ["input", "change", "search"]) search.addEventListener(ev, render);
  render();
  view.replaceChildren(
    el("h2", {}, "Tenants (" + data.tenants.length + ")"),
    el("div", { className: "toolbar" }, search),
    el("table", { id: "tenants" },
      el("thead", {}, el("tr", {}, ["Id", "Name", "Status", "Plan", "Hosts", "Features"].map((h) => el("th", {}, h)))),
      body));
}

function recentCounts(id, counts) {
  const now = Date.now();
  const list = (samples.get(id) || []).filter((s) => now - s.at <= RECENT_WINDOW_MS);
  list.push({ at: now, counts });
  samples.set(id, list);
  const first = list[0];
  const delta = {};
  for (const k of Object.keys(counts)) delta[k] = counts[k] - (first.counts[k] || 0);
  return { delta, seconds: Math.round((now - first.at) / 1000) };
}

function usageRows(usage) {
  const names = Object.keys(usage).sort();
  if (names.length === 0) return [el("p", { className: "muted" }, "No quotas in this tenant's plan.")];
  return names.map((name) => {
    const u = usage[name];
    const ratio = u.limit > 0 ? Math.min(1, u.used / u.limit) : 1;
    const fill = el("div", { className: "fill" + (ratio >= 1 ? " full" : ratio >= 0.8 ? " high" : "") });
    fill.style.width = (ratio * 100).toFixed(1) + "%";
    return el("div", { className: "usage-row", dataset: { resource: name, used: u.used, limit: u.limit } },
      el("div", {}, el("b", {}, name), " ", el("span", { className: "muted" }, "per " + u.period)),
      el("div", { className: "bar", title: u.used + " / " + u.limit }, fill),
      el("div", {}, el("span", { className: "usage-text" }, u.used + " / " + u.limit), el("span", { className: "muted" }, " · resets " + when(u.resets_at))));
  });
}

function brandingPreview(t) {
  const b = t.branding || {};
  const box = el("div", { className: "brand", id: "branding" },
    el("span", { className: "name" }, t.name || t.id),
    el("span", {}, b.logo ? ["logo: ", el("code", {}, b.logo)] : "no logo"));
  const color = (c) => (typeof c === "string" && /^#[0-9a-fA-F]{3,8}$/.test(c) ? c : null);
  if (color(b.primary_color)) box.style.background = color(b.primary_color);
  if (color(b.secondary_color)) box.style.color = color(b.secondary_color);
  return el("div", {}, box, el("p", { className: "muted" },
    "primary " + (b.primary_color || "unset") + " · secondary " + (b.secondary_color || "unset") + " (the logo is not loaded here)"));
}

async function tenantView(view, id) {
  const [{ status, data }, usage] = await Promise.all([
    api("GET", "/admin/v1/tenants/" + encodeURIComponent(id)),
    api("GET", "/admin/v1/tenants/" + encodeURIComponent(id) + "/usage"),
  ]);
  if (status === 404) {
    view.replaceChildren(el("h2", {}, "Tenant not found: ", el("code", {}, id)));
    return;
  }
  const t = data.tenant;
  const recent = recentCounts(t.id, t.requests);
  const next = t.status === "active" ? "suspended" : "active";
  const toggle = el("button", {
    type: "button", id: "status-btn", className: next === "suspended" ? "danger" : "primary",
    onclick: async () => {
      toggle.disabled = true;
      const r = await api("PATCH", "/admin/v1/tenants/" + encodeURIComponent(t.id), { status: next });
      say(r.ok ? "Tenant " + t.id + " is now " + next + "." : "Status change refused: " + r.data.error, !r.ok);
      await route();
    },
  }, next === "suspended" ? "Suspend" : "Activate");
  const usageBlock = usage.ok
    ? el("div", { className: "usage", id: "usage" }, usageRows(usage.data.usage))
    : el("p", { className: "bad" }, "Usage unavailable: " + usage.data.error);
  view.replaceChildren(
    el("div", { className: "toolbar" }, el("a", { href: "#/tenants" }, "← all tenants"), toggle),
    el("h2", { id: "tenant-title" }, t.name + " ", el("code", {}, t.id), " ", badge(t.status)),
    el("dl", { className: "grid" },
      el("dt", {}, "Organization"), el("dd", {}, t.organization_id),
      el("dt", {}, "Plan"), el("dd", {}, t.plan),
      el("dt", {}, "Hosts"), el("dd", {}, t.hosts.map((h) => el("div", {}, h))),
      el("dt", {}, "Features"), el("dd", {}, t.features.join(", ") || "none"),
      el("dt", {}, "Upstream"), el("dd", {}, t.upstream.name + " → " + t.upstream.addrs.join(", ")),
      el("dt", {}, "Schema"), el("dd", {}, t.schema || "none"),
      el("dt", {}, "API keys"), el("dd", { id: "api-keys" }, t.api_keys.length ? t.api_keys.join(", ") : "none"),
      el("dt", {}, "File"), el("dd", {}, el("code", {}, t.file))),
    el("h3", {}, "Usage vs limit"),
    usageBlock,
    el("h3", {}, "Responses"),
    el("div", { className: "counts", id: "counts" },
      ["2xx", "4xx", "5xx"].map((c) => el("span", { dataset: { class: c } },
        el("b", { className: "total" + (c !== "2xx" && t.requests[c] > 0 ? " bad" : "") }, String(t.requests[c])),
        " " + c + " since start",
        recent.seconds > 0 ? el("span", { className: "recent muted" }, " (+" + recent.delta[c] + " in the last " + recent.seconds + " s)") : ""))),
    el("h3", {}, "Branding"),
    brandingPreview(t));
  refreshTimer = setTimeout(() => { if (location.hash === "#/tenant/" + encodeURIComponent(id)) route(); }, REFRESH_MS);
}

// ---------------------------------------------------------------------------------------------
// Domains

function expiryCell(ts) {
  if (!ts) return el("td", { className: "muted" }, "no certificate");
  const days = (new Date(ts) - Date.now()) / 86400000;
  return el("td", { className: days < CERT_WARNING_DAYS ? "warn cert-warning" : "" },
    when(ts), days < CERT_WARNING_DAYS ? " (" + Math.max(0, Math.floor(days)) + " days left)" : "");
}

async function domainsView(view) {
  const { data } = await api("GET", "/admin/v1/domains");
  const rows = data.domains.map((d) => el("tr", { dataset: { domain: d.domain } },
    el("td", {}, d.domain),
    el("td", {}, el("a", { href: "#/tenant/" + encodeURIComponent(d.tenant) }, d.tenant)),
    el("td", {}, badge(d.state)),
    el("td", {}, when(d.last_check)),
    el("td", { className: d.error ? "bad" : "muted" }, d.error || "none"),
    el("td", {}, d.txt_record ? el("code", {}, d.txt_record.zone_line) : el("span", { className: "muted" }, data.acme_enabled ? "verification secret not set" : "ACME disabled")),
    expiryCell(d.certificate_expiry),
    el("td", {}, data.acme_enabled ? el("button", {
      type: "button", className: "verify-btn",
      onclick: async (ev) => {
        ev.target.disabled = true;
        const r = await api("POST", "/admin/v1/domains/" + encodeURIComponent(d.domain) + "/verify");
        say(r.ok ? d.domain + ": " + r.data.domain.state + (r.data.domain.error ? " (" + r.data.domain.error + ")" : "") : d.domain + ": " + r.data.error, !r.ok);
        await route();
      },
    }, "Verify now") : "")));
  view.replaceChildren(
    el("h2", {}, "Custom domains (" + data.domains.length + ")"),
    data.acme_enabled ? "" : el("p", { className: "muted" }, "ACME is disabled: custom domains route as configured, without verification."),
    table(["Domain", "Tenant", "State", "Last check", "Error", "TXT record to publish", "Certificate expiry", ""], rows));
}

// ---------------------------------------------------------------------------------------------
// Reload

async function reloadView(view) {
  const { data } = await api("GET", "/admin/v1/reload");
  const r = data.reload;
  const button = el("button", {
    type: "button", id: "reload-btn", className: "primary",
    onclick: async () => {
      button.disabled = true;
      const res = await api("POST", "/admin/v1/reload");
      const text = res.ok ? "Reload: " + res.data.result + (res.data.tenants !== undefined ? " (" + res.data.tenants + " tenants)" : "") : "Reload rejected: " + res.data.error;
      await route();
      const result = document.getElementById("reload-result");
      result.textContent = text;
      result.className = res.ok ? "" : "bad";
    },
  }, "Reload config now");
  const errors = r.last_errors.map((e) => el("tr", {}, el("td", {}, el("code", {}, e.file)), el("td", {}, el("code", {}, e.key)), el("td", {}, e.message)));
  view.replaceChildren(
    el("h2", {}, "Config reload"),
    el("div", { className: "toolbar" }, button, el("span", { id: "reload-result" })),
    el("dl", { className: "grid", id: "reload-status" },
      el("dt", {}, "Serving config compiled"), el("dd", {}, when(r.config_loaded_at)),
      el("dt", {}, "Last success"), el("dd", { id: "last-success" }, when(r.last_success_at)),
      el("dt", {}, "Last attempt"), el("dd", {}, when(r.last_attempt_at), " ", r.last_result ? badge(r.last_result) : "", r.last_trigger ? " via " + r.last_trigger : ""),
      el("dt", {}, "Last failure"), el("dd", {}, when(r.last_failure_at))),
    el("h3", {}, "Errors of the last failed reload"),
    errors.length ? el("div", { id: "reload-errors" }, table(["File", "Key", "Error"], errors)) : el("p", { className: "muted", id: "no-errors" }, "none"),
    el("h3", {}, "Changed keys that need a restart"),
    r.restart_required.length
      ? el("ul", { id: "restart-required" }, r.restart_required.map((k) => el("li", {}, el("code", {}, k))))
      : el("p", { className: "muted" }, "none: the running process uses every key as configured"));
}

// ---------------------------------------------------------------------------------------------
// Routing

async function route() {
  clearTimeout(refreshTimer);
  if (!token()) return showLogin();
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  const view = document.getElementById("view");
  const hash = location.hash || "#/tenants";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  try {
    if (hash.startsWith("#/tenant/")) await tenantView(view, decodeURIComponent(hash.slice("#/tenant/".length)));
    else if (hash === "#/domains") await domainsView(view);
    else if (hash === "#/reload") await reloadView(view);
    else await tenantsView(view);
    document.body.dataset.loaded = hash;
  } catch (e) {
    if (e instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showLogin("The admin token was rejected; enter it again.");
    }
    say(String(e.message || e), true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    document.getElementById("token").value = "";
    say("");
    route();
  });
  document.getElementById("logout-btn").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
  });
  window.addEventListener("hashchange", () => { say(""); route(); });
  route();
});
