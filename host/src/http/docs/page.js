// The ws-router documentation page: renders the AsyncAPI document the host
// serves next to this page (built from the plugins loaded now, so a reload
// follows the route set) and runs a live console on the WebSocket.
// Everything is built with DOM calls: text from the document or the server
// is never parsed as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const MAX_LOG = 150;

  /** Create an element: h("a", {href: "#x"}, "text", child, ...). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /** Text with `code spans` (as the document's descriptions use) as <code>. */
  function rich(text) {
    return String(text || "").split("`").map((part, i) => (i % 2 ? h("code", {}, part) : part));
  }

  let doc = null;
  let routes = [];

  // ---- the document ------------------------------------------------------

  /** The value a local `$ref` ("#/a/b") points at, or null. */
  function resolve(ref) {
    if (typeof ref !== "string" || !ref.startsWith("#/")) return null;
    let node = doc;
    for (const raw of ref.slice(2).split("/")) {
      const key = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
      if (node === null || typeof node !== "object" || !(key in node)) return null;
      node = node[key];
    }
    return node;
  }

  /** Follow `$ref` and single-element `allOf` wrappers; keep the outer description. */
  function deref(schema, seen) {
    let description = schema && schema.description;
    let name = null;
    let depth = 0;
    while (schema && depth++ < 20) {
      if (schema.$ref) {
        name = schema.$ref.split("/").pop();
        if (seen && seen.has(schema.$ref)) return { schema: {}, name, description, recursive: true };
        if (seen) seen.add(schema.$ref);
        schema = resolve(schema.$ref) || {};
      } else if (Array.isArray(schema.allOf) && schema.allOf.length === 1 && Object.keys(schema).every((k) => ["allOf", "description", "title", "default", "examples"].includes(k))) {
        schema = schema.allOf[0];
      } else {
        break;
      }
      if (!description && schema && schema.description) description = schema.description;
    }
    return { schema: schema || {}, name, description };
  }

  /** A short, readable type: "string", "integer (int64) | null", "\"ok\" | \"error\"", "array of string". */
  function typeText(schema) {
    const { schema: s, name } = deref(schema);
    if ("const" in s) return "const " + JSON.stringify(s.const);
    if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    const alts = s.oneOf || s.anyOf;
    if (Array.isArray(alts)) return "one of: " + alts.map(typeText).join(" | ");
    let types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
    if (types.length === 0 && s.properties) types = ["object"];
    const parts = types.map((t) => {
      if (t === "array") return "array of " + (s.items && !Array.isArray(s.items) ? typeText(s.items) : "any");
      if (t === "object" && name) return shortName(name);
      return s.format && t !== "null" ? `${t} (${s.format})` : t;
    });
    return parts.length ? parts.join(" | ") : name ? shortName(name) : "any";
  }

  /** "quotes.QuoteValues" -> "QuoteValues": the route prefix only keeps names apart. */
  function shortName(key) {
    const dot = key.indexOf(".");
    return dot >= 0 ? key.slice(dot + 1) : key;
  }

  /** Table rows for an object schema's properties, nested objects indented. */
  function schemaRows(schema, prefix, depth, seen, rows) {
    const { schema: s } = deref(schema, seen);
    const required = new Set(Array.isArray(s.required) ? s.required : []);
    for (const [name, prop] of Object.entries(s.properties || {})) {
      const resolved = deref(prop, new Set(seen));
      const t = resolved.schema;
      const dflt = "default" in prop ? prop.default : t.default;
      const examples = prop.examples || t.examples;
      rows.push(h("tr", { "data-field": prefix + name },
        h("td", { class: "field mono" }, depth ? h("span", { class: "indent" }, "│ ".repeat(depth)) : null, prefix + name),
        h("td", { class: "type mono" }, typeText(prop)),
        h("td", {}, required.has(name) ? h("span", { class: "req" }, "required") : h("span", { class: "opt" }, "optional")),
        h("td", { class: "mono" }, dflt !== undefined ? JSON.stringify(dflt) : ""),
        h("td", {}, rich(resolved.description), Array.isArray(examples) && examples.length
          ? h("div", { class: "muted" }, "e.g. ", h("code", {}, JSON.stringify(examples[0]))) : null),
      ));
      if (depth < 4 && !resolved.recursive) {
        const inner = new Set(seen);
        const alts = t.oneOf || t.anyOf;
        if (t.properties) schemaRows(prop, prefix + name + ".", depth + 1, inner, rows);
        else if (t.type === "array" && t.items && !Array.isArray(t.items) && deref(t.items).schema.properties) {
          schemaRows(t.items, prefix + name + "[].", depth + 1, inner, rows);
        } else if (Array.isArray(alts)) {
          // "One of": list the fields of the first alternative that has any
          // (quotes' v is QuoteValues or a free-form object).
          const fielded = alts.find((alt) => deref(alt, new Set(inner)).schema.properties);
          if (fielded) schemaRows(fielded, prefix + name + ".", depth + 1, inner, rows);
        }
      }
    }
    return rows;
  }

  function schemaTable(schema) {
    const { schema: s, description } = deref(schema);
    const rows = schemaRows(schema, "", 0, new Set(), []);
    const title = s.title ? h("code", {}, s.title) : null;
    return h("div", { class: "schema-block" },
      (title || description) ? h("p", { class: "schema-title" }, title, title && description ? " · " : "", rich(description)) : null,
      rows.length
        ? h("table", { class: "schema" },
            h("thead", {}, h("tr", {}, ["Field", "Type", "", "Default", "Description"].map((c) => h("th", {}, c)))),
            h("tbody", {}, rows))
        : h("p", { class: "mono" }, typeText(schema)));
  }

  function message(key) {
    return (doc.components && doc.components.messages && doc.components.messages[key]) || null;
  }

  /** The payload schema a frame carries inside its envelope. */
  function innerPayload(key) {
    const m = message(key);
    return m && m.payload && m.payload.properties ? m.payload.properties.payload : null;
  }

  function exampleBlock(label, dir, frame, action) {
    return h("div", { class: "frame-example" },
      h("div", { class: "label" }, h("span", {}, (dir === "out" ? "→ client sends · " : "← host sends · ") + label), action || null),
      // The document's objects have sorted keys; show the wire order.
      h("pre", { class: "frame" }, JSON.stringify(frame && frame.type ? { type: frame.type, payload: frame.payload } : frame)));
  }

  function routeExamples(name) {
    const blocks = [];
    const sub = message(name + ".subscribe");
    const subExample = sub && sub.examples && sub.examples[0] && sub.examples[0].payload;
    if (subExample) {
      const tryIt = h("button", { type: "button", class: "small", "data-try": name, onclick: () => tryInConsole(name, subExample.payload) }, "Try in console");
      blocks.push(exampleBlock("subscribe", "out", subExample, tryIt));
    }
    for (const [key, dir] of [[name + ".subscribe.response", "in"], [name + ".update", "in"], [name + ".unsubscribe", "out"], [name + ".unsubscribe.response", "in"]]) {
      const m = message(key);
      for (const ex of (m && m.examples) || []) {
        blocks.push(exampleBlock(key.slice(name.length + 1) + (m.examples.length > 1 ? ` (${ex.name})` : ""), dir, ex.payload));
      }
    }
    return h("div", { class: "frames" }, blocks);
  }

  function renderRoutes() {
    const info = doc.info || {};
    routes = Array.isArray(info["x-routes"]) ? info["x-routes"] : [];
    document.title = `${info.title || "ws-router"} · WebSocket API`;
    const server = Object.values(doc.servers || {})[0];
    const channel = Object.values(doc.channels || {})[0] || {};
    $("subtitle").textContent = `${routes.length} route${routes.length === 1 ? "" : "s"} · host ${info.version || "?"} · AsyncAPI ${doc.asyncapi}`;

    $("overview").replaceChildren(
      h("h2", {}, "Overview"),
      h("p", {}, "One WebSocket at ", h("code", {}, `${server ? server.protocol + "://" + server.host : ""}${channel.address || ""}`),
        " carries every route. Every frame is one JSON text message ", h("code", {}, '{"type": "<route>.<operation>", "payload": …}'), "."),
      h("p", {}, "Send ", h("code", {}, "<route>.subscribe"), " with the route's request; the host answers ", h("code", {}, "<route>.subscribe.response"),
        " with the subscription's ", h("code", {}, "topic"), " and then sends ", h("code", {}, "<route>.update"), " frames whose ",
        h("code", {}, "payload.topic"), " names it. ", h("code", {}, "<route>.unsubscribe"), " with the same request stops it."),
      h("p", {}, "Machine-readable: ", h("a", { href: "asyncapi.json" }, "asyncapi.json"), " (AsyncAPI 3.0), for client generation."));

    // Side navigation, grouped by tag.
    const byTag = new Map();
    for (const r of routes) {
      for (const t of (r.tags && r.tags.length ? r.tags : ["other"])) {
        if (!byTag.has(t)) byTag.set(t, []);
        byTag.get(t).push(r);
      }
    }
    const nav = [h("h4", {}, "Routes")];
    for (const [tag, list] of [...byTag.entries()].sort()) {
      nav.push(h("h4", {}, tag));
      for (const r of list) nav.push(h("a", { href: "#route-" + r.name }, r.name));
    }
    nav.push(h("h4", {}, "Protocol"), h("a", { href: "#host-frames" }, "Host frames"), h("a", { href: "#console" }, "Live console"));
    $("nav").replaceChildren(...nav);

    const sections = routes.map((r) => h("section", { class: "route card", id: "route-" + r.name, "data-route": r.name },
      h("h2", {}, h("code", {}, r.name), h("span", { class: "badge" }, "v" + r.version), (r.tags || []).map((t) => h("span", { class: "tag" }, t))),
      h("p", {}, rich(r.description)),
      h("h3", {}, "Request ", h("span", { class: "muted" }, `(payload of ${r.name}.subscribe and ${r.name}.unsubscribe)`)),
      innerPayload(r.name + ".subscribe") ? schemaTable(innerPayload(r.name + ".subscribe")) : null,
      h("h3", {}, "Data ", h("span", { class: "muted" }, `(payload.payload of ${r.name}.update)`)),
      dataSchema(r.name) ? schemaTable(dataSchema(r.name)) : null,
      h("h3", {}, "Example frames"),
      routeExamples(r.name)));
    if (sections.length === 0) sections.push(h("section", { class: "card" }, h("p", {}, "No routes are loaded.")));
    $("routes").replaceChildren(...sections);

    const hostFrames = ["error", "route.removed", "routes.changed"].filter((k) => message(k)).map((k) => {
      const m = message(k);
      return h("div", { "data-frame": k },
        h("h3", {}, h("code", {}, k), " ", h("span", { class: "muted" }, m.title || "")),
        h("p", {}, rich(m.summary)),
        innerPayload(k) ? schemaTable(innerPayload(k)) : null,
        h("div", { class: "frames" }, (m.examples || []).map((ex) => exampleBlock(k, "in", ex.payload))));
    });
    $("host-frames").replaceChildren(h("div", { class: "card" }, h("h2", {}, "Host frames"),
      h("p", {}, "Frames the host sends that belong to no single route."), hostFrames));
  }

  function dataSchema(name) {
    const update = innerPayload(name + ".update");
    const { schema } = deref(update || {});
    return schema.properties ? schema.properties.payload : null;
  }

  // ---- the console -------------------------------------------------------

  let ws = null;
  const subscriptions = new Map(); // topic -> {route, updates}
  let pending = null; // frames to send once connected

  function setState(state, text) {
    const pill = $("conn-state");
    pill.dataset.state = state;
    pill.textContent = text;
    $("connect").textContent = state === "open" || state === "connecting" ? "Disconnect" : "Connect";
  }

  function log(dir, text, isError) {
    const li = h("li", { class: dir + (isError ? " err" : "") },
      h("time", {}, new Date().toLocaleTimeString()),
      h("span", { class: "dir" }, dir === "out" ? "→" : dir === "in" ? "←" : "•"),
      text.length > 600 ? text.slice(0, 600) + "…" : text);
    const list = $("log");
    list.prepend(li);
    while (list.children.length > MAX_LOG) list.lastChild.remove();
  }

  function connect() {
    if (ws) return;
    const url = $("ws-url").value.trim();
    setState("connecting", "connecting…");
    try {
      ws = new WebSocket(url);
    } catch (e) {
      ws = null;
      setState("error", "cannot connect: " + e.message);
      return;
    }
    ws.addEventListener("open", () => {
      setState("open", "connected to " + url);
      log("info", "connected");
      const queued = pending || [];
      pending = null;
      queued.forEach(send);
    });
    ws.addEventListener("message", (event) => onFrame(event.data));
    ws.addEventListener("close", (event) => {
      ws = null;
      subscriptions.clear();
      renderSubscriptions();
      setState("closed", `disconnected (${event.code}${event.reason ? " " + event.reason : ""})`);
      log("info", `closed ${event.code} ${event.reason || ""}`);
    });
    // The close event that follows says what happened; an error here is
    // not a page error.
    ws.addEventListener("error", () => setState("error", "connection failed"));
  }

  function disconnect() {
    if (ws) ws.close(1000, "bye");
  }

  function send(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      (pending = pending || []).push(frame);
      connect();
      return;
    }
    const text = JSON.stringify(frame);
    ws.send(text);
    log("out", text);
  }

  function onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (e) {
      log("in", text, true);
      return;
    }
    const type = String(frame.type || "");
    const payload = frame.payload || {};
    if (type.endsWith(".update")) {
      const sub = subscriptions.get(payload.topic);
      if (sub) sub.updates += 1;
      const latest = $("latest-update");
      latest.classList.remove("muted");
      latest.dataset.type = type;
      latest.textContent = `${type} · ${new Date().toLocaleTimeString()}\n${JSON.stringify(payload, null, 2)}`;
      renderSubscriptions();
    } else if (type.endsWith(".subscribe.response") && payload.status === "ok") {
      if (!subscriptions.has(payload.topic)) subscriptions.set(payload.topic, { route: type.split(".")[0], updates: 0 });
      renderSubscriptions();
    } else if (type.endsWith(".unsubscribe.response") && payload.status === "ok") {
      subscriptions.delete(payload.topic);
      renderSubscriptions();
    } else if (type === "route.removed") {
      for (const t of payload.topics || []) subscriptions.delete(t);
      renderSubscriptions();
      $("routes-changed").hidden = false;
    } else if (type === "routes.changed") {
      $("routes-changed").hidden = false;
    }
    log("in", text, payload.status === "error");
  }

  function renderSubscriptions() {
    const list = $("subscriptions");
    if (subscriptions.size === 0) {
      list.replaceChildren(h("li", { class: "muted" }, "none"));
      return;
    }
    list.replaceChildren(...[...subscriptions.entries()].map(([topic, s]) =>
      h("li", { "data-topic": topic },
        h("span", { class: "topic mono" }, topic),
        h("span", { class: "count", "data-updates": s.updates }, `${s.updates} update${s.updates === 1 ? "" : "s"}`))));
  }

  function prefill(route) {
    const sub = message(route + ".subscribe");
    const example = sub && sub.examples && sub.examples[0] && sub.examples[0].payload;
    $("request").value = JSON.stringify(example ? example.payload : {}, null, 2);
    $("request-error").hidden = true;
  }

  function tryInConsole(route, request) {
    $("route-select").value = route;
    $("request").value = JSON.stringify(request, null, 2);
    $("console").scrollIntoView({ behavior: "smooth" });
  }

  function operate(op) {
    const route = $("route-select").value;
    let request;
    try {
      request = JSON.parse($("request").value);
    } catch (e) {
      const err = $("request-error");
      err.textContent = "The request is not valid JSON: " + e.message;
      err.hidden = false;
      return;
    }
    $("request-error").hidden = true;
    send({ type: `${route}.${op}`, payload: request });
  }

  function setupConsole() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const channel = Object.values(doc.channels || {})[0] || {};
    $("ws-url").value = `${scheme}//${location.host}${channel.address || "/api/v1/ws"}`;
    $("route-select").replaceChildren(...routes.map((r) => h("option", { value: r.name }, `${r.name} (v${r.version})`)));
    if (routes.length) prefill(routes[0].name);
    $("route-select").addEventListener("change", (e) => prefill(e.target.value));
    $("connect").addEventListener("click", () => (ws ? disconnect() : connect()));
    $("subscribe").addEventListener("click", () => operate("subscribe"));
    $("unsubscribe").addEventListener("click", () => operate("unsubscribe"));
    $("clear-log").addEventListener("click", () => $("log").replaceChildren());
    $("reload").addEventListener("click", () => location.reload());
  }

  async function main() {
    try {
      const response = await fetch("asyncapi.json", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      doc = await response.json();
    } catch (e) {
      $("subtitle").textContent = "Could not load asyncapi.json: " + e.message;
      return;
    }
    renderRoutes();
    setupConsole();
    document.body.dataset.ready = "true";
  }

  main();
})();
