-- Broker dispatch (RabbitMQ): the outbox. A queued task or pending event with published_at NULL has not been sent
-- to the broker yet; a claim clears it again, so whatever returns to the queue (retry, reclaimed lease, release)
-- is sent again. The database stays the source of truth: a message is only a wake-up naming an id.
ALTER TABLE tasks ADD COLUMN published_at timestamptz;
ALTER TABLE events ADD COLUMN published_at timestamptz;
CREATE INDEX tasks_unpublished ON tasks (available_at) WHERE status = 'queued' AND published_at IS NULL;
CREATE INDEX events_unpublished ON events (event_id) WHERE published_at IS NULL;
