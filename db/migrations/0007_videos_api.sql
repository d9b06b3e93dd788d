-- The public video API (GET /api/videos) names the live a recording came from: look it up by
-- video, not by scanning every broadcast's journal row.
CREATE INDEX live_recordings_video_idx ON live_recordings (video_id) WHERE video_id IS NOT NULL;
