// Low-latency playback over WHEP: the composable's offer/answer exchange, its failures and its
// clean-up, and the watch page's "Low latency" switch.
//
// The test DOM (happy-dom, like jsdom) has no WebRTC: RTCPeerConnection and fetch are stubs
// here, which check what the code asks of them. A real browser's WebRTC stack is exercised by
// the headless-Chromium tests on the Python side (tests/browser).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { effectScope } from 'vue'
import { flushPromises, mount, RouterLinkStub } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { i18n } from '@/i18n'
import { LOW_LATENCY_KEY, lowLatencySaved, saveLowLatency, useWhep } from '@/composables/useWhep'

vi.mock('element-plus/es/components/base/style/css', () => ({}))
vi.mock('element-plus/es/components/alert/style/css', () => ({}))
vi.mock('element-plus/es/components/button/style/css', () => ({}))
vi.mock('element-plus/es/components/skeleton/style/css', () => ({}))
vi.mock('element-plus/es/components/skeleton-item/style/css', () => ({}))
vi.mock('element-plus/es/components/switch/style/css', () => ({}))
vi.mock('element-plus/es/components/tag/style/css', () => ({}))

const WHEP = 'http://host:8080/whep/5'
const OFFER = 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n'
const CANDIDATE = 'a=candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host\r\n'
const ANSWER = 'v=0\r\no=streamd 2 2 IN IP4 127.0.0.1\r\n'

/** Just enough of RTCPeerConnection for useWhep, with hooks to drive it from a test. */
class FakePeerConnection extends EventTarget {
  static all: FakePeerConnection[] = []
  /** 'instant': gathering completes right after setLocalDescription; 'never': it does not. */
  static gathering: 'instant' | 'never' = 'instant'
  transceivers: { kind: string; init: RTCRtpTransceiverInit }[] = []
  iceGatheringState: RTCIceGatheringState = 'new'
  connectionState: RTCPeerConnectionState = 'new'
  localDescription: { type: RTCSdpType; sdp: string } | null = null
  remoteDescription: RTCSessionDescriptionInit | null = null
  closed = false
  ontrack: ((event: RTCTrackEvent) => void) | null = null
  onconnectionstatechange: (() => void) | null = null

  constructor() {
    super()
    FakePeerConnection.all.push(this)
  }
  static get last(): FakePeerConnection {
    return FakePeerConnection.all[FakePeerConnection.all.length - 1]
  }
  addTransceiver(kind: string, init: RTCRtpTransceiverInit): void {
    this.transceivers.push({ kind, init })
  }
  async createOffer(): Promise<RTCSessionDescriptionInit> {
    return { type: 'offer', sdp: OFFER }
  }
  async setLocalDescription(description: RTCSessionDescriptionInit): Promise<void> {
    this.localDescription = { type: description.type!, sdp: description.sdp! }
    this.iceGatheringState = 'gathering'
    if (FakePeerConnection.gathering === 'instant') {
      setTimeout(() => {
        this.localDescription!.sdp += CANDIDATE
        this.iceGatheringState = 'complete'
        this.dispatchEvent(new Event('icegatheringstatechange'))
      }, 0)
    }
  }
  async setRemoteDescription(description: RTCSessionDescriptionInit): Promise<void> {
    this.remoteDescription = description
  }
  close(): void {
    this.closed = true
  }
  /** The network side: the connection's state changes. */
  become(state: RTCPeerConnectionState): void {
    this.connectionState = state
    this.onconnectionstatechange?.()
  }
}

type FetchCall = { url: string; init: RequestInit }

function stubFetch(answer: (url: string, init: RequestInit) => Response): FetchCall[] {
  const calls: FetchCall[] = []
  vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit = {}) => {
    calls.push({ url, init })
    return answer(url, init)
  }))
  return calls
}

function created(location = '/whep/5/sessions/abc'): Response {
  return new Response(ANSWER, { status: 201, headers: { 'Content-Type': 'application/sdp', Location: location } })
}

function jsonError(status: number, code: string, message: string): Response {
  return new Response(JSON.stringify({ error: { code, message } }), { status, headers: { 'Content-Type': 'application/json' } })
}

beforeEach(() => {
  FakePeerConnection.all = []
  FakePeerConnection.gathering = 'instant'
  vi.stubGlobal('RTCPeerConnection', FakePeerConnection)
  localStorage.clear()
  i18n.global.locale.value = 'en'
})
afterEach(() => {
  vi.unstubAllGlobals()
  vi.restoreAllMocks()
  vi.useRealTimers()
})

