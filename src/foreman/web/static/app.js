// The foreman dashboard: plain DOM, no framework, no network beyond this server.
// Every string from a run (requests, outputs, prompts, errors, ids) is data: it enters the
// page through text nodes and attributes only (el/svg below), never as HTML.
"use strict";

const main = document.getElementById("main");
const flashBox = document.getElementById("flash");
const SVGNS = "http://www.w3.org/2000/svg";
const STATUSES = ["running", "waiting_approval", "succeeded", "partial", "failed", "crashed",
  "interrupted", "aborted", "cancelled", "over_budget", "stalled"];

// ---- building the page from data ------------------------------------------------------

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replace a node's children with `parts`: nodes, strings, nested lists of them.
function put(node, ...parts) {
  node.replaceChildren(...parts.flat(Infinity).filter((x) => x !== null && x !== undefined && x !== false));
}

function el(tag, attrs, ...children) { return fill(document.createElement(tag), attrs, children); }
function svg(tag, attrs, ...children) { return fill(document.createElementNS(SVGNS, tag), attrs, children); }

function flash(message, isError) {
  flashBox.textContent = message || "";
  flashBox.className = isError ? "error" : "";
}

// ---- talking to the API -----------------------------------------------------------------

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function post(path, data) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Foreman-Request": "1" },
    body: JSON.stringify(data),
  });
}

const enc = encodeURIComponent;

// ---- formatting ---------------------------------------------------------------------------

function tokens(n) { return (n || 0).toLocaleString("en-US"); }
function money(usd) {
  if (usd === null || usd === undefined) return "unknown";
  if (usd === 0) return "$0";
  return usd < 0.01 ? "$" + usd.toFixed(4) : "$" + usd.toFixed(2);
}
function seconds(s) { return s === null || s === undefined ? "—" : s < 10 ? s.toFixed(2) + " s" : s.toFixed(1) + " s"; }
function age(at) {
  const s = Math.max(0, Date.now() / 1000 - at);
  if (s < 60) return Math.round(s) + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  if (s < 86400) return Math.round(s / 3600) + "h ago";
  return Math.round(s / 86400) + "d ago";
}
function badge(status) { return el("span", { class: "badge s-" + status, "data-status": status }, status); }
function shown(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}
function runLink(runId) { return el("a", { href: "#/run/" + enc(runId) }, runId); }
function taskHref(runId, taskId) { return "#/run/" + enc(runId) + "/task/" + enc(taskId); }

// ---- views --------------------------------------------------------------------------------
// A view renders into `main` and knows how to refresh itself when the store changes;
// what a person types (filters, notes) lives outside the part that is redrawn.

const drafts = new Map(); // note and confirmation fields, kept across redraws
const expanded = new Set(); // nested runs opened on a run's page
const chosenVersion = new Map(); // run id -> plan version shown
const shownNested = new Map(); // nested run id -> what its expanded view last showed

function runsView() {
  const status = el("select", { "aria-label": "status" },
    el("option", { value: "" }, "every status"), STATUSES.map((s) => el("option", { value: s }, s)));
  const search = el("input", { type: "search", placeholder: "search requests", "aria-label": "search" });
  const table = el("div");
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  status.value = params.get("status") || "";
  search.value = params.get("q") || "";
  let timer = null;
  status.addEventListener("change", () => refresh());
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 200); });
  main.replaceChildren(el("h1", {}, "Runs"), el("div", { class: "controls" }, status, search), table);

  async function refresh() {
    const query = new URLSearchParams();
    if (status.value) query.set("status", status.value);
    if (search.value.trim()) query.set("q", search.value.trim());
    const { runs } = await api("/api/runs?" + query);
    if (!runs.length) {
      table.replaceChildren(el("p", { class: "muted" }, query.toString()
        ? "No run matches." : "No runs yet: `foreman run \"<request>\"` starts one."));
      return;
    }
    table.replaceChildren(el("table", { id: "runs" },
      el("thead", {}, el("tr", {}, ["status", "run", "request"].map((h) => el("th", {}, h)),
        ["tasks", "tokens", "cost", "age"].map((h) => el("th", { class: "num" }, h)))),
      el("tbody", {}, runs.map((run) => el("tr", {
        class: "clickable", "data-run-id": run.run_id,
        onclick: () => { location.hash = "#/run/" + enc(run.run_id); },
      },
      el("td", {}, badge(run.status)),
      el("td", {}, runLink(run.run_id)),
      el("td", { class: "request", title: run.request }, run.request),
      el("td", { class: "num" }, `${run.tasks_done}/${run.tasks_total}`),
      el("td", { class: "num" }, tokens(run.input_tokens + run.output_tokens)),
      el("td", { class: "num" }, money(run.cost_usd)),
      el("td", { class: "num" }, age(run.created_at)))))));
  }
  return refresh;
}

