-- Work per task queue, for autoscalers that read the database (KEDA's postgresql scaler when there is no RabbitMQ,
-- or beside it: RabbitMQ's queue length does not count tasks already claimed, since a message is acknowledged once
-- its claim commits). One row per physical queue (target_queue) that has queued or running tasks:
--   queued  = tasks waiting (status queued), ready now or in a retry's backoff
--   ready   = queued tasks available now (available_at has passed)
--   running = tasks claimed by a worker (status processing)
--   active  = queued + running: what a worker role needs processes for; 0 means it may scale to zero
CREATE VIEW geomill_queue_depth AS
SELECT target_queue AS queue,
       count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'queued' AND available_at <= now()) AS ready,
       count(*) FILTER (WHERE status = 'processing') AS running,
       count(*) AS active
FROM tasks
WHERE status IN ('queued', 'processing')
GROUP BY target_queue;
