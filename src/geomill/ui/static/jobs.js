/* Jobs: filters, keyset paging (newest first, next_cursor for older), live refresh, bulk rerun by filter. */
"use strict";
(() => {
  const form = document.getElementById("filters");
  const body = document.querySelector("#jobs-table tbody");
  const older = document.getElementById("older");
  let cursors = [null];  // the cursor of each page shown so far; the last is the current page's

  function filters() {
    const f = GM.formValues(form);
    return { status: f.status, job_type: f.job_type, error: f.error,
             created_after: GM.rfc3339(f.created_after), created_before: GM.rfc3339(f.created_before) };
  }

  function row(job) {
    const link = GM.el("a", { href: `${GM.root}/ui/jobs/${job.job_id}`, class: "id", text: job.job_id.slice(0, 12) });
    return GM.el("tr", { "data-job-id": job.job_id, "data-status": job.status },
      GM.el("td", {}, link), GM.el("td", { text: job.job_type }), GM.el("td", {}, GM.status(job.status)),
      GM.el("td", { text: `${job.stage}/${job.stage_count}` }), GM.el("td", { text: GM.time(job.created_at) }),
      GM.el("td", { text: GM.seconds(job.seconds) }), GM.el("td", { class: "id muted", text: job.correlation_id || "" }));
  }

  async function load() {
    const cursor = cursors[cursors.length - 1];
    const page = await GM.api("GET", `/api/jobs${GM.query({ ...filters(), limit: 25, cursor })}`);
    body.replaceChildren(...page.items.map(row));
    older.disabled = !page.next_cursor;
    older.dataset.next = page.next_cursor || "";
    document.getElementById("count").textContent = `page ${cursors.length}, ${page.items.length} job(s)`;
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); cursors = [null]; load(); });
  older.addEventListener("click", () => { cursors.push(older.dataset.next); load(); });
  document.getElementById("newest").addEventListener("click", () => { cursors = [null]; load(); });
  GM.poll(() => (document.getElementById("live").checked ? load() : undefined), 2000);

  const rerun = document.getElementById("rerun-form");
  if (!rerun) return;
  const out = document.getElementById("rerun-out");
  function rerunFilter() {
    const f = GM.formValues(rerun);
    const body = {};
    for (const k of ["status", "job_type", "error_prefix"]) if (f[k]) body[k] = f[k];
    for (const k of ["created_after", "created_before"]) if (f[k]) body[k] = GM.rfc3339(f[k]);
    return body;
  }
  rerun.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const filter = rerunFilter();
    try {
      const dry = await GM.api("POST", "/api/jobs/rerun", { ...filter, dry_run: true });
      const n = dry.matched;
      out.textContent = `${n} job(s) match, ${dry.retried_tasks} failed task(s) would run again.`;
      if (!n) return;
      await GM.confirmed(`Rerun ${n} job(s) matching this filter (${dry.retried_tasks} failed task(s))?`,
        () => GM.api("POST", "/api/jobs/rerun", { ...filter, dry_run: false }),
        (doc) => {
          out.textContent = `${doc.matched} job(s) rerun: ${doc.retried_tasks} failed task(s) queued again.`;
          out.dataset.retried = String(doc.retried_tasks);
          load();
          return `bulk rerun: ${doc.retried_tasks} task(s) of ${doc.matched} job(s) queued again`;
        });
    } catch (e) { GM.flash(`refused: ${e.message}`, "error"); }
  });
})();