describe('useWhep', () => {
  it('offers receive-only video and audio with its candidates, and plays the 201 answer', async () => {
    const calls = stubFetch(() => created())
    const whep = useWhep()
    expect(await whep.start(WHEP)).toBe(true)
    const pc = FakePeerConnection.last
    expect(pc.transceivers).toEqual([
      { kind: 'video', init: { direction: 'recvonly' } },
      { kind: 'audio', init: { direction: 'recvonly' } },
    ])
    expect(calls).toHaveLength(1)
    const [post] = calls
    expect(post.url).toBe(WHEP)
    expect(post.init.method).toBe('POST')
    expect(post.init.body).toBe(OFFER + CANDIDATE) // sent once gathering completed
    expect(post.init.headers).toEqual({ 'Content-Type': 'application/sdp' })
    expect(post.init.credentials).toBe('same-origin')
    expect(pc.remoteDescription).toEqual({ type: 'answer', sdp: ANSWER })
    // The Location is resolved against the WHEP URL, not the page.
    expect(whep.resource.value).toBe('http://host:8080/whep/5/sessions/abc')
    expect(whep.state.value).toBe('connecting')

    const stream = { id: 'remote' } as MediaStream
    pc.ontrack?.({ streams: [stream], track: {} } as unknown as RTCTrackEvent)
    expect(whep.stream.value).toBe(stream)
    pc.become('connected')
    expect(whep.state.value).toBe('connected')
  })

  it('resolves a Location relative to the WHEP URL path', async () => {
    stubFetch(() => created('sessions/xyz'))
    const whep = useWhep()
    await whep.start(WHEP)
    expect(whep.resource.value).toBe('http://host:8080/whep/sessions/xyz')
  })

  it('sends the offer after at most 2 s when gathering does not complete', async () => {
    vi.useFakeTimers()
    FakePeerConnection.gathering = 'never'
    const calls = stubFetch(() => created())
    const whep = useWhep()
    const started = whep.start(WHEP)
    await vi.advanceTimersByTimeAsync(1900)
    expect(calls).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(200)
    expect(calls).toHaveLength(1)
    expect(calls[0].init.body).toBe(OFFER)
    expect(await started).toBe(true)
  })

  it.each([
    [403, 'forbidden', 'buy a ticket to watch this live'],
    [404, 'not_found', 'live 5 is not on air'],
  ])('surfaces a %i JSON error message and falls back', async (status, code, message) => {
    const calls = stubFetch(() => jsonError(status, code, message))
    const onFailed = vi.fn()
    const whep = useWhep({ onFailed })
    expect(await whep.start(WHEP)).toBe(false)
    expect(whep.state.value).toBe('failed')
    expect(whep.error.value).toBe(message)
    expect(onFailed).toHaveBeenCalledExactlyOnceWith(message)
    expect(FakePeerConnection.last.closed).toBe(true)
    expect(FakePeerConnection.last.remoteDescription).toBeNull()
    expect(calls.map((c) => c.init.method)).toEqual(['POST']) // no session to DELETE
  })

  it('fails with no message (a generic line) when the error body is not JSON or the network is down', async () => {
    stubFetch(() => new Response('<html>bad gateway</html>', { status: 502 }))
    const onFailed = vi.fn()
    const whep = useWhep({ onFailed })
    expect(await whep.start(WHEP)).toBe(false)
    expect(onFailed).toHaveBeenCalledWith(null)
    vi.stubGlobal('fetch', vi.fn(async () => { throw new TypeError('Failed to fetch') }))
    expect(await whep.start(WHEP)).toBe(false)
    expect(whep.state.value).toBe('failed')
    expect(whep.error.value).toBeNull()
  })

  it('DELETEs the session and closes the connection on stop', async () => {
    const calls = stubFetch(() => created())
    const whep = useWhep()
    await whep.start(WHEP)
    const pc = FakePeerConnection.last
    whep.stop()
    await flushPromises()
    expect(pc.closed).toBe(true)
    expect(calls[1].url).toBe('http://host:8080/whep/5/sessions/abc')
    expect(calls[1].init.method).toBe('DELETE')
    expect(whep.state.value).toBe('idle')
    expect(whep.resource.value).toBeNull()
    whep.stop() // a second stop sends nothing
    expect(calls).toHaveLength(2)
  })

  it('ignores a failing DELETE', async () => {
    stubFetch((_url, init) => {
      if (init.method === 'DELETE') throw new TypeError('Failed to fetch')
      return created()
    })
    const whep = useWhep()
    await whep.start(WHEP)
    expect(() => whep.stop()).not.toThrow()
    await flushPromises()
  })

  it('stops when its scope (the player component) goes away', async () => {
    const calls = stubFetch(() => created())
    const scope = effectScope()
    const whep = scope.run(() => useWhep())!
    await whep.start(WHEP)
    scope.stop()
    await flushPromises()
    expect(FakePeerConnection.last.closed).toBe(true)
    expect(calls.map((c) => c.init.method)).toEqual(['POST', 'DELETE'])
  })

  it('fails, and DELETEs, when the connection fails', async () => {
    const calls = stubFetch(() => created())
    const onFailed = vi.fn()
    const whep = useWhep({ onFailed })
    await whep.start(WHEP)
    FakePeerConnection.last.become('failed')
    expect(whep.state.value).toBe('failed')
    expect(onFailed).toHaveBeenCalledWith(null)
    expect(calls.map((c) => c.init.method)).toEqual(['POST', 'DELETE'])
  })

  it('fails when not connected within 10 s', async () => {
    vi.useFakeTimers()
    const calls = stubFetch(() => created())
    const onFailed = vi.fn()
    const whep = useWhep({ onFailed })
    await vi.advanceTimersByTimeAsync(0)
    const started = whep.start(WHEP)
    await vi.advanceTimersByTimeAsync(10)
    expect(await started).toBe(true)
    await vi.advanceTimersByTimeAsync(9_000)
    expect(onFailed).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1_100)
    expect(onFailed).toHaveBeenCalledWith(null)
    expect(FakePeerConnection.last.closed).toBe(true)
    expect(calls.map((c) => c.init.method)).toEqual(['POST', 'DELETE'])
  })

  it('keeps playing past 10 s once connected', async () => {
    vi.useFakeTimers()
    stubFetch(() => created())
    const onFailed = vi.fn()
    const whep = useWhep({ onFailed })
    const started = whep.start(WHEP)
    await vi.advanceTimersByTimeAsync(10)
    await started
    FakePeerConnection.last.become('connected')
    await vi.advanceTimersByTimeAsync(30_000)
    expect(onFailed).not.toHaveBeenCalled()
    expect(whep.state.value).toBe('connected')
  })

  it('ends a session the server made after the player was stopped', async () => {
    let release: (r: Response) => void = () => {}
    const calls = stubFetch(() => created())
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit = {}) => {
      calls.push({ url, init })
      if (init.method === 'POST') return new Promise<Response>((resolve) => { release = resolve })
      return new Response(null, { status: 204 })
    }))
    const whep = useWhep()
    const started = whep.start(WHEP)
    await vi.waitFor(() => expect(calls).toHaveLength(1))
    whep.stop()
    release(created())
    expect(await started).toBe(false)
    expect(FakePeerConnection.last.remoteDescription).toBeNull()
    expect(calls.map((c) => `${c.init.method} ${c.url}`)).toEqual([
      `POST ${WHEP}`, 'DELETE http://host:8080/whep/5/sessions/abc',
    ])
  })

  it('remembers the choice as streamd.lowLatency', () => {
    expect(lowLatencySaved()).toBe(false)
    saveLowLatency(true)
    expect(localStorage.getItem(LOW_LATENCY_KEY)).toBe('1')
    expect(lowLatencySaved()).toBe(true)
    saveLowLatency(false)
    expect(lowLatencySaved()).toBe(false)
  })
})

