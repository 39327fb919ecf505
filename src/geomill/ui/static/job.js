/* A job: facts, stages as a Gantt with counts per status, live progress and ETA, outputs on a map, tasks paged,
   a task's attempts/worker/queue/timings/error, and the actions (each behind a confirmation). */
"use strict";
(() => {
  const jobId = document.getElementById("job").dataset.jobId;
  const RUNNING = ["queued", "processing"];
  const COLORS = { completed: "#2e8b57", failed: "#c0392b", processing: "#2f74c0", queued: "#b8b8b8",
                   cancelled: "#7f6a93" };
  let mapShown = false;
  let taskCursors = [null];

  function fact(dl, label, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(GM.el("dt", { text: label }), GM.el("dd", {}, value));
  }

  function renderFacts(job) {
    const dl = document.getElementById("facts");
    dl.replaceChildren();
    fact(dl, "Job id", GM.el("code", { text: job.job_id }));
    fact(dl, "Type", job.job_type);
    fact(dl, "Stage", `${job.stage}/${job.stage_count}${job.stage_name ? ` (${job.stage_name})` : ""}`);
    fact(dl, "Progress", `${(job.progress ?? 0).toFixed(1)} %`);
    fact(dl, "ETA", job.estimated_completion ? GM.time(job.estimated_completion) : "");
    fact(dl, "Created", GM.time(job.created_at));
    fact(dl, "Started", GM.time(job.started_at));
    fact(dl, "Finished", GM.time(job.finished_at));
    fact(dl, "Took", GM.seconds(job.seconds));
    fact(dl, "Correlation id", job.correlation_id ? GM.el("code", { id: "correlation-id", text: job.correlation_id }) : "");
    if (job.resubmit_of) {
      fact(dl, "Rerun of", GM.el("a", { href: `${GM.root}/ui/jobs/${job.resubmit_of}`, text: job.resubmit_of.slice(0, 12) }));
    }
    if (job.error) fact(dl, "Error", GM.el("span", { class: "err", text: `${job.error.type || ""}: ${job.error.message || ""}` }));
    const st = document.getElementById("job-status");
    st.replaceChildren(GM.status(job.status));
    st.dataset.status = job.status;
  }

  function counts(s) {
    return { queued: s.queued || 0, processing: s.processing || 0, completed: s.completed || 0,
             failed: s.failed || 0, cancelled: s.cancelled || 0 };
  }

  /* One bar per stage from its start to its end (or now), split by the share of tasks in each status. */
  function renderGantt(job, stages) {
    const started = stages.map((s) => s.started_at).filter(Boolean).map((t) => Date.parse(t));
    const box = document.getElementById("gantt");
    if (!started.length) { box.textContent = "no stage has started yet"; return; }
    const now = Date.now();
    const t0 = Math.min(...started);
    const ends = stages.map((s) => (s.completed_at ? Date.parse(s.completed_at) : (s.started_at ? now : t0)));
    const t1 = Math.max(...ends, t0 + 1);
    const W = 900, ROW = 22, LABEL = 160, H = stages.length * ROW + 24;
    const x = (t) => LABEL + ((t - t0) / (t1 - t0)) * (W - LABEL - 10);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("class", "gantt");
    const add = (tag, attrs, text) => {
      const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text !== undefined) n.textContent = text;
      svg.append(n);
      return n;
    };
    stages.forEach((s, i) => {
      const y = i * ROW + 4;
      add("text", { x: 4, y: y + 14, class: "glabel" }, `${s.stage}. ${s.name}`);
      if (!s.started_at) return;
      const a = x(Date.parse(s.started_at)), b = Math.max(x(ends[i]), a + 3);
      const c = counts(s);
      const total = Object.values(c).reduce((p, q) => p + q, 0) || 1;
      let at = a;
      for (const k of ["completed", "failed", "cancelled", "processing", "queued"]) {
        const w = ((b - a) * c[k]) / total;
        if (w > 0) add("rect", { x: at, y, width: w, height: ROW - 6, fill: COLORS[k] }).append(
          Object.assign(document.createElementNS(ns, "title"), { textContent: `${k}: ${c[k]}` }));
        at += w;
      }
      if (total === 1 && !Object.values(c).some(Boolean)) add("rect", { x: a, y, width: b - a, height: ROW - 6, fill: "#ddd" });
    });
    add("text", { x: LABEL, y: H - 4, class: "gaxis" }, GM.time(new Date(t0).toISOString()));
    add("text", { x: W - 10, y: H - 4, class: "gaxis", "text-anchor": "end" },
      `+${GM.seconds((t1 - t0) / 1000)}`);
    box.replaceChildren(svg);
  }

  function renderStages(job, stages) {
    const body = document.querySelector("#stages tbody");
    body.replaceChildren(...stages.map((s) => {
      const c = counts(s);
      return GM.el("tr", { "data-stage": s.stage },
        GM.el("td", { text: s.stage }), GM.el("td", { text: s.name + (s.planned === false ? " (not planned)" : "") }),
        GM.el("td", { text: c.queued }), GM.el("td", { text: c.processing }), GM.el("td", { text: c.completed }),
        GM.el("td", { class: c.failed ? "err" : "", text: c.failed }), GM.el("td", { text: c.cancelled }),
        GM.el("td", { text: s.total ?? "" }),
        GM.el("td", { text: s.progress === null || s.progress === undefined ? "" : `${s.progress.toFixed(1)} %` }),
        GM.el("td", { text: GM.time(s.started_at) }), GM.el("td", { text: GM.time(s.completed_at || s.finished_at) }),
        GM.el("td", { text: s.eta || s.estimated_completion ? GM.time(s.eta || s.estimated_completion) : "" }));
    }));
    renderGantt(job, stages);
    const line = `${(job.progress ?? 0).toFixed(1)} % done` +
      (job.estimated_completion ? `, estimated completion ${GM.time(job.estimated_completion)}` : "");
    document.getElementById("progress-line").textContent = line;
  }

  /* The timeline's stages (counts aggregated in the database, first start, last finish, ETA) in the shape the
     table and the Gantt draw. */
  async function timeline(job) {
    const doc = await GM.api("GET", `/api/jobs/${jobId}/timeline`);
    const eta = (secs) => (secs ? new Date(Date.now() + secs * 1000).toISOString() : null);
    job.estimated_completion = RUNNING.includes(doc.status) ? eta(doc.eta_seconds) : null;
    return doc.stages.map((s) => ({
      ...s, ...s.counts, progress: s.progress * 100, started_at: s.first_started_at,
      completed_at: s.completed_at || (RUNNING.includes(doc.status) ? null : s.last_finished_at),
      finished_at: s.last_finished_at, eta: s.eta_seconds && RUNNING.includes(doc.status) ? eta(s.eta_seconds) : null,
    }));
  }

  let finishedAt = 0;  // when the page last saw the job finished: then it polls every 10 s instead of 1.5 s

  async function tick() {
    if (finishedAt && Date.now() - finishedAt < 10_000) return true;
    return refresh();
  }

  async function refresh() {
    const job = await GM.api("GET", `/api/jobs/${jobId}`);
    const stages = await timeline(job);
    renderFacts(job);
    renderStages(job, stages);
    document.getElementById("result").textContent = GM.json(job.result);
    const finished = !RUNNING.includes(job.status);
    finishedAt = finished ? Date.now() : 0;
    for (const [id, show] of [["cancel", !finished], ["retry-failed", finished], ["resubmit", finished]]) {
      const b = document.getElementById(id);
      if (b) b.disabled = !show;
    }
    if (finished && !mapShown) {
      mapShown = true;
      GMMap.show(document.getElementById("map"), document.getElementById("layers"), GMMap.layersOfJob(job));
    }
    await loadTasks();
    return true;  // keep polling: a retry or a resubmit may bring the job back to life
  }

  function taskRow(t) {
    const actions = [GM.el("button", { type: "button", class: "detail", onclick: () => showTask(t.task_id), text: "Details" })];
    if (GM.can("submit") && t.status === "failed") {
      actions.push(GM.el("button", { type: "button", class: "retry", onclick: () => GM.confirmed(
        `Retry task ${t.task_key}?`, () => GM.api("POST", `/api/tasks/${encodeURIComponent(t.task_id)}/retry`),
        () => { refresh(); return `task ${t.task_key} queued again`; }), text: "Retry" }));
    }
    return GM.el("tr", { "data-task-key": t.task_key, "data-status": t.status },
      GM.el("td", { text: t.stage }), GM.el("td", { text: t.task_key }), GM.el("td", { text: t.task_type }),
      GM.el("td", {}, GM.status(t.status)), GM.el("td", { text: `${t.attempt}/${t.max_attempts}` }),
      GM.el("td", { text: t.target_queue }), GM.el("td", { text: t.executed_by_app || "" }),
      GM.el("td", { text: GM.time(t.execution_started_at) }), GM.el("td", { text: GM.seconds(t.duration_seconds) }),
      GM.el("td", { class: "err", text: t.error_summary || "" }), GM.el("td", {}, ...actions));
  }

  async function loadTasks() {
    const f = GM.formValues(document.getElementById("task-filters"));
    const cursor = taskCursors[taskCursors.length - 1];
    const page = await GM.api("GET", `/api/jobs/${jobId}/tasks${GM.query({ stage: f.stage, status: f.status, limit: 50, cursor })}`);
    document.querySelector("#tasks tbody").replaceChildren(...page.items.map(taskRow));
    const next = document.getElementById("tasks-next");
    next.disabled = !page.next_cursor;
    next.dataset.next = page.next_cursor || "";
  }

  async function showTask(taskId) {
    const t = await GM.api("GET", `/api/tasks/${encodeURIComponent(taskId)}`);
    document.getElementById("task-detail").hidden = false;
    document.getElementById("task-title").textContent = t.task_key;
    const dl = document.getElementById("task-facts");
    dl.replaceChildren();
    fact(dl, "Task id", t.task_id);
    fact(dl, "Type", t.task_type);
    fact(dl, "Status", GM.status(t.status));
    fact(dl, "Attempts", `${t.attempt} of ${t.max_attempts}`);
    fact(dl, "Queue", t.target_queue);
    fact(dl, "Worker", t.executed_by_app || "");
    fact(dl, "Created", GM.time(t.created_at));
    fact(dl, "Available at", GM.time(t.available_at));
    fact(dl, "Started", GM.time(t.execution_started_at));
    fact(dl, "Finished", GM.time(t.finished_at));
    fact(dl, "Took", GM.seconds(t.duration_seconds));
    fact(dl, "Progress", t.progress === null || t.progress === undefined ? "" : `${(t.progress * 100).toFixed(0)} % ${t.progress_message || ""}`);
    fact(dl, "Correlation id", t.correlation_id || "");
    document.getElementById("task-error").textContent = GM.json(t.error);
    document.getElementById("task-params").textContent = GM.json(t.params);
    document.getElementById("task-detail").scrollIntoView();
  }

  const action = (id, call, done) => {
    const b = document.getElementById(id);
    if (b) b.addEventListener("click", () => GM.confirmed(b.dataset.confirm, call, (doc) => { refresh(); return done(doc); }));
  };
  action("cancel", () => GM.api("POST", `/api/jobs/${jobId}/cancel`), () => "job cancelled");
  action("retry-failed", () => GM.api("POST", `/api/jobs/${jobId}/retry-failed`),
    (doc) => `failed tasks queued again${doc && doc.retried !== undefined ? `: ${doc.retried}` : ""}`);
  action("resubmit", () => GM.api("POST", `/api/jobs/${jobId}/resubmit`), (doc) => {
    setTimeout(() => { location.href = `${GM.root}/ui/jobs/${doc.job_id}`; }, 800);
    return `resubmitted as ${doc.job_id.slice(0, 12)}`;
  });
  document.getElementById("task-filters").addEventListener("submit", (ev) => { ev.preventDefault(); taskCursors = [null]; loadTasks(); });
  document.getElementById("tasks-next").addEventListener("click", (ev) => { taskCursors.push(ev.target.dataset.next); loadTasks(); });
  document.getElementById("tasks-first").addEventListener("click", () => { taskCursors = [null]; loadTasks(); });
  GM.poll(tick, 1500);
})();
