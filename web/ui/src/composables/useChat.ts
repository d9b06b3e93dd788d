// A live's chat room over its WebSocket (docs/chat.md): history, messages, deletions, system
// events, viewer counts, and the studio's health samples for the owner. Signed-in users connect
// with a single-use ticket; the socket reconnects with backoff (with a fresh ticket) unless the
// server said it never will accept it (code 1008: banned, no such live).
import { onBeforeUnmount, ref, shallowRef } from 'vue'
import { api, ApiError } from '@/api/client'
import type { HealthSample, Price } from '@/api/types'
import { useAuth } from '@/stores/auth'

export interface ChatMessage {
  kind: 'message'
  id: number
  user: { id: number; username: string } | null
  text: string
  created_at: string
  tip?: Price | null // a paid tip: its amount, shown highlighted
}
export interface ChatSystem {
  kind: 'system'
  id: string
  code: string
  message: string
  seconds?: number
}
export type ChatLine = ChatMessage | ChatSystem

export interface ChatNotice {
  code: string
  message: string
  retryAfter: number | null
}

const HISTORY_LIMIT = 300
type Socket = Pick<WebSocket, 'send' | 'close' | 'readyState'> & {
  onopen: ((ev: Event) => unknown) | null
  onmessage: ((ev: MessageEvent) => unknown) | null
  onclose: ((ev: CloseEvent) => unknown) | null
}

export interface ChatOptions {
  /** For tests: how a socket is made. */
  connect?: (url: string) => Socket
  onHealth?: (sample: HealthSample) => void
}

export function chatUrl(liveId: number, ticket: string | null, location: Location = window.location): string {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
  const query = ticket ? `?ticket=${encodeURIComponent(ticket)}` : ''
  return `${scheme}://${location.host}/ws/lives/${liveId}/chat${query}`
}

export function useChat(liveId: number, options: ChatOptions = {}) {
  const auth = useAuth()
  const lines = ref<ChatLine[]>([])
  const viewerCount = ref<number | null>(null)
  const you = ref<{ id: number; username: string } | null>(null)
  const canModerate = ref(false)
  const chatEnabled = ref(true)
  const slowMode = ref(0)
  const connected = ref(false)
  const notice = ref<ChatNotice | null>(null)
  const fatal = ref<string | null>(null)
  // A sold live whose ticket this user has not bought: they read the chat but cannot post.
  const ticketRequired = ref(false)
  const socket = shallowRef<Socket | null>(null)
  let stopped = false
  let attempts = 0
  let timer: ReturnType<typeof setTimeout> | null = null
  let systemSeq = 0

  function push(line: ChatLine): void {
    lines.value.push(line)
    if (lines.value.length > HISTORY_LIMIT) lines.value.splice(0, lines.value.length - HISTORY_LIMIT)
  }

  function handle(event: Record<string, any>): void {
    switch (event.type) {
      case 'welcome':
        attempts = 0 // joined: the server accepts the socket before it checks anything
        lines.value = (event.messages ?? []).map((m: any) => ({ kind: 'message', ...m }))
        viewerCount.value = event.viewer_count
        chatEnabled.value = event.chat_enabled
        slowMode.value = event.slow_mode
        you.value = event.you
        canModerate.value = event.can_moderate
        break
      case 'message':
        if (!lines.value.some((l) => l.kind === 'message' && l.id === event.id)) {
          push({ kind: 'message', id: event.id, user: event.user, text: event.text, created_at: event.created_at, tip: event.tip ?? null })
        }
        break
      case 'message_deleted':
        lines.value = lines.value.filter((l) => !(l.kind === 'message' && l.id === event.id))
        break
      case 'viewer_count':
        viewerCount.value = event.count
        break
      case 'system':
        if (event.code === 'chat_enabled') chatEnabled.value = true
        if (event.code === 'chat_disabled') chatEnabled.value = false
        if (event.code === 'slow_mode') slowMode.value = event.seconds ?? 0
        push({ kind: 'system', id: `s${++systemSeq}`, code: event.code, message: event.message, seconds: event.seconds })
        break
      case 'error':
        notice.value = { code: event.code, message: event.message, retryAfter: event.retry_after ?? null }
        if (event.code === 'banned' || event.code === 'not_found' || event.code === 'invalid_ticket') {
          fatal.value = event.code
        }
        break
      case 'health':
        options.onHealth?.(event.sample)
        break
    }
  }

  async function open(): Promise<void> {
    if (stopped) return
    await auth.restore() // a public page renders before the session is known
    let ticket: string | null = null
    if (auth.signedIn && !ticketRequired.value) {
      try {
        ticket = (await api<{ ticket: string }>(`/api/lives/${liveId}/chat/ticket`, { method: 'POST', body: {} })).ticket
      } catch (exc) {
        if (exc instanceof ApiError && exc.code === 'payment_required') {
          // A sold live without the buyer's ticket: read as everyone does, offer the ticket.
          ticketRequired.value = true
        } else {
          // Not as an anonymous reader instead: the user would see a chat it cannot post to
          // (and a studio no health). Try again later, unless the session is gone.
          if (auth.signedIn) retry()
          else void open()
          return
        }
      }
    }
    if (stopped) return
    fatal.value = null
    const ws = (options.connect ?? ((url) => new WebSocket(url)))(chatUrl(liveId, ticket))
    socket.value = ws
    ws.onopen = () => {
      connected.value = true
    }
    ws.onmessage = (message) => {
      try {
        handle(JSON.parse(String(message.data)))
      } catch {
        // a frame we cannot read: ignore it, the next one may be fine
      }
    }
    ws.onclose = (close) => {
      connected.value = false
      if (socket.value === ws) socket.value = null
      if (stopped || (close.code === 1008 && fatal.value !== 'invalid_ticket')) return
      retry()
    }
  }

  function retry(): void {
    if (stopped) return
    attempts += 1
    // Exponential, capped, with jitter: after an outage thousands of viewers must not all
    // come back in the same second.
    const delay = Math.min(30_000, 1000 * 2 ** Math.min(attempts, 5)) * (0.5 + Math.random() / 2)
    timer = setTimeout(() => void open(), delay)
  }

  function send(event: Record<string, unknown>): boolean {
    const ws = socket.value
    if (!ws || ws.readyState !== 1) return false
    ws.send(JSON.stringify(event))
    return true
  }

  function stop(): void {
    stopped = true
    if (timer) clearTimeout(timer)
    socket.value?.close(1000)
    socket.value = null
  }

  onBeforeUnmount(stop)

  return {
    lines, viewerCount, you, canModerate, chatEnabled, slowMode, connected, notice, fatal, ticketRequired,
    open, stop, handle,
    post: (text: string) => send({ type: 'message', text }),
    remove: (messageId: number) => send({ type: 'delete', message_id: messageId }),
    mute: (userId: number, duration: number) => send({ type: 'mute', user_id: userId, duration }),
    ban: (userId: number, duration: number) => send({ type: 'ban', user_id: userId, duration }),
    setSlowMode: (seconds: number) => send({ type: 'slow_mode', seconds }),
    reconnect: () => {
      socket.value?.close(1000)
    },
  }
}

export type Chat = ReturnType<typeof useChat>
