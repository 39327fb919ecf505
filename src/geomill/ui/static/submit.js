/* Submit a job: the job type's parameter form is built from its JSON Schema (/api/job-types); the JSON box shows,
   and may replace, what is sent. */
"use strict";
(() => {
  const select = document.getElementById("job-type");
  const fields = document.getElementById("param-fields");
  const box = document.getElementById("params-json");
  let types = {};
  let edited = false;

  function resolve(schema, root) {
    if (schema && schema.$ref) return resolve(root.$defs[schema.$ref.split("/").pop()], root);
    if (schema && schema.anyOf) {
      const plain = schema.anyOf.filter((s) => s.type !== "null");
      if (plain.length === 1) return { ...resolve(plain[0], root), nullable: true, description: schema.description, default: schema.default };
    }
    return schema || {};
  }

  function input(name, prop, required) {
    const kind = prop.type;
    const attrs = { name, "data-kind": kind || "json", "data-required": required ? "true" : null };
    let node;
    if (kind === "boolean") node = GM.el("input", { ...attrs, type: "checkbox", checked: prop.default === true });
    else if (prop.enum) node = GM.el("select", attrs, ...(required ? [] : [GM.el("option", { value: "", text: "" })]),
      ...prop.enum.map((v) => GM.el("option", { value: v, text: v, selected: v === prop.default })));
    else if (kind === "integer" || kind === "number") {
      node = GM.el("input", { ...attrs, type: "number", step: kind === "integer" ? "1" : "any",
        min: prop.minimum, max: prop.maximum, value: prop.default ?? "" });
    } else if (kind === "string") node = GM.el("input", { ...attrs, type: "text", size: 50, value: prop.default ?? "" });
    else node = GM.el("input", { ...attrs, type: "text", size: 50, value: prop.default === undefined ? "" : JSON.stringify(prop.default) });
    node.addEventListener("input", sync);
    node.addEventListener("change", sync);
    return GM.el("label", { class: "param" }, GM.el("span", { text: `${name}${required ? " *" : ""}` }), node,
      GM.el("small", { class: "muted", text: prop.description || "" }));
  }

  function values() {
    const params = {};
    for (const node of fields.querySelectorAll("[name]")) {
      const kind = node.dataset.kind;
      if (kind === "boolean") { params[node.name] = node.checked; continue; }
      const raw = node.value.trim();
      if (raw === "") continue;
      if (kind === "integer" || kind === "number") params[node.name] = Number(raw);
      else if (kind === "string") params[node.name] = raw;
      else { try { params[node.name] = JSON.parse(raw); } catch (e) { params[node.name] = raw; } }
    }
    return params;
  }

  function sync() { box.value = JSON.stringify(values(), null, 2); edited = false; }

  function build() {
    const jt = types[select.value];
    document.getElementById("job-type-description").textContent = jt.description;
    const schema = jt.parameters || {};
    const required = new Set(schema.required || []);
    fields.replaceChildren(...Object.entries(schema.properties || {}).map(
      ([name, prop]) => input(name, resolve(prop, schema), required.has(name))));
    sync();
  }

  box.addEventListener("input", () => { edited = true; });
  select.addEventListener("change", build);
  document.getElementById("submit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let params;
    try { params = edited ? JSON.parse(box.value || "{}") : values(); } catch (e) { GM.flash(`the JSON is not valid: ${e.message}`, "error"); return; }
    try {
      const doc = await GM.api("POST", `/api/jobs/submit/${encodeURIComponent(select.value)}`, params);
      const link = GM.el("a", { id: "submitted-link", href: `${GM.root}/ui/jobs/${doc.job_id}`, text: doc.job_id });
      document.getElementById("submit-out").replaceChildren(doc.created ? "Submitted: " : "Already submitted: ", link);
      GM.flash(`job ${doc.job_id.slice(0, 12)} ${doc.created ? "submitted" : "existed already"}`, "ok");
    } catch (e) {
      const why = e.doc && e.doc.errors ? e.doc.errors.map((x) => `${x.field}: ${x.message}`).join("; ") : e.message;
      GM.flash(`refused: ${why}`, "error");
    }
  });

  GM.api("GET", "/api/job-types").then((list) => {
    types = Object.fromEntries(list.map((jt) => [jt.name, jt]));
    select.replaceChildren(...list.map((jt) => GM.el("option", { value: jt.name, text: jt.name })));
    const wanted = new URLSearchParams(location.search).get("job_type");
    if (wanted && types[wanted]) select.value = wanted;
    build();
  }, (e) => GM.flash(e.message, "error"));
})();
