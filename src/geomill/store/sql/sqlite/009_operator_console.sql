-- The operator console's reads (issue 21), each an index scan:
-- jobs newest first, filtered by status and/or job type, in keyset pages on (created_at, job_id);
DROP INDEX IF EXISTS jobs_created;
DROP INDEX IF EXISTS jobs_status;
CREATE INDEX jobs_created_id ON jobs (created_at, job_id);
CREATE INDEX jobs_status_created_id ON jobs (status, created_at, job_id);
CREATE INDEX jobs_type_created_id ON jobs (job_type, created_at, job_id);
CREATE INDEX jobs_status_type_created_id ON jobs (status, job_type, created_at, job_id);
-- a job's failed tasks in key order (the error filter, retry-failed, rerun, a status document's failed tasks):
-- only failed rows are in it;
CREATE INDEX tasks_failed ON tasks (job_id, stage, task_key) WHERE status = 'failed';
-- a stage's first start and last finish (the timeline): min/max read off the index, not the 100,000 rows.
CREATE INDEX tasks_stage_started ON tasks (job_id, stage, execution_started_at);
CREATE INDEX tasks_stage_finished ON tasks (job_id, stage, finished_at);
