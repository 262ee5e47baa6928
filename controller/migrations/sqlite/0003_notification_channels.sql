-- Each notification channel (webhook, Alertmanager) has its own outbox
-- rows, so one receiver being down never holds back another. A transition
-- queues one row per configured channel.
CREATE TABLE notification_channels (
    name TEXT PRIMARY KEY
);
ALTER TABLE notification_outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'webhook';
-- Rows queued before channels existed were meant for the webhook.
INSERT INTO notification_channels (name) SELECT DISTINCT 'webhook' FROM notification_outbox;
CREATE INDEX notification_outbox_due ON notification_outbox (channel, next_attempt_at_ms);
