/* Health: each component (/api/health), the queues with depth and consumers and the workers seen
   (/api/health/queues), refreshed every 3 s. */
"use strict";
(() => {
  const details = (obj, skip) => Object.entries(obj || {}).filter(([k]) => !skip.includes(k))
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");

  function rows(id, items) { document.querySelector(`#${id} tbody`).replaceChildren(...items); }

  async function load() {
    let doc;
    try { doc = await GM.api("GET", "/api/health"); } catch (e) { if (!e.doc) throw e; doc = e.doc; }  // a 503 still has the document
    document.getElementById("overall").replaceChildren(GM.status(doc.status));
    rows("components", Object.entries(doc.components || {}).map(([name, c]) => GM.el("tr", { "data-component": name },
      GM.el("td", { text: name }), GM.el("td", {}, GM.status(c.status || "")), GM.el("td", { text: details(c, ["status"]) }))));
    const q = await GM.api("GET", "/api/health/queues");
    document.getElementById("broker").textContent = q.broker ? `broker: ${q.broker}${q.broker_error ? ` (${q.broker_error})` : ""}` : "no broker: the database is the queue";
    rows("queues", q.queues.map((x) => GM.el("tr", { "data-queue": x.queue },
      GM.el("td", { text: x.queue }), GM.el("td", { text: x.queued }), GM.el("td", { text: x.ready }),
      GM.el("td", { text: x.running }), GM.el("td", { text: x.broker_messages ?? "" }), GM.el("td", { text: x.consumers ?? "" }))));
    document.getElementById("seen-within").textContent = `(heartbeat within ${q.seen_within_seconds} s)`;
    rows("workers", q.workers.map((w) => GM.el("tr", { "data-worker": w.worker_id },
      GM.el("td", { text: w.app_name || w.worker_id }), GM.el("td", { text: w.mode || "" }),
      GM.el("td", { text: (w.queues || []).join(", ") }), GM.el("td", { text: w.processes ?? "" }),
      GM.el("td", { text: w.running }), GM.el("td", { text: GM.time(w.last_seen_at) }))));
  }

  GM.poll(load, 3000);
})();
