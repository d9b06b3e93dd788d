import { describe, expect, it } from 'vitest'
import { createApp, h } from 'vue'
import { createPinia, setActivePinia } from 'pinia'
import { chatUrl, useChat } from '@/composables/useChat'
import type { HealthSample } from '@/api/types'

function withChat<T>(fn: (chat: ReturnType<typeof useChat>) => T, onHealth?: (s: HealthSample) => void): T {
  const pinia = createPinia()
  setActivePinia(pinia)
  let result!: T
  const app = createApp({ setup() { result = fn(useChat(7, { onHealth })); return () => h('div') } })
  app.use(pinia).mount(document.createElement('div'))
  app.unmount()
  return result
}

const message = (id: number, text: string) => ({ type: 'message', id, user: { id: 1, username: 'ann' }, text, created_at: '2026-01-01T00:00:00Z' })

describe('useChat event handling', () => {
  it('welcome, messages (deduplicated), deletions, counts, system and errors', () => {
    withChat((chat) => {
      chat.handle({ type: 'welcome', messages: [message(1, 'hi')], viewer_count: 3, chat_enabled: true, slow_mode: 0, you: { id: 9, username: 'me' }, can_moderate: true })
      expect(chat.lines.value).toHaveLength(1)
      expect(chat.canModerate.value).toBe(true)
      chat.handle(message(2, '<b>x</b>'))
      chat.handle(message(2, '<b>x</b>'))
      expect(chat.lines.value.map((l) => l.id)).toEqual([1, 2])
      chat.handle({ type: 'message_deleted', id: 1 })
      expect(chat.lines.value.map((l) => l.id)).toEqual([2])
      chat.handle({ type: 'viewer_count', count: 12 })
      expect(chat.viewerCount.value).toBe(12)
      chat.handle({ type: 'system', code: 'slow_mode', message: 'one message every 10 s', seconds: 10 })
      expect(chat.slowMode.value).toBe(10)
      chat.handle({ type: 'system', code: 'chat_disabled', message: 'chat is off' })
      expect(chat.chatEnabled.value).toBe(false)
      chat.handle({ type: 'error', code: 'rate_limited', message: 'too fast', retry_after: 4 })
      expect(chat.notice.value).toEqual({ code: 'rate_limited', message: 'too fast', retryAfter: 4 })
      expect(chat.fatal.value).toBeNull()
      chat.handle({ type: 'error', code: 'banned', message: 'banned' })
      expect(chat.fatal.value).toBe('banned')
    })
  })

  it('hands health samples to the studio', () => {
    const seen: HealthSample[] = []
    withChat((chat) => chat.handle({ type: 'health', sample: { at: 'x', bitrate_kbps: 1 } }), (s) => seen.push(s))
    expect(seen).toEqual([{ at: 'x', bitrate_kbps: 1 }])
  })

  it('builds ws and wss URLs, the ticket escaped', () => {
    expect(chatUrl(5, null, { protocol: 'http:', host: 'h:8080' } as Location)).toBe('ws://h:8080/ws/lives/5/chat')
    expect(chatUrl(5, 'a+b/c', { protocol: 'https:', host: 'h' } as Location)).toBe('wss://h/ws/lives/5/chat?ticket=a%2Bb%2Fc')
  })
})
