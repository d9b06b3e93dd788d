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
  /** WebRTC playback (WHEP): absolute, such as http://host:8080/whep/5; null unless the live is
   * on air and the server offers it. */
  whep_url: string | null
  thumbnail_url: string | null
  price: Price | null // the ticket price; null when free
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
  price: Price | null // set when the video is sold
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

// --- payments ---

export type Currency = 'USD' | 'TWD'

/** A price as the API shows it: `amount` in ISO 4217 minor units (USD 499 = US$4.99). */
export interface Price {
  amount: number
  currency: Currency
  display: string // "US$4.99", "NT$150"
}

/** A price as the API takes it (lives, videos); null makes the item free. */
export interface PriceIn {
  amount: number
  currency: Currency
}

export type ProviderName = 'sandbox' | 'stripe' | 'ecpay'
export type ItemType = 'live_ticket' | 'video' | 'tip'
export type OrderStatus =
  | 'created' | 'pending' | 'paid' | 'partially_refunded' | 'refunded' | 'failed' | 'canceled' | 'expired'

export interface CurrencyInfo {
  code: Currency
  minor_units: number // decimal places of the minor unit
  whole_units_only: boolean // amounts must be whole major units (TWD)
  tip_minimum: number // minor units
}

/** GET /api/payments/config */
export interface PaymentsConfig {
  providers: { name: ProviderName; currencies: Currency[] }[]
  currencies: CurrencyInfo[]
  fee_bps: number
  refund_window_seconds: number
  order_ttl_seconds: number
}

/** Where to send the buyer: GET a page, or POST a form to it (ECPay). */
export interface Checkout {
  url: string
  method: 'GET' | 'POST'
  form: Record<string, string> | null
}

export interface OrderItemIn {
  type: ItemType
  live_id?: number
  video_id?: number
}

/** POST /api/orders */
export interface OrderCreateIn {
  item: OrderItemIn
  currency: Currency
  provider: ProviderName
  amount?: number // tips only
  message?: string // tips only
}

export interface Order {
  id: number
  reference: string
  status: OrderStatus
  item_type: ItemType
  live_id: number | null
  video_id: number | null
  description: string
  tip_message: string | null
  amount: number
  currency: Currency
  amount_display: string
  provider: ProviderName
  captured_amount: number
  refunded_amount: number
  user_id: number // the buyer
  creator_id: number // the seller
  review_reason: string | null
  checkout: Checkout | null // the buyer's checkout while it is open
  expires_at: string
  paid_at: string | null
  created_at: string
  updated_at: string
}

export interface OrderEvent {
  kind: string
  from_status: OrderStatus | null
  to_status: OrderStatus | null
  actor: string
  detail: Record<string, unknown>
  created_at: string
}

export interface Refund {
  id: number
  amount: number
  currency: Currency
  status: 'pending' | 'succeeded' | 'failed' | 'unknown'
  reason: string | null
  message: string | null
  created_at: string
}

/** GET /api/orders/{id} */
export interface OrderDetail extends Order {
  buyer: string | null
  events: OrderEvent[]
  refunds: Refund[]
  refundable: number
  can_refund: boolean
  refund_deadline: string | null
}

export interface OrderCreated {
  order: Order
  checkout: Checkout | null
}

export interface EarningsRow {
  currency: Currency
  gross: number
  refunded: number
  platform_fees: number
  net: number
  sales: number
}

/** GET /api/payments/earnings */
export interface Earnings {
  fee_bps: number
  items: EarningsRow[]
}

/** POST /api/lives/{id}/playback, /api/videos/{id}/playback */
export interface PlaybackGrant {
  private: boolean
  expires_at: string | null
  price: Price | null
}
