-- The live packager (issue #5): what a live shows about its stream, and the journal of each
-- broadcast's recording, so that a server killed mid-live still turns what it wrote into a VOD.

-- Set when a broadcast's keyframe interval exceeds the segment target (segments then follow
-- the keyframes and the streamer should set a 2 s interval); NULL when fine. Reset at each
-- broadcast start.
ALTER TABLE lives ADD COLUMN keyframe_interval_ms integer CHECK (keyframe_interval_ms > 0);
-- The poster of the current (or last) broadcast, refreshed by the thumbnailer.
ALTER TABLE lives ADD COLUMN thumbnail_url text CHECK (length(thumbnail_url) <= 1000);

-- One row per broadcast that is recorded. `prefix` is the storage key prefix of its segments
-- (hls/{live_id}/{broadcast}); `node` names the streamd process that records it, so that a
-- restarted process finalises its own unfinished recordings at once and those of a vanished
-- process once they are stale. Finished when the VOD exists (video_id) or there was nothing
-- to keep (video_id NULL).
CREATE TABLE live_recordings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    live_id         bigint NOT NULL REFERENCES lives (id) ON DELETE RESTRICT,
    node            text NOT NULL CHECK (length(node) <= 200),
    prefix          text NOT NULL UNIQUE CHECK (length(prefix) <= 500),
    -- rendition name -> {"codecs", "resolution": [w, h] | null, "frame_rate": float | null}
    renditions      jsonb NOT NULL DEFAULT '{}',
    poster_key      text CHECK (length(poster_key) <= 500),
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    video_id        bigint REFERENCES videos (id) ON DELETE SET NULL
);
CREATE INDEX live_recordings_live_idx ON live_recordings (live_id);
CREATE INDEX live_recordings_unfinished_idx ON live_recordings (node, updated_at)
    WHERE finished_at IS NULL;

-- Every segment stored, per rendition, in playlist order (a few rows a second per live).
CREATE TABLE live_recording_segments (
    recording_id        bigint NOT NULL REFERENCES live_recordings (id) ON DELETE CASCADE,
    rendition           text NOT NULL CHECK (rendition ~ '^[A-Za-z0-9_-]{1,32}$'),
    sequence            bigint NOT NULL CHECK (sequence >= 0),
    uri                 text NOT NULL CHECK (length(uri) <= 200),
    init_uri            text CHECK (length(init_uri) <= 200),
    duration            double precision NOT NULL CHECK (duration > 0),
    discontinuity       boolean NOT NULL,
    program_date_time   timestamptz NOT NULL,
    bytes               integer NOT NULL CHECK (bytes >= 0),
    PRIMARY KEY (recording_id, rendition, sequence)
);