function runView(runId) {
  const body = el("div");
  main.replaceChildren(body);
  async function refresh() {
    const [detail, ledger] = await Promise.all([
      api("/api/runs/" + enc(runId)),
      api("/api/runs/" + enc(runId) + "/calls"),
    ]);
    put(body, runParts(detail, ledger));
  }
  return refresh;
}

function runParts(detail, ledger) {
  const { calls, tool_calls: toolCalls } = ledger;
  const run = detail.run;
  const parts = [];
  if (detail.path.length > 1) {
    parts.push(el("p", { class: "muted" }, "nested run: ",
      detail.path.map((id, i) => [i ? " → " : "", runLink(id)])));
  }
  parts.push(el("h1", {}, "Run ", el("span", { "data-field": "run-id" }, run.run_id), " ",
    el("span", { id: "run-status" }, badge(run.status))));
  parts.push(el("div", { class: "card" },
    el("div", { class: "muted" }, "request"),
    el("pre", { "data-field": "request" }, run.request),
    el("div", { class: "facts" },
      fact("tokens", tokens(run.usage.input_tokens + run.usage.output_tokens)),
      fact("cost", money(run.cost_usd)), fact("calls", run.calls),
      fact("started", new Date(run.created_at * 1000).toLocaleString()),
      fact("updated", age(run.updated_at))),
    run.error ? el("p", { class: "error-text" }, run.error) : null,
    run.answer !== null && run.answer !== undefined
      ? [el("div", { class: "muted" }, "answer"), el("pre", { "data-field": "answer" }, run.answer)] : null));

  const pending = detail.approvals.filter((a) => a.status === "pending");
  if (pending.length) {
    parts.push(el("h2", {}, "Waiting for a decision"), pending.map((a) => approvalCard(
      Object.assign({ run_path: detail.path }, a))));
  }
  if (detail.plans.length) parts.push(planSection(run.run_id, detail.plans, detail.tasks));
  if (calls.length || toolCalls.length) parts.push(el("h2", {}, "Timeline"), gantt(calls, toolCalls, detail.tasks));
  if (detail.tasks.length) parts.push(el("h2", {}, "Tasks"), tasksTable(run.run_id, detail.tasks));
  if (detail.children.length) parts.push(el("h2", {}, "Nested runs"), nestedRuns(detail.children));
  return parts;
}

function fact(name, value) { return el("span", {}, el("span", { class: "muted" }, name + " "), el("b", {}, String(value))); }

function planSection(runId, plans, tasks) {
  const latest = plans[plans.length - 1].version;
  const chosen = Math.min(chosenVersion.get(runId) || latest, latest);
  const version = plans.find((p) => p.version === chosen) || plans[plans.length - 1];
  const buttons = plans.map((p) => el("button", {
    class: p.version === version.version ? "selected" : "",
    title: p.reason || "the first plan",
    onclick: () => { chosenVersion.set(runId, p.version); update(); },
  }, `v${p.version}`));
  const changes = version.reason ? el("p", { class: "muted" }, `v${version.version}: ${version.reason}`,
    changeList(version.changes)) : null;
  return el("section", {}, el("h2", {}, "Plan"),
    plans.length > 1 ? el("div", { class: "versions" }, buttons) : null, changes,
    planGraph(runId, version.plan, tasks));
}

