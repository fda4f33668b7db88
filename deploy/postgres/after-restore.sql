-- Run once on a gridflow database restored from a dump, after `gridflow db upgrade` and before
-- any gridflow process starts on it (docs/OPERATIONS.md, "Backup and restore"):
--
--   psql --set=ON_ERROR_STOP=1 --single-transaction --dbname="$RESTORED" --file=after-restore.sql
--
-- Running it twice does no harm.

-- 1. Every report the restored database has not dispatched is published again.
--
-- Kafka keeps the dispatchers' consumer-group offsets, and they may be ahead of the dump: a
-- report published before the dump and consumed after it has no case in the restored database,
-- yet its offset is committed, so no dispatcher would read it again. Marked unsent, it is
-- published by the relay at the end of the topic. A copy that does arrive twice is harmless: a
-- dispatcher records every event it applies (processed_events) and never opens a second case
-- for a report that has one. Reports still unsent in the dump need nothing: the relay sends them.
UPDATE outbox
SET sent_at = NULL
WHERE topic = 'gridflow.intake'
  AND sent_at IS NOT NULL
  AND EXISTS (
    SELECT 1 FROM reports
    WHERE reports.id = outbox.payload -> 'data' ->> 'report_id'
      AND reports.case_id IS NULL
  );

-- 2. New case events get cursors above every cursor the lost database handed out.
--
-- A case event's id is the live feed's cursor. After the dump the old database went on drawing
-- ids that the restored one would hand out again, and a dashboard or a resident's stream
-- resuming from such a cursor would skip every new event up to it. One billion ids are more
-- case events than a city writes in years, let alone between a dump and its restore.
SELECT setval(
  pg_get_serial_sequence('case_events', 'id'),
  (SELECT coalesce(max(id), 0) FROM case_events) + 1000000000
);
