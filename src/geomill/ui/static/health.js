/* Health: each component, the queues (depth, consumers) and the workers seen, refreshed every 3 s. */
"use strict";
(() => {
  const details = (obj, skip) => Object.entries(obj || {}).filter(([k]) => !skip.includes(k))
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");

  function rows(id, items) { document.querySelector(`#${id} tbody`).replaceChildren(...items); }

  async function load() {
    let doc;
    try { doc = await GM.api("GET", "/api/health"); } catch (e) { if (!e.doc) throw e; doc = e.doc; }  // 503 still has the document
    document.getElementById("overall").replaceChildren(GM.status(doc.status));
    rows("components", Object.entries(doc.components || {}).map(([name, c]) => GM.el("tr", { "data-component": name },
      GM.el("td", { text: name }), GM.el("td", {}, GM.status(c.status || "")), GM.el("td", { text: details(c, ["status"]) }))));
    const queues = Array.isArray(doc.queues) ? doc.queues
      : Object.entries(doc.queues || (doc.components && doc.components.workers && doc.components.workers.queues) || {})
        .map(([name, q]) => ({ name, ...(typeof q === "object" ? q : { depth: q }) }));
    rows("queues", queues.map((q) => GM.el("tr", { "data-queue": q.name || q.queue },
      GM.el("td", { text: q.name || q.queue }), GM.el("td", { text: q.depth ?? q.messages ?? "" }),
      GM.el("td", { text: q.consumers ?? "" }), GM.el("td", { text: details(q, ["name", "queue", "depth", "consumers"]) }))));
    const workers = Array.isArray(doc.workers) ? doc.workers
      : (doc.components && doc.components.workers && (doc.components.workers.workers || doc.components.workers.seen)) || [];
    rows("workers", workers.map((w) => GM.el("tr", {},
      GM.el("td", { text: w.app_name || w.name || w.worker || "" }), GM.el("td", { text: details(w, ["app_name", "name", "worker"]) }))));
  }

  GM.poll(load, 3000);
})();
