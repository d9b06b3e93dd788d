-- Stream health (issue #16): what the streamer's studio page graphs over the last 10 minutes.
-- The packager process of a live writes a sample every STREAMD_HEALTH_INTERVAL seconds (and
-- NOTIFYs it on `live_health`); any API process reads them. `sample` is the JSON of
-- packager/health.py plus the live's viewer count at that time. Each insert deletes its live's
-- samples older than 10 minutes; the web housekeeping sweeps those of lives no longer on air.
CREATE TABLE live_health_samples (
    live_id     bigint NOT NULL REFERENCES lives (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    sample      jsonb NOT NULL CHECK (octet_length(sample::text) <= 8000),
    PRIMARY KEY (live_id, at)
);
CREATE INDEX live_health_samples_at_idx ON live_health_samples (at);
