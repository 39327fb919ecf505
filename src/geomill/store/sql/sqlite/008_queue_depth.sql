-- Work per task queue (see the PostgreSQL migration 008): queued, ready now, running, active = queued + running.
-- Embedded deployments do not autoscale; the view is here so both dialects answer the same question.
CREATE VIEW geomill_queue_depth AS
SELECT target_queue AS queue,
       sum(status = 'queued') AS queued,
       sum(status = 'queued' AND available_at <= (julianday('now') - 2440587.5) * 86400.0) AS ready,
       sum(status = 'processing') AS running,
       count(*) AS active
FROM tasks
WHERE status IN ('queued', 'processing')
GROUP BY target_queue;