describe('the watch page with WHEP', () => {
  class FakeSocket {
    readyState = 0
    onopen = null
    onmessage = null
    onclose = null
    send(): void {}
    close(): void {}
  }

  const live = (whep: string | null) => ({
    id: 5, title: 'Concert', description: null, user_id: 1, username: 'cat', status: 'live',
    scheduled_start: null, start_time: null, end_time: null, viewer_count: 4, chat_enabled: false,
    playback_url: '/hls/5/master.m3u8', whep_url: whep, thumbnail_url: null, price: null,
    created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z',
  })

  async function watchPage(whep: string | null, answer: (init: RequestInit) => Response) {
    const asked: string[] = []
    vi.stubGlobal('WebSocket', FakeSocket)
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit = {}) => {
      asked.push(`${init.method ?? 'GET'} ${url}`)
      if (url === '/api/lives/5') return new Response(JSON.stringify(live(whep)), { status: 200, headers: { 'Content-Type': 'application/json' } })
      if (url === '/api/lives/5/heartbeat') {
        return new Response(JSON.stringify({ player_id: 'p', viewer_count: 1, interval: 15 }), { status: 200, headers: { 'Content-Type': 'application/json' } })
      }
      if (url.startsWith(WHEP)) return answer(init)
      return jsonError(404, 'not_found', url)
    }))
    const pinia = createPinia()
    setActivePinia(pinia)
    const { default: LiveWatchView } = await import('@/views/LiveWatchView.vue')
    // The HLS player stub "plays" as soon as it is shown.
    const HlsPlayer = { name: 'HlsPlayer', props: ['src'], emits: ['playing'], mounted(this: { $emit: (e: string) => void }) { this.$emit('playing') }, template: '<div data-test="player"></div>' }
    const wrapper = mount(LiveWatchView, {
      props: { id: '5' },
      global: { plugins: [pinia, i18n], stubs: { RouterLink: RouterLinkStub, HlsPlayer } },
    })
    await flushPromises()
    return { wrapper, asked }
  }
  const beats = (asked: string[]) => asked.filter((a) => a === 'POST /api/lives/5/heartbeat').length

  it('shows no switch when the server offers no WHEP', async () => {
    const { wrapper } = await watchPage(null, () => created())
    expect(wrapper.find('[data-testid=low-latency-switch]').exists()).toBe(false)
    expect(wrapper.find('[data-test=player]').exists()).toBe(true)
    wrapper.unmount()
  })

  it('plays HLS by default; the switch plays over WHEP with no heartbeat, and is remembered', async () => {
    const { wrapper, asked } = await watchPage(WHEP, () => created())
    // The switch's component (and Element Plus) loads only where WHEP is offered.
    await vi.waitFor(() => expect(wrapper.find('[data-testid=low-latency-switch]').exists()).toBe(true))
    const toggle = wrapper.get('[data-testid=low-latency-switch]')
    expect(toggle.text()).toBe('')
    expect(wrapper.get('[role=switch]').attributes('aria-checked')).toBe('false')
    expect(wrapper.get('[role=switch]').attributes('aria-label')).toBe('Low latency')
    expect(wrapper.text()).toContain('WebRTC, under a second behind; HLS otherwise')
    expect(wrapper.find('[data-test=player]').exists()).toBe(true)
    expect(beats(asked)).toBe(1)

    await toggle.trigger('click')
    await flushPromises()
    expect(localStorage.getItem(LOW_LATENCY_KEY)).toBe('1')
    expect(wrapper.get('[role=switch]').attributes('aria-checked')).toBe('true')
    expect(wrapper.find('[data-test=player]').exists()).toBe(false)
    await vi.waitFor(() => expect(wrapper.find('[data-testid=whep-video]').exists()).toBe(true))
    await vi.waitFor(() => expect(asked).toContain(`POST ${WHEP}`))
    await flushPromises()
    expect(beats(asked)).toBe(1) // the heartbeat stopped

    await wrapper.get('[data-testid=low-latency-switch]').trigger('click')
    await flushPromises()
    expect(localStorage.getItem(LOW_LATENCY_KEY)).toBe('0')
    expect(asked).toContain('DELETE http://host:8080/whep/5/sessions/abc')
    expect(FakePeerConnection.last.closed).toBe(true)
    expect(wrapper.find('[data-testid=whep-video]').exists()).toBe(false)
    expect(wrapper.find('[data-test=player]').exists()).toBe(true)
    expect(beats(asked)).toBe(2) // back on HLS: counted by heartbeats again
    wrapper.unmount()
  })

  it('starts on WHEP when it was chosen before, and DELETEs the session when left', async () => {
    saveLowLatency(true)
    const { wrapper, asked } = await watchPage(WHEP, () => created())
    await vi.waitFor(() => expect(wrapper.find('[data-testid=whep-video]').exists()).toBe(true))
    await vi.waitFor(() => expect(asked).toContain(`POST ${WHEP}`))
    await flushPromises()
    expect(beats(asked)).toBe(0)
    wrapper.unmount()
    expect(asked).toContain('DELETE http://host:8080/whep/5/sessions/abc')
  })

  it('falls back to HLS with the server message when WHEP is refused', async () => {
    saveLowLatency(true)
    const { wrapper } = await watchPage(WHEP, () => jsonError(403, 'forbidden', 'no WebRTC seat left'))
    await vi.waitFor(() => expect(wrapper.find('[data-testid=whep-error]').exists()).toBe(true))
    const alert = wrapper.get('[data-testid=whep-error]')
    expect(alert.text()).toContain('Low latency playback failed')
    expect(alert.text()).toContain('no WebRTC seat left')
    expect(wrapper.get('[role=switch]').attributes('aria-checked')).toBe('false')
    expect(localStorage.getItem(LOW_LATENCY_KEY)).toBe('0')
    expect(wrapper.find('[data-testid=whep-video]').exists()).toBe(false)
    expect(wrapper.find('[data-test=player]').exists()).toBe(true)
    wrapper.unmount()
  })
})
