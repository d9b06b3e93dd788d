"""``/docs``: a self-contained API browser for /openapi.json (no CDN, no build step).

It lists every operation by tag with its parameters, body and responses, and can send a request
with a bearer token typed into the page (kept in sessionStorage only). The page and its script
are served by streamd itself; the Content-Security-Policy allows nothing from elsewhere.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamd API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1000px;padding:1em;color:#222}
h1{margin:.2em 0}h2{border-bottom:1px solid #ddd;margin-top:1.5em;text-transform:capitalize}
details{border:1px solid #ddd;border-radius:6px;margin:.4em 0;padding:.3em .6em}
summary{cursor:pointer}code,pre,textarea,input{font:13px ui-monospace,monospace}
pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:24em}
.m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.patch{color:#b60}.delete{color:#c22}.lock{color:#888}
textarea{width:100%;min-height:6em}input{width:22em}label{display:block;margin:.2em 0}
</style></head><body>
<h1>streamd API</h1>
<p id="intro"></p>
<label>Access token: <input id="token" placeholder="paste access_token from /api/auth/login">
</label>
<div id="ops">loading /openapi.json …</div>
<script src="/docs/app.js"></script>
</body></html>
"""

SCRIPT = r"""
"use strict";
const $ = (tag, props = {}, ...kids) => {
  const el = Object.assign(document.createElement(tag), props);
  for (const kid of kids) el.append(kid);
  return el;
};
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("streamd-token") || "";
tokenInput.addEventListener(
  "change", () => sessionStorage.setItem("streamd-token", tokenInput.value));

function resolve(doc, schema) {
  while (schema && schema.$ref) schema = doc.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

function skeleton(doc, schema, depth = 0) {
  schema = resolve(doc, schema);
  if (depth > 3) return null;
  if (schema.anyOf) return skeleton(doc, schema.anyOf[0], depth + 1);
  if (schema.type === "object" || schema.properties) {
    const out = {};
    for (const [k, v] of Object.entries(schema.properties || {}))
      out[k] = skeleton(doc, v, depth + 1);
    return out;
  }
  if (schema.enum) return schema.enum[0];
  return {string: "", integer: 0, boolean: false, array: []}[schema.type] ?? null;
}

function operation(doc, path, method, op) {
  const lock = op.security ? $("span", {className: "lock", textContent: " (token)"}) : "";
  const head = $("summary", {}, $("span", {className: "m " + method, textContent: method}),
    $("code", {textContent: path}), " — " + op.summary, lock);
  const box = $("details", {}, head);
  const inputs = {};
  for (const p of op.parameters || []) {
    const input = $("input", {placeholder: JSON.stringify(p.schema)});
    inputs[p.name] = [p, input];
    box.append($("label", {}, `${p.in} ${p.name}${p.required ? " (required)" : ""} `, input));
  }
  let body = null;
  if (op.requestBody) {
    const schema = op.requestBody.content["application/json"].schema;
    body = $("textarea", {value: JSON.stringify(skeleton(doc, schema), null, 2)});
    box.append($("div", {textContent: "JSON body:"}), body);
  }
  const codes = Object.keys(op.responses).join(", ");
  box.append($("div", {textContent: "responses: " + codes}));
  const out = $("pre", {textContent: ""});
  const send = $("button", {textContent: "Send", onclick: async () => {
    let url = path;
    const query = new URLSearchParams();
    for (const [name, [p, input]] of Object.entries(inputs)) {
      if (p.in === "path") url = url.replace(`{${name}}`, encodeURIComponent(input.value));
      else if (input.value !== "") query.set(name, input.value);
    }
    if ([...query].length) url += "?" + query;
    const headers = {};
    if (tokenInput.value) headers.Authorization = "Bearer " + tokenInput.value.trim();
    if (body) headers["Content-Type"] = "application/json";
    const init = {method: method.toUpperCase(), headers, body: body ? body.value : undefined};
    const r = await fetch(url, init);
    const text = await r.text();
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
    out.textContent = `${r.status} ${r.statusText}\n${shown}`;
  }});
  box.append(send, out);
  return box;
}

fetch("/openapi.json").then(r => r.json()).then(doc => {
  document.getElementById("intro").textContent =
    `${doc.info.title} ${doc.info.version}. ${doc.info.description}`;
  const byTag = {};
  for (const [path, methods] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(methods))
      (byTag[op.tags[0]] ||= []).push(operation(doc, path, method, op));
  const root = document.getElementById("ops");
  root.textContent = "";
  for (const [tag, boxes] of Object.entries(byTag))
    root.append($("h2", {textContent: tag}), ...boxes);
});
"""


async def docs_page(request: Request) -> Response:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": CSP})


async def docs_script(request: Request) -> Response:
    return Response(SCRIPT, media_type="text/javascript", headers={"Content-Security-Policy": CSP})
