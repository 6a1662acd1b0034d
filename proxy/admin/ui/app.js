// qgate dashboard (README "Dashboard", proxy/DESIGN.md "Dashboard"). Plain JavaScript, no build step:
// it reads everything from the JSON API under /api/v1 and builds the page with DOM calls only -
// every value from the API goes through textContent, never through HTML parsing.
"use strict";

(() => {
  const REFRESH_MS = 3000;
  const DEAD_DEFAULT = 20;
  const DEAD_MAX = 1000; // the API's bound on ?count=
  const PAYLOAD_SHOWN = 4000; // characters of a dead payload shown before "show all"

  // ---- DOM helpers ------------------------------------------------------------------------------

  // h builds an element: h("td", {class: "num"}, "text", child...). Strings become text nodes.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const $ = (id) => document.getElementById(id);

  // ---- formatting -------------------------------------------------------------------------------

  const numFmt = new Intl.NumberFormat("en-US");
  const num = (n) => (n === undefined || n === null ? "–" : numFmt.format(n));
  const rateFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const rate = (r) => (r === undefined || r === null ? "–" : rateFmt.format(r));

  // age formats milliseconds as "3m 12s" (two largest units).
  function age(ms) {
    if (ms === undefined || ms === null || ms < 0) return "–";
    let s = Math.floor(ms / 1000);
    if (s < 1) return Math.round(ms) + "ms";
    const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
    const parts = [];
    for (const [u, n] of units) {
      if (s >= n || (parts.length && parts.length < 2)) {
        parts.push(Math.floor(s / n) + u);
        s %= n;
      }
      if (parts.length === 2) break;
    }
    return parts.join(" ");
  }

  function when(v) {
    if (v === undefined || v === null || v === "") return "–";
    const d = new Date(v);
    return isNaN(d) ? String(v) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  // ---- API ---------------------------------------------------------------------------------------

  class APIError extends Error {
    constructor(status, msg) {
      super(msg);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const opt = { method, headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(new URL(path, location.origin), opt);
    } catch (e) {
      throw new APIError(0, "qgate unreachable: " + e.message);
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    if (!resp.ok) throw new APIError(resp.status, (data && data.error) || resp.status + " " + resp.statusText);
    return data;
  }
  const qpath = (name) => "/api/v1/queues/" + encodeURIComponent(name);

  // ---- chrome: banner, toast, confirmation --------------------------------------------------------

  function banner(msg) {
    const b = $("banner");
    b.textContent = msg || "";
    b.hidden = !msg;
  }

  let toastTimer;
  function toast(msg) {
    const t = $("toast");
    t.textContent = msg;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (t.hidden = true), 4000);
  }

  // confirmAction shows the modal and resolves true on Confirm, false on Cancel or Escape.
  function confirmAction(title, text, okLabel) {
    const d = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = okLabel || "Confirm";
    return new Promise((resolve) => {
      const done = (v) => {
        $("confirm-ok").onclick = $("confirm-cancel").onclick = d.oncancel = null;
        if (d.open) d.close();
        resolve(v);
      };
      $("confirm-ok").onclick = () => done(true);
      $("confirm-cancel").onclick = () => done(false);
      d.oncancel = (e) => {
        e.preventDefault();
        done(false);
      };
      d.showModal();
      $("confirm-cancel").focus();
    });
  }

  function errText(e) {
    if (e.status === 401) return "Not signed in: reload the page to enter credentials.";
    return e.message;
  }

  // ---- header -------------------------------------------------------------------------------------

  async function refreshStatus() {
    try {
      const s = await api("GET", "/api/v1/status");
      const ok = s.backend === "ok" && !s.shutting_down;
      $("status-dot").className = "dot " + (ok ? "ok" : "bad");
      const parts = ["qgate " + s.version, s.instance, "up " + age(s.uptime_seconds * 1000),
        s.shutting_down ? "shutting down" : "backend " + s.backend];
      if (s.user) parts.push("user " + s.user);
      $("status-text").textContent = parts.join(" · ");
      $("status").title = "instance " + s.instance + ", started " + s.started;
    } catch (e) {
      $("status-dot").className = "dot bad";
      $("status-text").textContent = errText(e);
    }
  }

  // ---- queues page --------------------------------------------------------------------------------

  const COLS = [
    { key: "name", label: "Queue", num: false },
    { key: "delivery", label: "Delivery", num: false },
    { key: "rule", label: "Rule", num: false },
    { key: "ready", label: "Ready", num: true },
    { key: "in_flight", label: "In flight", num: true },
    { key: "delayed", label: "Delayed", num: true },
    { key: "dead", label: "Dead", num: true },
    { key: "oldest_ready_age_ms", label: "Oldest", num: true },
    { key: "push_rate", label: "Push/s", num: true },
    { key: "pop_rate", label: "Pop/s", num: true },
    { key: "ack_rate", label: "Ack/s", num: true },
  ];

  const queuesState = { sort: "name", desc: false, filter: "", prev: null, rows: [], loaded: false };

  // withRates adds push/pop/ack per second, from this instance's counters between two listings.
  function withRates(queues, now) {
    const prev = queuesState.prev;
    const snap = { t: now, c: {} };
    for (const q of queues) {
      if (q.counters) snap.c[q.name] = q.counters;
      const p = prev && prev.c[q.name];
      if (p && q.counters && now > prev.t) {
        const dt = (now - prev.t) / 1000;
        q.push_rate = Math.max(0, (q.counters.Pushed - p.Pushed) / dt);
        q.pop_rate = Math.max(0, (q.counters.Popped - p.Popped) / dt);
        q.ack_rate = Math.max(0, (q.counters.Acked - p.Acked) / dt);
      }
    }
    queuesState.prev = snap;
    return queues;
  }

  function sortRows(rows) {
    const { sort, desc } = queuesState;
    const col = COLS.find((c) => c.key === sort) || COLS[0];
    const v = (r) => {
      const x = r[col.key];
      if (col.num) return x === undefined || x === null || x < 0 ? -1 : x;
      return String(x || "");
    };
    return rows.slice().sort((a, b) => {
      let d = col.num ? v(a) - v(b) : v(a).localeCompare(v(b));
      if (d === 0) d = a.name.localeCompare(b.name);
      return desc ? -d : d;
    });
  }

  function renderQueues(view) {
    const st = queuesState;
    const f = st.filter.trim().toLowerCase();
    const rows = sortRows(st.rows.filter((q) => !f || q.name.toLowerCase().includes(f) || (q.rule || "").toLowerCase().includes(f)));
    const tot = { ready: 0, in_flight: 0, delayed: 0, dead: 0 };
    for (const q of st.rows) for (const k of Object.keys(tot)) tot[k] += q[k] || 0;

    const cards = h("div", { class: "cards" },
      card("Queues", num(st.rows.length)), card("Ready", num(tot.ready)), card("In flight", num(tot.in_flight)),
      card("Delayed", num(tot.delayed)), card("Dead", num(tot.dead), tot.dead > 0 ? "warn" : ""));

    const head = h("tr", {}, COLS.map((c) => h("th", {
      class: (c.num ? "num " : "") + "sortable" + (st.sort === c.key ? (st.desc ? " desc" : " asc") : ""),
      scope: "col", "aria-sort": st.sort === c.key ? (st.desc ? "descending" : "ascending") : "none",
      onclick: () => {
        if (st.sort === c.key) st.desc = !st.desc;
        else {
          st.sort = c.key;
          st.desc = c.num;
        }
        renderQueues(view);
      },
    }, c.label)));

    const body = h("tbody", {}, rows.map((q) => h("tr", { "data-queue": q.name },
      h("td", {}, h("a", { href: "#/queue/" + encodeURIComponent(q.name) }, q.name)),
      h("td", {}, h("span", { class: "tag " + (q.delivery === "at-least-once" ? "alo" : "amo") }, q.delivery)),
      h("td", { class: "muted" }, q.rule),
      h("td", { class: "num" }, num(q.ready)),
      h("td", { class: "num" }, num(q.in_flight)),
      h("td", { class: "num" }, num(q.delayed)),
      h("td", { class: "num" + (q.dead > 0 ? " warn" : "") }, num(q.dead)),
      h("td", { class: "num" }, age(q.oldest_ready_age_ms)),
      h("td", { class: "num" }, rate(q.push_rate)),
      h("td", { class: "num" }, rate(q.pop_rate)),
      h("td", { class: "num" }, rate(q.ack_rate)),
    )));

    let empty = null;
    if (st.loaded && rows.length === 0) {
      empty = h("p", { class: "empty" }, st.rows.length ? "No queue matches the filter." :
        "No queues yet: a queue appears here once a client pushes to it.");
    }

    const filter = h("input", { type: "search", id: "filter", placeholder: "Filter by name or rule", value: st.filter,
      "aria-label": "Filter queues", oninput: (e) => {
        st.filter = e.target.value;
        renderQueues(view);
        const el = $("filter");
        el.focus();
        el.setSelectionRange(el.value.length, el.value.length);
      } });

    view.replaceChildren(
      h("div", { class: "bar" }, h("h1", {}, "Queues"), filter,
        h("span", { class: "muted small" }, "rates: this instance, per second between refreshes (every " + REFRESH_MS / 1000 + " s)")),
      cards,
      h("div", { class: "scroll" }, h("table", { class: "grid", id: "queues" }, h("thead", {}, head), body)),
      ...(empty ? [empty] : []));
  }

  function card(label, value, cls) {
    return h("div", { class: "card " + (cls || "") }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
  }

  async function loadQueues(view) {
    try {
      const d = await api("GET", "/api/v1/queues?detail=1");
      queuesState.rows = withRates(d.queues || [], performance.now());
      queuesState.loaded = true;
      banner("");
    } catch (e) {
      banner(errText(e));
    }
    if (!view.isConnected) return;
    // Keep focus and caret of the filter box across refreshes.
    const focused = document.activeElement && document.activeElement.id === "filter";
    renderQueues(view);
    if (focused) {
      const el = $("filter");
      el.focus();
      el.setSelectionRange(el.value.length, el.value.length);
    }
  }

  // ---- queue page ---------------------------------------------------------------------------------

  function ruleText(p) {
    if (!p) return "";
    const lines = [];
    for (const [k, v] of Object.entries(p)) {
      if (v === undefined || v === null || v === "") continue;
      lines.push(k + ": " + (typeof v === "string" ? JSON.stringify(v) : String(v)));
    }
    return lines.join("\n");
  }

  function payloadCell(text, encoded) {
    const pre = h("pre", { class: "payload" });
    const long = text.length > PAYLOAD_SHOWN;
    pre.textContent = long ? text.slice(0, PAYLOAD_SHOWN) : text;
    const out = [pre];
    if (encoded) out.unshift(h("span", { class: "tag" }, encoded));
    if (long) {
      const more = h("button", { type: "button", class: "link", onclick: () => {
        pre.textContent = text;
        more.remove();
      } }, "show all " + num(text.length) + " characters");
      out.push(more);
    }
    return out;
  }

  function deadTable(dead) {
    if (!dead.length) return h("p", { class: "empty", id: "dead-empty" }, "No dead letters.");
    return h("div", { class: "scroll" }, h("table", { class: "grid dead", id: "dead" },
      h("thead", {}, h("tr", {}, ["#", "Reason", "Attempts", "Failed at", "ID", "Enqueued at", "Producer", "Payload"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, dead.map((d, i) => d.raw !== undefined && d.raw !== "" ?
        h("tr", { "data-dead": i }, h("td", { class: "num" }, i + 1), h("td", { colspan: 6, class: "muted" }, "not a qgate record (shown as stored)"),
          h("td", {}, payloadCell(d.raw))) :
        h("tr", { "data-dead": i },
          h("td", { class: "num" }, i + 1),
          h("td", {}, d.reason || "–"),
          h("td", { class: "num" }, num(d.attempts)),
          h("td", { class: "nowrap" }, when(d.failed_at)),
          h("td", { class: "mono" }, d.id || "–"),
          h("td", { class: "nowrap" }, when(d.enqueued_at)),
          h("td", {}, d.producer || "–"),
          h("td", {}, payloadCell(d.payload || "", d.payload_encoding)))))));
  }

  function renderQueue(view, name) {
    const countsEl = h("div", { class: "cards" });
    const counters = h("div", { class: "cards small" });
    const rule = h("pre", { class: "rule", id: "rule" });
    const ruleName = h("span", { class: "muted" });
    const deadEl = h("div", { id: "dead-list" });
    const countIn = h("input", { type: "number", min: 1, max: DEAD_MAX, value: DEAD_DEFAULT, id: "dead-count", "aria-label": "Dead letters to show" });
    const nIn = h("input", { type: "number", min: 1, value: 1, id: "redrive-n", "aria-label": "Dead letters to redrive" });

    async function loadInfo() {
      try {
        const q = await api("GET", qpath(name));
        banner("");
        const c = q.counters || {};
        countsEl.replaceChildren(card("Ready", num(q.ready)), card("In flight", num(q.in_flight)), card("Delayed", num(q.delayed)),
          card("Dead", num(q.dead), q.dead > 0 ? "warn" : ""), card("Handoff", num(q.handoff)), card("Oldest ready", age(q.oldest_ready_age_ms)));
        counters.replaceChildren(...(q.counters ? [card("Pushed", num(c.Pushed)), card("Popped", num(c.Popped)), card("Acked", num(c.Acked)),
          card("Retried", num(c.Retried)), card("Dead-lettered", num(c.DeadLettered)), card("Rejected (rule)", num(c.RejectedRule)),
          card("Rejected (size)", num(c.RejectedTooLarge))] : [h("p", { class: "muted small" }, "No counters on this instance for this queue yet.")]));
        ruleName.textContent = q.rule + " · " + q.delivery;
        rule.textContent = ruleText(q.policy);
      } catch (e) {
        banner(errText(e));
      }
    }

    async function loadDead() {
      const n = Math.min(DEAD_MAX, Math.max(1, parseInt(countIn.value, 10) || DEAD_DEFAULT));
      countIn.value = n;
      try {
        const d = await api("GET", qpath(name) + "/dead?count=" + n);
        deadEl.replaceChildren(deadTable(d.dead || []));
      } catch (e) {
        deadEl.replaceChildren(h("p", { class: "error" }, errText(e)));
      }
    }

    async function act(title, text, ok, method, path, body, report) {
      if (!(await confirmAction(title, text, ok))) return;
      try {
        const r = await api(method, path, body);
        toast(report(r));
      } catch (e) {
        toast(errText(e));
      }
      await Promise.all([loadInfo(), loadDead()]);
    }

    const redriveAll = () => act("Redrive all dead letters?", "Every dead letter of " + name + " goes back to the ready list with its attempts reset.",
      "Redrive all", "POST", qpath(name) + "/redrive", undefined, (r) => "Redriven: " + num(r.redriven));
    const redriveN = () => {
      const n = parseInt(nIn.value, 10);
      if (!(n >= 1)) {
        toast("Enter how many dead letters to redrive (1 or more).");
        return;
      }
      return act("Redrive " + num(n) + " dead letter" + (n === 1 ? "" : "s") + "?", "The oldest " + num(n) + " dead letters of " + name +
        " go back to the ready list with their attempts reset.", "Redrive", "POST", qpath(name) + "/redrive", { count: n }, (r) => "Redriven: " + num(r.redriven));
    };
    const purge = () => act("Purge all dead letters?", "Every dead letter of " + name + " is deleted. This cannot be undone.",
      "Purge", "DELETE", qpath(name) + "/dead", undefined, (r) => "Purged: " + num(r.purged));

    view.replaceChildren(
      h("div", { class: "bar" }, h("h1", {}, h("a", { href: "#/" }, "Queues"), " / ", h("span", { id: "queue-name" }, name)), ruleName),
      countsEl,
      h("h2", {}, "Counters ", h("span", { class: "muted small" }, "this instance, since it started")),
      counters,
      h("h2", {}, "Rule"),
      rule,
      h("h2", {}, "Dead letters"),
      h("div", { class: "toolbar" },
        h("label", {}, "Show ", countIn),
        h("button", { type: "button", id: "dead-load", onclick: loadDead }, "Load"),
        h("span", { class: "sep" }),
        h("button", { type: "button", id: "redrive-all", onclick: redriveAll }, "Redrive all"),
        h("label", {}, nIn),
        h("button", { type: "button", id: "redrive-some", onclick: redriveN }, "Redrive N"),
        h("span", { class: "sep" }),
        h("button", { type: "button", id: "purge", class: "danger", onclick: purge }, "Purge")),
      deadEl);
    loadInfo();
    loadDead();
    return loadInfo; // refreshed with the page; dead letters only on demand
  }

  // ---- clients page -------------------------------------------------------------------------------

  async function loadClients(view) {
    let clients;
    try {
      clients = (await api("GET", "/api/v1/clients")).clients || [];
      banner("");
    } catch (e) {
      if (!view.isConnected) return;
      view.replaceChildren(h("h1", {}, "Clients"), h("p", { class: "error" }, errText(e)));
      return;
    }
    if (!view.isConnected) return;
    clients.sort((a, b) => a.id - b.id);
    view.replaceChildren(
      h("div", { class: "bar" }, h("h1", {}, "Clients"), h("span", { class: "muted small" }, num(clients.length) + (clients.length === 1 ? " connection" : " connections") + " to this instance")),
      clients.length === 0 ? h("p", { class: "empty" }, "No clients connected.") :
        h("div", { class: "scroll" }, h("table", { class: "grid", id: "clients" },
          h("thead", {}, h("tr", {}, [["ID", 1], ["Address"], ["User"], ["Name"], ["RESP", 1], ["Blocked"], ["Leases", 1], ["Subscriptions", 1], ["Age", 1]]
            .map(([c, n]) => h("th", { scope: "col", class: n ? "num" : "" }, c)))),
          h("tbody", {}, clients.map((c) => h("tr", { "data-client": c.id },
            h("td", { class: "num" }, c.id), h("td", { class: "mono" }, c.addr), h("td", {}, c.user || "–"), h("td", {}, c.name || "–"),
            h("td", { class: "num" }, c.protocol), h("td", {}, c.blocked ? "yes" : ""), h("td", { class: "num" }, num(c.leases)),
            h("td", { class: "num" }, num(c.subscriptions)), h("td", { class: "num" }, age(c.age_seconds * 1000))))))));
  }

  // ---- router -------------------------------------------------------------------------------------

  let timer = null;

  function route() {
    clearInterval(timer);
    const view = h("div", { class: "page" });
    $("view").replaceChildren(view);
    banner("");
    const hash = location.hash || "#/";
    let nav = "queues";
    let refresh;
    if (hash.startsWith("#/queue/")) {
      let name;
      try {
        name = decodeURIComponent(hash.slice("#/queue/".length));
      } catch (e) {
        name = hash.slice("#/queue/".length);
      }
      document.title = name + " · qgate";
      refresh = renderQueue(view, name);
    } else if (hash === "#/clients") {
      nav = "clients";
      document.title = "Clients · qgate";
      refresh = () => loadClients(view);
      refresh();
    } else {
      document.title = "Queues · qgate";
      queuesState.prev = null;
      queuesState.loaded = false;
      renderQueues(view);
      refresh = () => loadQueues(view);
      refresh();
    }
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
    timer = setInterval(() => {
      if (!document.hidden) {
        refresh();
        refreshStatus();
      }
    }, REFRESH_MS);
  }

  window.addEventListener("hashchange", route);
  document.addEventListener("DOMContentLoaded", () => {
    refreshStatus();
    route();
  });
})();
