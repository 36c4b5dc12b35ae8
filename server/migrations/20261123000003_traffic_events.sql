-- Network-traffic events that peers report (ReportTraffic), one row per
-- event. The columns the REST filters narrow by in SQL are their own; the
-- rest of the event is JSON.
CREATE TABLE traffic_events (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    reporter_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX traffic_events_time ON traffic_events (account_id, timestamp_ms);
