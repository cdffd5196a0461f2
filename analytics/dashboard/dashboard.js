// The analytics dashboard: every number comes from /v1/analytics/summary; charts are drawn by Plotly.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US");
const usd = (v) => "$" + Number(v).toFixed(6);
// Model, project and user names come from callers: never HTML.
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                          "'": "&#39;" })[c]);

function range() {
  const to = new Date();
  const from = new Date(to.getTime() - Number($("range").value) * 3600 * 1000);
  return { from: from.toISOString(), to: to.toISOString() };
}

async function summary(params, everyProject = false) {
  const query = new URLSearchParams({ ...range(), ...params });
  if ($("project").value && !everyProject) query.set("project", $("project").value);
  const response = await fetch("/v1/analytics/summary?" + query, {
    headers: { Authorization: "Bearer " + $("key").value },
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body.rows;
}

function table(id, rows, columns) {
  const head = "<tr>" + columns.map((c) => `<th class="${c.n ? "n" : ""}">${c.title}</th>`).join("") + "</tr>";
  const body = rows.map((r) => "<tr>" + columns.map((c) =>
    `<td class="${c.n ? "n" : ""}">${esc(c.value(r))}</td>`).join("") + "</tr>").join("");
  $(id).innerHTML = head + body;
}

const layout = { margin: { t: 10, r: 10, b: 40, l: 55 }, legend: { orientation: "h" } };
const config = { displayModeBar: false, responsive: true };

function quantileBars(id, rows, field) {
  const traces = ["p50", "p95", "p99"].map((q) => ({
    type: "bar", name: q, x: rows.map((r) => r.provider), y: rows.map((r) => r[field][q]),
  }));
  Plotly.react(id, traces, { ...layout, barmode: "group", xaxis: { type: "category" } }, config);
}

async function load() {
  $("error").textContent = "";
  try {
    const interval = Number($("range").value) <= 24 ? "hour" : "day";
    const [totals, overTime, byProvider, byModel, byUser, byProject, byRoute] = await Promise.all([
      summary({}), summary({ interval }), summary({ group_by: "provider" }), summary({ group_by: "model" }),
      summary({ group_by: "project,user" }), summary({ group_by: "project" }, true), summary({ group_by: "route" }),
    ]);
    const t = totals[0] || { requests: 0, errors: 0, failed_over: 0, prompt_tokens: 0, completion_tokens: 0,
                             cost_usd: 0 };
    $("total-requests").textContent = fmt.format(t.requests);
    $("total-errors").textContent = fmt.format(t.errors);
    $("total-failed-over").textContent = fmt.format(t.failed_over);
    $("total-tokens").textContent = fmt.format(t.prompt_tokens) + " / " + fmt.format(t.completion_tokens);
    $("total-cost").textContent = usd(t.cost_usd);

    const x = overTime.map((r) => r.bucket);
    Plotly.react("spend", [{ type: "bar", x, y: overTime.map((r) => r.cost_usd), name: "USD" }],
                 { ...layout, yaxis: { tickformat: "$.6f", rangemode: "tozero" } }, config);
    Plotly.react("requests", [
      { type: "bar", name: "requests", x, y: overTime.map((r) => r.requests - r.errors) },
      { type: "bar", name: "errors", x, y: overTime.map((r) => r.errors) },
    ], { ...layout, barmode: "stack" }, config);
    quantileBars("latency", byProvider, "latency_ms");
    quantileBars("ttft", byProvider, "ttft_ms");

    byModel.sort((a, b) => b.cost_usd - a.cost_usd);
    table("top-models", byModel, [
      { title: "model", value: (r) => r.model },
      { title: "requests", n: true, value: (r) => fmt.format(r.requests) },
      { title: "tokens out", n: true, value: (r) => fmt.format(r.completion_tokens) },
      { title: "USD", n: true, value: (r) => usd(r.cost_usd) },
    ]);
    const routed = byRoute.filter((r) => r.route).sort((a, b) => b.cost_usd - a.cost_usd);
    table("top-routes", routed, [
      { title: "route", value: (r) => r.route },
      { title: "requests", n: true, value: (r) => fmt.format(r.requests) },
      { title: "failed over", n: true, value: (r) => fmt.format(r.failed_over) },
      { title: "p95 ms", n: true, value: (r) => fmt.format(Math.round(r.latency_ms.p95 || 0)) },
      { title: "USD", n: true, value: (r) => usd(r.cost_usd) },
    ]);
    byUser.sort((a, b) => b.cost_usd - a.cost_usd);
    table("top-users", byUser.slice(0, 20), [
      { title: "project", value: (r) => r.project },
      { title: "user", value: (r) => r.user || "(none)" },
      { title: "requests", n: true, value: (r) => fmt.format(r.requests) },
      { title: "USD", n: true, value: (r) => usd(r.cost_usd) },
    ]);
    const chosen = $("project").value;
    $("project").innerHTML = '<option value="">all I may see</option>' + byProject.map((r) =>
      `<option value="${esc(r.project)}"${r.project === chosen ? " selected" : ""}>${esc(r.project)}</option>`)
      .join("");
    document.body.dataset.loaded = String(Date.now());
  } catch (error) {
    $("error").textContent = error.message;
  }
}

$("load").addEventListener("click", () => { sessionStorage.setItem("gateway-key", $("key").value); load(); });
$("range").addEventListener("change", load);
$("project").addEventListener("change", load);
$("key").value = sessionStorage.getItem("gateway-key") || "";
if ($("key").value) load();
