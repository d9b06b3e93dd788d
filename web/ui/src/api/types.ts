// Shapes of the streamd API's JSON (see /openapi.json).

export type Role = 'viewer' | 'creator' | 'admin'
export type LiveStatus = 'offline' | 'live' | 'scheduled' | 'ended'

export interface User {
  id: number
  username: string
  email: string
  email_verified: boolean
  role: Role
  bio: string | null
  avatar_url: string | null
  is_active: boolean
  created_at: string
}

export interface TokenResponse {
  access_token: string
  refresh_token: string | null
  token_type: 'bearer'
  expires_in: number
  user: User
}

export interface Live {
  id: number
  title: string
  description: string | null
  user_id: number
  username: string
  status: LiveStatus
  scheduled_start: string | null
  start_time: string | null
  end_time: string | null
  viewer_count: number
  chat_enabled: boolean
  playback_url: string
  thumbnail_url: string | null
  created_at: string
  updated_at: string
}

export type VideoStatus = 'uploading' | 'uploaded' | 'processing' | 'ready' | 'failed'
export type Visibility = 'public' | 'unlisted' | 'private'

export interface Quality {
  name: string
  width: number
  height: number
  bitrate: number
}

/** An uploaded video or a live's recording (VideoOut). */
export interface Video {
  id: number
  title: string
  description: string | null
  user_id: number
  username: string
  live_id: number | null
  thumbnail_url: string | null
  playback_url: string | null // null until ready
  duration: number | null
  created_at: string
  status: VideoStatus
  visibility: Visibility
  processing_progress: number // 0-100
  processing_stage: string | null
  eta_seconds: number | null
  error_message: string | null
  views: number
  likes: number
  liked: boolean | null
  file_size: number
  storyboard_url: string | null // WebVTT thumbnails track
  qualities: Quality[]
  can_edit: boolean
}

/** A resumable upload (UploadOut): parts go straight to their signed URLs. */
export interface Upload {
  upload_id: string
  video_id: number
  filename: string
  size: number
  part_size: number
  part_count: number
  parts: { number: number; url: string }[]
  received: { number: number; size: number }[]
  expires_at: string
  status: 'uploading' | 'completed' | 'aborted'
}

/** One event of GET /api/videos/{id}/events. */
export interface VideoProgress {
  status: VideoStatus
  percent: number
  stage: string | null
  eta_seconds: number | null
  error_message: string | null
}

export interface Page<T> {
  items: T[]
  next_cursor: string | null
}

export interface Ingest {
  server: string
  stream_key: string
  rtmps_server: string | null
  whip_url: string | null
}

export interface HealthSample {
  at: string
  bitrate_kbps: number
  video_kbps?: number
  audio_kbps?: number
  fps: number
  keyframe_interval_s: number | null
  audio: boolean
  video_codec?: string | null
  width?: number | null
  height?: number | null
  rungs?: string[]
  rungs_shed: string[]
  viewer_count: number
}

export interface Health {
  live_id: number
  status: LiveStatus
  viewer_count: number
  interval: number
  samples: HealthSample[]
}

export interface Profile {
  id: number
  username: string
  role: Role
  bio: string | null
  avatar_url: string | null
  created_at: string
}