function changeList(changes) {
  const words = [];
  for (const key of ["added", "changed", "dropped"]) {
    if (changes && changes[key] && changes[key].length) words.push(`${key}: ${changes[key].join(", ")}`);
  }
  return words.length ? " (" + words.join("; ") + ")" : "";
}

// The plan's DAG in columns: a task's column is the length of the longest chain of
// dependencies before it; within a column, tasks keep their plan order.
function planGraph(runId, plan, tasks) {
  const state = Object.fromEntries(tasks.map((t) => [t.task_id, t]));
  const byId = Object.fromEntries(plan.tasks.map((t) => [t.id, t]));
  const depth = {};
  const depthOf = (id, trail) => {
    if (depth[id] !== undefined) return depth[id];
    if (trail.has(id)) return 0; // a cycle cannot be stored, but never loop on one
    trail.add(id);
    const deps = byId[id].depends_on.filter((d) => byId[d]);
    depth[id] = deps.reduce((m, d) => Math.max(m, depthOf(d, trail) + 1), 0);
    return depth[id];
  };
  plan.tasks.forEach((t) => depthOf(t.id, new Set()));
  const W = 170, H = 46, GX = 60, GY = 16, PAD = 10;
  const rows = {};
  const pos = {};
  for (const t of plan.tasks) {
    const col = depth[t.id];
    rows[col] = (rows[col] || 0) + 1;
    pos[t.id] = { x: PAD + col * (W + GX), y: PAD + (rows[col] - 1) * (H + GY) };
  }
  const width = PAD * 2 + (Math.max(0, ...Object.values(depth)) + 1) * (W + GX) - GX;
  const height = PAD * 2 + Math.max(...Object.values(rows)) * (H + GY) - GY;
  const edges = [];
  for (const t of plan.tasks) {
    for (const d of t.depends_on) {
      if (!pos[d]) continue;
      const a = pos[d], b = pos[t.id];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 4, y2 = b.y + H / 2;
      edges.push(svg("path", { class: "edge", "marker-end": "url(#arrow)",
        d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}` }));
    }
  }
  const nodes = plan.tasks.map((t) => {
    const s = state[t.id];
    const status = s ? s.status : "pending";
    const items = tasks.filter((x) => x.item_of === t.id);
    const itemText = items.length
      ? ` · ${items.filter((x) => x.status === "succeeded").length}/${items.length} items` : "";
    const { x, y } = pos[t.id];
    return svg("g", {
      class: "node", "data-task": t.id, "data-status": status, tabindex: 0, role: "link",
      onclick: () => { location.hash = taskHref(runId, t.id); },
      onkeydown: (e) => { if (e.key === "Enter") location.hash = taskHref(runId, t.id); },
    },
    svg("title", {}, `${t.id} (${t.worker}): ${t.instructions}`),
    svg("rect", { class: "frame", x, y, width: W, height: H }),
    svg("rect", { class: "bar s-" + status, x, y, width: 6, height: H }),
    svg("text", { x: x + 14, y: y + 18, "font-weight": 600 }, clip(t.id, 20), " ",
      svg("tspan", { class: "muted", "font-weight": 400 }, status)),
    svg("text", { x: x + 14, y: y + 35 }, clip(t.worker, 22) + itemText));
  });
  return svg("svg", { id: "plan-graph", width, height, viewBox: `0 0 ${width} ${height}` },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto" }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9aa1ae" }))),
    edges, nodes);
}

function clip(text, n) { text = String(text); return text.length > n ? text.slice(0, n - 1) + "…" : text; }

// What the timeline draws: spans on rows. A model call is a span on its task's row (or
// its purpose's: plan, synthesis, replan...); other kinds of work (tool calls, once the
// store keeps them) become spans the same way, through a function like callSpan.
function callSpan(c, now) {
  const inFlight = c.status === "started";
  const latency = inFlight ? Math.max(0, now - c.started_at) : c.latency;
  return {
    id: c.call_id, row: c.task_id ? "task:" + c.task_id : c.parent, start: c.started_at,
    end: c.started_at + latency, status: c.status,
    title: `${c.purpose} · ${c.model} · ${c.status} · ${seconds(latency)} · ${tokens(c.usage.input_tokens + c.usage.output_tokens)} tokens · ${money(c.cost_usd)}`,
  };
}

// A tool call is a span on its task's row, drawn thinner than the model calls around it.
function toolSpan(t, now) {
  const end = t.finished_at || (t.status === "started" ? now : t.started_at);
  const status = t.outcome === "ok" ? "ok" : t.outcome ? (t.outcome === "error" ? "error" : "skipped") : "started";
  return {
    id: t.key, row: "task:" + t.task_id, start: t.started_at, end, status, tool: true,
    title: `tool ${t.tool} · ${t.key} · ${t.outcome || "running"} · ${seconds(t.latency)}`,
  };
}

// One row per task (and one per planning, synthesis, replanning...), one bar per span:
// bars that overlap in time ran in parallel; a call in flight grows until it settles.
function gantt(calls, toolCalls, tasks) {
  const now = Date.now() / 1000;
  const spans = [...calls.map((c) => callSpan(c, now)), ...toolCalls.map((t) => toolSpan(t, now))];
  const t0 = Math.min(...spans.map((s) => s.start));
  const t1 = Math.max(...spans.map((s) => s.end), t0 + 0.001);
  const order = ["plan", ...tasks.map((t) => "task:" + t.task_id)];
  for (const s of spans) if (!order.includes(s.row)) order.push(s.row);
  const rows = order.filter((r) => spans.some((s) => s.row === r));
  const LABEL = 130, W = 960, RH = 22, TOP = 22;
  const scale = (t) => LABEL + ((t - t0) / (t1 - t0)) * (W - LABEL - 10);
  const ticks = [];
  for (let i = 0; i <= 5; i++) {
    const t = t0 + ((t1 - t0) * i) / 5;
    ticks.push(svg("line", { class: "axis", x1: scale(t), x2: scale(t), y1: TOP - 4, y2: TOP + rows.length * RH }),
      svg("text", { x: Math.min(scale(t), W - 30), y: 12, "text-anchor": "middle" }, seconds(t - t0)));
  }
  const bars = rows.map((row, i) => {
    const y = TOP + i * RH;
    return svg("g", { "data-row": row },
      svg("text", { x: 4, y: y + 15 }, clip(row.replace(/^task:/, ""), 17)),
      spans.filter((s) => s.row === row).map((s) => svg("rect", {
        class: "s-" + s.status + (s.tool ? " tool" : ""), x: scale(s.start), y: y + (s.tool ? 8 : 4),
        height: RH - (s.tool ? 16 : 8), width: Math.max(2, scale(s.end) - scale(s.start)), "data-span": s.id,
      }, svg("title", {}, s.title))));
  });
  const height = TOP + rows.length * RH + 6;
  return svg("svg", { id: "timeline", width: W, height, viewBox: `0 0 ${W} ${height}` }, ticks, bars);
}

function tasksTable(runId, tasks) {
  return el("table", { id: "tasks" },
    el("thead", {}, el("tr", {}, ["task", "worker", "status"].map((h) => el("th", {}, h)),
      ["calls", "tokens", "cost", "latency"].map((h) => el("th", { class: "num" }, h)), el("th", {}, "error"))),
    el("tbody", {}, tasks.map((t) => el("tr", {
      class: "clickable", "data-task-row": t.task_id, onclick: () => { location.hash = taskHref(runId, t.task_id); },
    },
    el("td", {}, el("a", { href: taskHref(runId, t.task_id) }, t.task_id)),
    el("td", {}, t.worker || ""), el("td", {}, badge(t.status)),
    el("td", { class: "num" }, t.calls), el("td", { class: "num" }, tokens(t.input_tokens + t.output_tokens)),
    el("td", { class: "num" }, money(t.cost_usd)), el("td", { class: "num" }, seconds(t.latency_s)),
    el("td", { class: "error-text" }, t.error || "")))));
}

function nestedRuns(children) {
  return el("div", {}, children.map((child) => {
    const open = expanded.has(child.run_id);
    const inner = el("div", { class: "nested" });
    if (open) {
      // What was shown stays shown while it is read again: a redraw never blanks it.
      put(inner, shownNested.get(child.run_id) || el("p", { class: "muted" }, "Loading…"));
      Promise.all([api("/api/runs/" + enc(child.run_id)), api("/api/runs/" + enc(child.run_id) + "/calls")])
        .then(([detail, ledger]) => {
          const parts = runParts(detail, ledger);
          shownNested.set(child.run_id, parts);
          put(inner, parts);
        })
        .catch((e) => inner.replaceChildren(el("p", { class: "error-text" }, e.message)));
    }
    return el("div", { class: "card", "data-nested": child.run_id },
      el("span", { class: "toggle", onclick: () => { if (open) expanded.delete(child.run_id); else expanded.add(child.run_id); update(); } },
        open ? "▾ " : "▸ "), runLink(child.run_id), " ", badge(child.status), " ",
      el("span", { class: "muted" }, `task ${child.parent_task_id} · ${child.tasks_done}/${child.tasks_total} tasks · ${money(child.cost_usd)}`),
      open ? inner : null);
  }));
}

function taskView(runId, taskId) {
  const body = el("div");
  main.replaceChildren(body);
  async function refresh() {
    const view = await api("/api/runs/" + enc(runId) + "/tasks/" + enc(taskId));
    const task = view.task || {};
    const result = view.result;
    const parts = [
      el("p", { class: "muted" }, "run ", runLink(view.run_id), " ", badge(view.run_status)),
      el("h1", {}, "Task ", el("span", { "data-field": "task-id" }, taskId), " ",
        badge(result ? result.status : view.run_status === "running" ? "running" : "pending")),
      el("div", { class: "card" },
        el("div", { class: "facts" }, fact("worker", task.worker || (result && result.worker) || ""),
          fact("tokens", tokens(view.books.input_tokens + view.books.output_tokens)),
          fact("cost", money(view.books.cost_usd)), fact("calls", view.books.calls),
          fact("latency", seconds(result ? result.latency : view.books.latency_s)),
          result && result.model ? fact("model", result.model) : null),
        el("div", { class: "muted" }, "instructions"), el("pre", { "data-field": "instructions" }, task.instructions || ""),
        result && result.error ? [el("div", { class: "muted" }, "error"), el("pre", { class: "error-text", "data-field": "error" }, result.error)] : null,
        result && result.input ? [el("div", { class: "muted" }, "input, as the worker received it"), el("pre", { "data-field": "input" }, result.input)] : null,
        result && result.output !== null ? [el("div", { class: "muted" }, "output"), el("pre", { "data-field": "output" }, shown(result.output))] : null),
    ];
    if (view.items.length) {
      parts.push(el("h2", {}, "Items"), el("p", {}, view.items.map((id) => [el("a", { href: taskHref(view.run_id, id) }, id), " "])));
    }
    if (view.approvals.length) parts.push(el("h2", {}, "Approvals"), view.approvals.map((a) => approvalCard(a)));
    if (view.nested_runs.length) parts.push(el("h2", {}, "Carried out by"), view.nested_runs.map((r) => el("p", {}, runLink(r.run_id), " ", badge(r.status))));
    parts.push(el("h2", {}, `Calls (${view.calls.length})`));
    if (!view.calls.length) parts.push(el("p", { class: "muted" }, "No model calls recorded for this task."));
    view.calls.forEach((c, i) => parts.push(callCard(c, i + 1)));
    if (view.tool_calls.length) {
      parts.push(el("h2", {}, `Tool calls (${view.tool_calls.length})`), view.tool_calls.map(toolCard));
    }
    put(body, parts);
  }
  return refresh;
}

function callCard(c, number) {
  const prompt = c.prompt ? [
    c.prompt.system ? [el("div", { class: "muted" }, "system prompt"), el("pre", {}, c.prompt.system)] : null,
    (c.prompt.messages || []).map((m) => [el("div", { class: "muted" }, m.role), el("pre", {}, shown(m.content))]),
  ] : el("p", { class: "muted" }, "Prompt not recorded.");
  return el("div", { class: "card", "data-call": c.call_id },
    el("div", { class: "facts" }, el("b", {}, `#${number} ${c.purpose}`), badge(c.status), fact("model", c.model),
      fact("attempt", c.attempt), fact("latency", seconds(c.latency)),
      fact("tokens in/out", `${tokens(c.usage.input_tokens)} / ${tokens(c.usage.output_tokens)}`),
      fact("cost", money(c.cost_usd))),
    c.error ? el("pre", { class: "error-text" }, c.error) : null,
    prompt,
    c.output !== null && c.output !== undefined ? [el("div", { class: "muted" }, "output"), el("pre", { "data-field": "call-output" }, c.output)] : null);
}

function toolCard(t) {
  return el("div", { class: "card", "data-tool-call": t.key },
    el("div", { class: "facts" }, el("b", {}, t.key), fact("tool", t.tool), badge(t.outcome || t.status),
      fact("turn", t.turn), fact("latency", seconds(t.latency))),
    el("div", { class: "muted" }, "arguments"), el("pre", { "data-field": "arguments" }, shown(t.arguments)),
    t.result !== null && t.result !== undefined
      ? [el("div", { class: "muted" }, "result, as the model was given it"), el("pre", { "data-field": "tool-result" }, t.result)] : null);
}

// An approval with what it covers: the exact input the worker will receive. Approving a
// high-risk task takes typing its id, as at the terminal.
function approvalCard(a) {
  const key = `${a.run_id}/${a.task_id}`;
  const note = el("input", { type: "text", placeholder: "note (optional) / reason (required to reject)", "aria-label": "note" });
  note.value = drafts.get(key + "#note") || "";
  note.addEventListener("input", () => drafts.set(key + "#note", note.value));
  const approve = el("button", { class: "approve", "data-action": "approve" }, "Approve");
  const reject = el("button", { class: "reject", "data-action": "reject" }, "Reject");
  let confirm = null;
  if (a.risk === "high") {
    confirm = el("input", { type: "text", placeholder: `type ${a.task_id} to approve`, "aria-label": "confirm" });
    confirm.value = drafts.get(key + "#confirm") || "";
    const check = () => { approve.disabled = confirm.value.trim() !== a.task_id; };
    confirm.addEventListener("input", () => { drafts.set(key + "#confirm", confirm.value); check(); });
    check();
  }
  async function decide(action) {
    if (action === "reject" && !note.value.trim()) { flash("A rejection needs a reason: write it in the note field.", true); return; }
    approve.disabled = reject.disabled = true;
    try {
      const answer = await post(`/api/runs/${enc(a.run_id)}/tasks/${enc(a.task_id)}/${action}`,
        { inputs_sha256: a.inputs_sha256, note: note.value.trim() || null });
      drafts.delete(key + "#note"); drafts.delete(key + "#confirm");
      flash(answer.message);
    } catch (e) {
      flash(e.message, true);
    }
    update();
  }
  approve.addEventListener("click", () => decide("approve"));
  reject.addEventListener("click", () => decide("reject"));
  const path = a.run_path || [a.run_id];
  return el("div", { class: "card approval", "data-approval": key },
    el("div", { class: "facts" }, el("span", {}, "run ", runLink(a.run_id)),
      el("span", {}, a.tool ? "tool call " : "task ", el("a", { href: taskHref(a.run_id, a.task_id.split("#")[0]) }, a.task_id)),
      fact("worker", a.worker), el("span", { class: "risk-" + a.risk }, a.risk + " risk"), badge(a.status)),
    path.length > 1 ? el("p", { class: "muted" }, "nested run: " + path.join(" → ")) : null,
    a.may_have_run ? el("p", { class: "warning" }, "Asked again: an approved execution of this task already started (it failed or was cut short); its side effects may already have happened.") : null,
    a.tool ? el("p", {}, el("span", { class: "muted" }, "tool call "), el("b", {}, a.tool))
      : [el("div", { class: "muted" }, "instructions"), el("pre", {}, a.instructions)],
    el("div", { class: "muted" }, a.tool
      ? "arguments, exactly as the tool receives them (what a decision covers)"
      : "input, exactly as the worker receives it (what a decision covers)"),
    el("pre", { "data-field": "inputs" }, a.inputs),
    a.note ? el("p", {}, el("span", { class: "muted" }, "note: "), a.note) : null,
    a.status === "pending" ? el("div", { class: "actions" }, note, confirm, approve, reject) : null);
}

function approvalsView() {
  const body = el("div");
  main.replaceChildren(el("h1", {}, "Approvals"), body);
  async function refresh() {
    const { approvals } = await api("/api/approvals");
    put(body, approvals.length
      ? approvals.map((a) => approvalCard(a))
      : el("p", { class: "muted" }, "No approvals pending."));
  }
  return refresh;
}

// Horizontal bars: one row per group; `second` draws a lighter bar behind (p95 behind p50).
function barChart(title, rows, format) {
  const LABEL = 170, W = 560, RH = 22, max = Math.max(0, ...rows.map((r) => Math.max(r.value || 0, r.second || 0))) || 1;
  const width = (v) => ((v || 0) / max) * (W - LABEL - 90);
  const height = rows.length * RH + 6;
  return el("div", { class: "card" }, el("b", {}, title),
    rows.length ? svg("svg", { width: W, height, viewBox: `0 0 ${W} ${height}`, "data-chart": title },
      rows.map((r, i) => svg("g", {},
        svg("text", { x: 0, y: i * RH + 15 }, clip(r.label, 24)),
        r.second !== undefined ? svg("rect", { class: "value second", x: LABEL, y: i * RH + 4, height: RH - 8, width: width(r.second) }) : null,
        svg("rect", { class: "value", x: LABEL, y: i * RH + 4, height: RH - 8, width: width(r.value) }),
        svg("text", { x: LABEL + Math.max(width(r.value), width(r.second)) + 6, y: i * RH + 15 }, format(r))))) :
      el("p", { class: "muted" }, "No calls."));
}

function statsView() {
  const by = el("select", { "aria-label": "group by" }, ["worker", "model", "day", "run"].map((b) => el("option", { value: b }, b)));
  const body = el("div");
  by.addEventListener("change", () => refresh());
  main.replaceChildren(el("h1", {}, "Cost & latency"), body);
  async function refresh() {
    const [workers, models, days, chosen] = await Promise.all(
      ["worker", "model", "day", by.value].map((b) => api("/api/stats?by=" + b)));
    const cost = (g) => ({ label: g.worker || g.model || g.day || g.run_id, value: g.cost_usd || 0, raw: g.cost_usd });
    const latency = (g) => ({ label: g.worker || g.model, value: g.latency_p50_s || 0, second: g.latency_p95_s || 0, g });
    const total = workers.total;
    put(body,
      el("div", { class: "card facts" },
        fact("calls", total.calls), fact("tokens", tokens(total.input_tokens + total.output_tokens)),
        fact("cost", money(total.cost_usd)), fact("failed", total.failed_calls),
        el("span", { id: "most-expensive" }, el("span", { class: "muted" },
          workers.most_expensive_by === "cost" ? "most expensive worker " : "most tokens (cost unknown) "),
        el("b", {}, workers.most_expensive_worker || "—")),
        el("span", { id: "slowest" }, el("span", { class: "muted" }, "slowest worker "), el("b", {}, workers.slowest_worker || "—"))),
      el("div", { class: "charts" },
        barChart("Cost by worker", workers.groups.map(cost), (r) => money(r.raw)),
        barChart("Tokens by worker (in + out)", workers.groups.map((g) => ({ label: g.worker, value: g.input_tokens + g.output_tokens })),
          (r) => tokens(r.value)),
        barChart("Latency by worker (p50, p95 lighter)", workers.groups.filter((g) => g.latency_p50_s !== null).map(latency),
          (r) => `${seconds(r.g.latency_p50_s)} / ${seconds(r.g.latency_p95_s)}`),
        barChart("Cost by model", models.groups.map(cost), (r) => money(r.raw)),
        barChart("Latency by model (p50, p95 lighter)", models.groups.filter((g) => g.latency_p50_s !== null).map(latency),
          (r) => `${seconds(r.g.latency_p50_s)} / ${seconds(r.g.latency_p95_s)}`),
        barChart("Cost by day (UTC)", days.groups.map(cost), (r) => money(r.raw))),
      el("h2", {}, "Calls by ", by),
      statsTable(chosen));
  }
  return refresh;
}

function statsTable(stats) {
  const cols = ["calls", "failed_calls", "retried_calls", "input_tokens", "output_tokens", "cost_usd", "latency_p50_s", "latency_p95_s"];
  const format = { cost_usd: money, latency_p50_s: seconds, latency_p95_s: seconds, input_tokens: tokens, output_tokens: tokens };
  return el("table", { id: "stats" },
    el("thead", {}, el("tr", {}, el("th", {}, stats.by), cols.map((c) => el("th", { class: "num" }, c.replace(/_/g, " "))))),
    el("tbody", {}, stats.groups.map((g) => el("tr", {}, el("td", {}, g[stats.by === "run" ? "run_id" : stats.by]),
      cols.map((c) => el("td", { class: "num" }, (format[c] || String)(g[c])))))));
}

// ---- routing and live updates --------------------------------------------------------------

let refreshView = null;
let running = null;
let again = false;

function route() {
  const hash = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.nav === (parts[0] === "run" ? "runs" : parts[0] || "runs"));
  }
  if (parts[0] === "run" && parts[2] === "task" && parts[3]) refreshView = taskView(parts[1], parts.slice(3).join("/"));
  else if (parts[0] === "run" && parts[1]) refreshView = runView(parts[1]);
  else if (parts[0] === "stats") refreshView = statsView();
  else if (parts[0] === "approvals") refreshView = approvalsView();
  else refreshView = runsView();
  update();
}

// Redraw the current view; changes that arrive meanwhile cause one more redraw, not many.
function update() {
  if (running) { again = true; return running; }
  running = (async () => {
    do {
      again = false;
      try {
        await refreshView();
        await pendingCount();
      } catch (e) {
        main.replaceChildren(el("p", { class: "error-text" }, e.message));
      }
    } while (again);
    running = null;
  })();
  return running;
}

async function pendingCount() {
  const { approvals } = await api("/api/approvals");
  document.getElementById("pending-count").textContent = approvals.length ? String(approvals.length) : "";
}

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => { live.className = "live on"; update(); });
  source.addEventListener("change", () => update());
  source.onerror = () => { live.className = "live off"; };
}

window.addEventListener("hashchange", route);
route();
listen();
