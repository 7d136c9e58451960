// The status page's script: polls the admin API's JSON endpoints and draws them.
// Everything the API returns is hostile input (keys, values and member fields come from
// writers and gossip): it enters the page only through textContent and dataset, never as
// markup. No framework and no build step: this file is served as written.
"use strict";

(function () {
  const POLL_MS = 2000;
  const PAGE = 50;
  const PREVIEW_CHARS = 80;
  const TOKEN_KEY = "gossamer-admin-token";
  const STATUSES = ["alive", "suspect", "dead", "left"];

  const $ = (id) => document.getElementById(id);

  // What the fragment asks for: a prefix to list and a key to show.
  let state = { prefix: "", key: null };
  // cursors[i] is the `after` of page i (null: the first page).
  let cursors = [null];
  let page = 0;
  let nextCursor = null;
  // The previous poll's counters, for rates.
  let previous = null;
  let timer = null;

  class AuthError extends Error {}

  // Reads the state from the URL fragment. A `token` there is moved to sessionStorage and
  // dropped from the address, so it does not linger in history or get copied with a link.
  function readFragment() {
    const p = new URLSearchParams(location.hash.slice(1));
    const token = p.get("token");
    if (token !== null) {
      sessionStorage.setItem(TOKEN_KEY, token);
      p.delete("token");
      const rest = p.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
    return { prefix: p.get("prefix") || "", key: p.get("key") };
  }

  function fragmentFor(prefix, key) {
    const p = new URLSearchParams();
    p.set("prefix", prefix);
    if (key !== null) p.set("key", key);
    return "#" + p.toString();
  }

  async function api(path) {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
    const resp = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
    if (resp.status === 401) throw new AuthError("the admin API wants a token (admin_token)");
    return resp;
  }

  async function failure(path, resp) {
    let msg = resp.status + " " + resp.statusText;
    try {
      msg = (await resp.json()).error || msg;
    } catch (_) {
      // Not an error body: keep the status line.
    }
    return new Error(path + ": " + msg);
  }

  async function getJson(path) {
    const resp = await api(path);
    if (!resp.ok) throw await failure(path, resp);
    return resp.json();
  }

  async function getText(path) {
    const resp = await api(path);
    if (!resp.ok) throw await failure(path, resp);
    return resp.text();
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function tr(cells) {
    const row = document.createElement("tr");
    for (const c of cells) row.appendChild(c);
    return row;
  }

  function fmtCount(n) {
    return Number(n).toLocaleString("en-US");
  }

  function fmtBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + " " + units[i];
  }

  function fmtDuration(s) {
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    return m + "m " + (s % 60) + "s";
  }

  function showError(msg) {
    const e = $("error");
    e.textContent = msg || "";
    e.hidden = !msg;
  }

  function renderNode(status, members) {
    const me = members.find((m) => m.is_self);
    $("node-id").textContent = status.node_id;
    $("node-line").textContent = [
      "datacenter " + status.dc,
      "cluster " + status.cluster,
      me ? me.status : "status unknown",
      fmtCount(status.keys) + " keys, " + fmtCount(status.tombstones) + " tombstones",
      "may write: " + status.may_write,
      "up " + fmtDuration(status.uptime_s),
      "version " + status.version,
      "updated " + new Date().toLocaleTimeString("en-GB"),
    ].join(" · ");
  }

  function countLine(list) {
    const counts = new Map();
    for (const m of list) counts.set(m.status, (counts.get(m.status) || 0) + 1);
    const parts = [...counts.entries()].sort().map(([s, n]) => n + " " + s);
    return list.length + (list.length === 1 ? " member: " : " members: ") + parts.join(", ");
  }

  function renderMembers(members) {
    const byDc = new Map();
    for (const m of members) {
      if (!byDc.has(m.dc)) byDc.set(m.dc, []);
      byDc.get(m.dc).push(m);
    }
    const sections = [];
    for (const dc of [...byDc.keys()].sort()) {
      const list = byDc.get(dc).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const section = el("section", null, "dc");
      section.dataset.dc = dc;
      const h = el("h3", dc || "(no datacenter)");
      h.appendChild(el("span", " — " + countLine(list), "counts"));
      section.appendChild(h);
      const table = el("table");
      table.appendChild(tr(["id", "status", "rtt", "last heard", "address", "zone", "incarnation"].map((t) => el("th", t))));
      for (const m of list) {
        const status = el("td", m.status, STATUSES.includes(m.status) ? "status-" + m.status : null);
        const rtt = m.is_self ? "—" : m.rtt_ms == null ? "not connected" : m.rtt_ms.toFixed(2) + " ms";
        const heard = m.last_heard_ms_ago == null ? "—" : (m.last_heard_ms_ago / 1000).toFixed(1) + " s ago";
        const row = tr([
          el("td", m.id), status, el("td", rtt, "num"), el("td", heard, "num"),
          el("td", m.addr), el("td", m.zone), el("td", m.incarnation, "num"),
        ]);
        row.dataset.member = m.id;
        if (m.is_self) row.className = "self";
        table.appendChild(row);
      }
      section.appendChild(table);
      sections.push(section);
    }
    $("members").replaceChildren(...sections);
    $("members-total").textContent =
      "(" + members.length + " in " + byDc.size + (byDc.size === 1 ? " datacenter)" : " datacenters)");
  }

  // Sums each sample name of the /metrics text (OpenMetrics) over its labels (e.g. bytes
  // of every class); comment lines (# HELP, # TYPE, # EOF) are skipped.
  function parseMetrics(text) {
    const sums = new Map();
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      const sp = line.lastIndexOf(" ");
      if (sp < 0) continue;
      let name = line.slice(0, sp);
      const brace = name.indexOf("{");
      if (brace >= 0) name = name.slice(0, brace);
      const v = Number(line.slice(sp + 1));
      if (Number.isFinite(v)) sums.set(name, (sums.get(name) || 0) + v);
    }
    return sums;
  }

  // [label, metric family, bytes?, counter (shown with a rate)?]
  const FIGURES = [
    ["gossip bytes sent (all classes)", "gossamer_gossip_bytes_total", true, true],
    ["datagram bytes sent", "gossamer_datagram_bytes_sent_total", true, true],
    ["datagram bytes received", "gossamer_datagram_bytes_received_total", true, true],
    ["bandwidth cap per second (0: none)", "gossamer_bandwidth_cap_bytes_per_second", true, false],
    ["bandwidth tokens", "gossamer_bandwidth_tokens_bytes", true, false],
    ["bandwidth back-off level", "gossamer_bandwidth_backoff_level", false, false],
    ["sends refused for bandwidth", "gossamer_bandwidth_refused_total", false, true],
    ["syncs started", "gossamer_syncs_started_total", false, true],
    ["syncs accepted", "gossamer_syncs_accepted_total", false, true],
    ["syncs completed", "gossamer_syncs_completed_total", false, true],
    ["syncs failed", "gossamer_syncs_failed_total", false, true],
    ["syncs deferred", "gossamer_syncs_deferred_total", false, true],
    ["syncs refused", "gossamer_syncs_refused_total", false, true],
    ["sync entries applied", "gossamer_sync_entries_applied_total", false, true],
    ["sync bytes sent", "gossamer_sync_bytes_sent_total", true, true],
    ["sync bytes received", "gossamer_sync_bytes_received_total", true, true],
  ];

  function renderFigures(text) {
    const now = { t: performance.now(), sums: parseMetrics(text) };
    const rows = [];
    for (const [label, name, bytes, counter] of FIGURES) {
      const v = now.sums.get(name);
      const fmt = bytes ? fmtBytes : fmtCount;
      let rate = "";
      if (counter && previous && v !== undefined && previous.sums.has(name)) {
        const dt = (now.t - previous.t) / 1000;
        const dv = v - previous.sums.get(name);
        if (dt > 0 && dv >= 0) rate = fmt(dv / dt);
      }
      const row = tr([el("td", label), el("td", v === undefined ? "—" : fmt(v), "num"), el("td", rate, "num")]);
      row.dataset.metric = name;
      rows.push(row);
    }
    $("figures").tBodies[0].replaceChildren(...rows);
    previous = now;
  }

  function preview(value) {
    return value.length > PREVIEW_CHARS ? value.slice(0, PREVIEW_CHARS) + "…" : value;
  }

  async function loadKeys() {
    const after = cursors[page];
    let path = "/v1/kv?prefix=" + encodeURIComponent(state.prefix) + "&limit=" + PAGE;
    if (after) path += "&after=" + after; // a cursor is percent-encoded already
    const resp = await api(path);
    if (!resp.ok) throw await failure(path, resp);
    const items = await resp.json();
    const next = resp.headers.get("x-gossamer-next");
    // The server percent-encodes cursors; anything else is not put into a URL.
    nextCursor = next && /^[A-Za-z0-9._~%-]+$/.test(next) ? next : null;
    const rows = items.map((item) => {
      const link = el("a", item.key);
      link.href = fragmentFor(state.prefix, item.key);
      const keyCell = el("td", null, "key");
      keyCell.appendChild(link);
      const row = tr([keyCell, el("td", fmtCount(item.value_len), "num"), el("td", item.writer), el("td", preview(item.value), "value")]);
      if (item.key === state.key) row.className = "selected";
      return row;
    });
    $("keys").tBodies[0].replaceChildren(...rows);
    $("next-page").disabled = nextCursor === null;
    $("first-page").disabled = page === 0;
    $("page-line").textContent =
      "page " + (page + 1) + ": " + items.length + (items.length === 1 ? " key" : " keys") +
      (state.prefix ? " under the prefix" : "");
  }

  // The selected key's value with its metadata. A key that is "." or ".." cannot go in a
  // URL path (browsers resolve such segments away): it is read from a one-entry listing.
  async function loadValue() {
    const key = state.key;
    $("value-panel").hidden = key === null;
    if (key === null) return;
    $("value-key").textContent = key;
    let meta = null;
    if (key === "." || key === "..") {
      const items = await getJson("/v1/kv?prefix=" + encodeURIComponent(key) + "&limit=1");
      if (items.length > 0 && items[0].key === key) meta = items[0];
    } else {
      const path = "/v1/kv/" + encodeURIComponent(key) + "?meta=1";
      const resp = await api(path);
      if (resp.ok) meta = await resp.json();
      else if (resp.status !== 404) throw await failure(path, resp);
    }
    if (meta === null) {
      $("value-meta").textContent = "absent (never written, or deleted)";
      $("value").textContent = "";
      return;
    }
    const parts = [fmtCount(meta.value_len) + " bytes", "writer " + meta.writer, "hlc " + meta.hlc_ms + "." + meta.hlc_lc];
    if (meta.version) {
      parts.push("version " + Object.entries(meta.version).map(([w, c]) => w + ":" + c).join(" "));
    }
    if (meta.utf8 === false) parts.push("not UTF-8 (invalid bytes shown as U+FFFD)");
    $("value-meta").textContent = parts.join(" · ");
    $("value").textContent = meta.value;
  }

  async function tick() {
    try {
      const [status, members, metrics] = await Promise.all([
        getJson("/v1/status"), getJson("/v1/members"), getText("/metrics"),
      ]);
      renderNode(status, members);
      renderMembers(members);
      renderFigures(metrics);
      await loadKeys();
      await loadValue();
      showError(null);
    } catch (e) {
      if (e instanceof AuthError) {
        // Wait for a token instead of polling a closed door.
        $("token-form").hidden = false;
        showError(e.message);
        return;
      }
      showError("cannot reach the node: " + e.message);
    }
    schedule(POLL_MS);
  }

  // One pending poll at a time: every trigger replaces the pending one.
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(tick, ms);
  }

  function resetPages() {
    cursors = [null];
    page = 0;
    nextCursor = null;
  }

  window.addEventListener("hashchange", () => {
    const before = state.prefix;
    state = readFragment();
    if (state.prefix !== before) resetPages();
    $("prefix-input").value = state.prefix;
    schedule(0);
  });

  $("prefix-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state = { prefix: $("prefix-input").value, key: null };
    resetPages();
    history.pushState(null, "", fragmentFor(state.prefix, null));
    schedule(0);
  });

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
    $("token-input").value = "";
    $("token-form").hidden = true;
    schedule(0);
  });

  $("next-page").addEventListener("click", () => {
    if (nextCursor === null) return;
    cursors[page + 1] = nextCursor;
    page++;
    schedule(0);
  });

  $("first-page").addEventListener("click", () => {
    resetPages();
    schedule(0);
  });

  state = readFragment();
  $("prefix-input").value = state.prefix;
  tick();
})();
