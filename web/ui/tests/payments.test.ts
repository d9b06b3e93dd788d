// Payments in the web app: money conversions, the checkout redirect, the order's idempotency
// key, following an open order, the paywall, and tips in the chat.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { defineComponent, h, reactive } from 'vue'
import { flushPromises, mount, RouterLinkStub } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { api, ApiError, setSession } from '@/api/client'
import { fieldErrors } from '@/api/errors'
import type { OrderCreated, OrderCreateIn, OrderStatus, User } from '@/api/types'
import { i18n } from '@/i18n'
import { goToCheckout, newIdempotencyKey, orderPlacer } from '@/composables/checkout'
import { amountProblem, formatMoney, fromMinor, priceBody, priceDraft, toMinor } from '@/composables/money'
import { isOpen, parseItemQuery, pollOrder } from '@/composables/orders'
import { askPlayback, renewDelay } from '@/composables/playback'
import { useChat } from '@/composables/useChat'
import { useAuth } from '@/stores/auth'
import ChatPanel from '@/components/ChatPanel.vue'
import PaywallPanel from '@/components/PaywallPanel.vue'

// Element Plus's style modules import .css files, which Node cannot load outside a browser
// build: the pages' tests do without their styles.
vi.mock('element-plus/es/components/base/style/css', () => ({}))
vi.mock('element-plus/es/components/alert/style/css', () => ({}))
vi.mock('element-plus/es/components/button/style/css', () => ({}))
vi.mock('element-plus/es/components/form/style/css', () => ({}))
vi.mock('element-plus/es/components/form-item/style/css', () => ({}))
vi.mock('element-plus/es/components/input/style/css', () => ({}))
vi.mock('element-plus/es/components/radio/style/css', () => ({}))
vi.mock('element-plus/es/components/radio-group/style/css', () => ({}))
vi.mock('element-plus/es/components/result/style/css', () => ({}))
vi.mock('element-plus/es/components/switch/style/css', () => ({}))
vi.mock('element-plus/es/components/tag/style/css', () => ({}))
vi.mock('element-plus/es/components/timeline/style/css', () => ({}))
vi.mock('element-plus/es/components/timeline-item/style/css', () => ({}))

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

function order(id: number, status: OrderStatus = 'created') {
  return {
    id, reference: `SD-${id}`, status, item_type: 'live_ticket', live_id: 3, video_id: null,
    description: 'Ticket', tip_message: null, amount: 499, currency: 'USD', amount_display: 'US$4.99',
    provider: 'sandbox', captured_amount: 0, refunded_amount: 0, user_id: 2, creator_id: 1,
    review_reason: null, checkout: null, expires_at: '2026-01-01T01:00:00Z', paid_at: null,
    created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z',
  } as const
}

beforeEach(() => {
  i18n.global.locale.value = 'en'
})
afterEach(() => {
  vi.unstubAllGlobals()
  vi.restoreAllMocks()
  vi.useRealTimers()
  setSession(null)
})

describe('money', () => {
  it('turns major units into minor units without float errors', () => {
    expect(toMinor('4.99', 'USD')).toBe(499)
    expect(toMinor('150', 'TWD')).toBe(15000)
    expect(toMinor(4.35, 'USD')).toBe(435) // 4.35 * 100 is 434.99999999999994
    expect(toMinor(' 19.9 ', 'USD')).toBe(1990)
    expect(toMinor('.5', 'USD')).toBe(50)
    expect(toMinor('7.', 'USD')).toBe(700)
    expect(toMinor('0', 'USD')).toBe(0)
  })

  it('refuses what is not a plain amount', () => {
    for (const bad of ['', '.', '4.999', '-1', '+1', '1e3', '1,000', 'abc', '4.9.9', ' ']) {
      expect(toMinor(bad, 'USD'), bad).toBeNaN()
    }
    expect(toMinor(Number.NaN, 'USD')).toBeNaN()
    expect(toMinor(0.1 + 0.2, 'USD')).toBeNaN() // 0.30000000000000004: more decimals than cents
  })

  it('turns minor units back into an input value and a display', () => {
    expect(fromMinor(499, 'USD')).toBe('4.99')
    expect(fromMinor(5, 'USD')).toBe('0.05')
    expect(fromMinor(500, 'USD')).toBe('5.00')
    expect(fromMinor(15000, 'TWD')).toBe('150')
    expect(fromMinor(15050, 'TWD')).toBe('150.50')
    expect(formatMoney(499, 'USD')).toBe('US$4.99')
    expect(formatMoney(15000, 'TWD')).toBe('NT$150')
    for (const [minor, currency] of [[1, 'USD'], [99_999_999, 'USD'], [123_400, 'TWD'], [10, 'USD']] as const) {
      expect(toMinor(fromMinor(minor, currency), currency)).toBe(minor)
    }
  })

  it('says why an amount cannot be charged', () => {
    expect(amountProblem(499, 'USD')).toBeNull()
    expect(amountProblem(Number.NaN, 'USD')?.key).toBe('invalid')
    expect(amountProblem(0, 'USD')?.key).toBe('positive')
    expect(amountProblem(15050, 'TWD')?.key).toBe('whole_units')
    expect(amountProblem(15000, 'TWD')).toBeNull()
    expect(amountProblem(50, 'USD', { minimum: 100 })).toEqual({ key: 'minimum', params: { amount: 'US$1.00' } })
    expect(amountProblem(100_000_000, 'USD')?.key).toBe('maximum')
  })

  it('builds the price a form sends: null when the switch is off', () => {
    expect(priceBody(priceDraft(null))).toBeNull()
    const draft = priceDraft({ amount: 15000, currency: 'TWD', display: 'NT$150' })
    expect(draft).toEqual({ enabled: true, amount: '150', currency: 'TWD' })
    draft.amount = '200'
    expect(priceBody(draft)).toEqual({ amount: 20000, currency: 'TWD' })
  })
})

describe('the buy link', () => {
  it('reads the item from the query', () => {
    expect(parseItemQuery({ type: 'live_ticket', live_id: '3' })).toEqual({ type: 'live_ticket', id: 3 })
    expect(parseItemQuery({ type: 'video', video_id: ['9', '10'] })).toEqual({ type: 'video', id: 9 })
    expect(parseItemQuery({ type: 'tip', live_id: '3' })).toEqual({ type: 'tip', id: 3 })
    expect(parseItemQuery({ type: 'video', live_id: '3' })).toBeNull()
    expect(parseItemQuery({ type: 'gift', live_id: '3' })).toBeNull()
    expect(parseItemQuery({ type: 'tip', live_id: '0' })).toBeNull()
    expect(parseItemQuery({ type: 'tip', live_id: '3x' })).toBeNull()
  })
})

describe('goToCheckout', () => {
  it('sends the browser to a GET checkout', () => {
    const assign = vi.fn()
    goToCheckout({ url: 'https://checkout.example/pay/cs_1', method: 'GET', form: null }, { assign })
    expect(assign).toHaveBeenCalledWith('https://checkout.example/pay/cs_1')
  })

  it('posts a hidden form to a POST checkout (ECPay)', () => {
    const sent: HTMLFormElement[] = []
    vi.spyOn(HTMLFormElement.prototype, 'submit').mockImplementation(function (this: HTMLFormElement) {
      sent.push(this)
    })
    const assign = vi.fn()
    goToCheckout({
      url: 'https://payment-stage.ecpay.com.tw/Cashier/AioCheckOut/V5', method: 'POST',
      form: { MerchantID: '3002607', CheckMacValue: 'A1B2', ItemName: 'Ticket <b>&</b>' },
    }, { assign })
    expect(assign).not.toHaveBeenCalled()
    expect(sent).toHaveLength(1)
    const form = sent[0]
    expect(form.method.toLowerCase()).toBe('post')
    expect(form.action).toBe('https://payment-stage.ecpay.com.tw/Cashier/AioCheckOut/V5')
    expect(form.isConnected).toBe(true)
    const fields = Object.fromEntries([...form.querySelectorAll('input')].map((i) => [i.name, [i.type, i.value]]))
    expect(fields).toEqual({
      MerchantID: ['hidden', '3002607'], CheckMacValue: ['hidden', 'A1B2'], ItemName: ['hidden', 'Ticket <b>&</b>'],
    })
    form.remove()
  })

  it('never follows a javascript: URL', () => {
    const assign = vi.fn()
    expect(() => goToCheckout({ url: 'javascript:alert(1)', method: 'GET', form: null }, { assign })).toThrow()
    expect(assign).not.toHaveBeenCalled()
  })
})

describe('the order idempotency key', () => {
  const body: OrderCreateIn = { item: { type: 'live_ticket', live_id: 3 }, currency: 'USD', provider: 'sandbox' }
  const created: OrderCreated = { order: order(41) as unknown as OrderCreated['order'], checkout: { url: 'https://x/pay', method: 'GET', form: null } }

  it('is a v4 UUID', () => {
    expect(newIdempotencyKey()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  })

  it('a double click sends one request and both clicks get the same order', async () => {
    let release!: (value: OrderCreated) => void
    const post = vi.fn(() => new Promise<OrderCreated>((resolve) => (release = resolve)))
    const placer = orderPlacer(post, () => 'key-1')
    const first = placer.place(body)
    const second = placer.place({ ...body })
    release(created)
    expect(await first).toBe(created)
    expect(await second).toBe(created)
    expect(post).toHaveBeenCalledTimes(1)
  })

  it('a retry after a network error sends the same key (over the real client)', async () => {
    setSession('tok', 900)
    const sent: { key: string; body: string }[] = []
    let calls = 0
    vi.stubGlobal('fetch', vi.fn(async (_url: string, init: RequestInit) => {
      sent.push({ key: (init.headers as Record<string, string>)['Idempotency-Key'], body: String(init.body) })
      calls += 1
      if (calls === 1) throw new TypeError('Failed to fetch')
      return json(calls === 2 ? 201 : 200, created)
    }))
    const placer = orderPlacer()
    await expect(placer.place(body)).rejects.toBeInstanceOf(TypeError)
    expect(await placer.place(body)).toEqual(created)
    expect(await placer.place(body)).toEqual(created) // clicked again after the answer: replayed
    expect(sent).toHaveLength(3)
    expect(new Set(sent.map((s) => s.key)).size).toBe(1)
    expect(sent[0].key).toMatch(/^[0-9a-f-]{36}$/)
    expect(JSON.parse(sent[0].body)).toEqual(body)
  })

  it('another body (a changed tip) gets another key, and so does a conflict', async () => {
    const keys: string[] = []
    let n = 0
    const post = vi.fn(async (_b: OrderCreateIn, key: string) => {
      keys.push(key)
      if (keys.length === 3) throw new ApiError(422, 'idempotency_conflict', 'used with another body')
      return created
    })
    const placer = orderPlacer(post, () => `key-${++n}`)
    const tip = (amount: number): OrderCreateIn => ({ item: { type: 'tip', live_id: 3 }, currency: 'USD', provider: 'sandbox', amount })
    await placer.place(tip(500))
    await placer.place(tip(500))
    await expect(placer.place(tip(700))).rejects.toThrow('used with another body')
    await placer.place(tip(700))
    expect(keys).toEqual(['key-1', 'key-1', 'key-2', 'key-3'])
  })
})

describe('pollOrder', () => {
  it('asks every 2 s while the order is open and stops at a final status', async () => {
    vi.useFakeTimers()
    const answers: OrderStatus[] = ['pending', 'pending', 'paid', 'paid']
    const fetchOrder = vi.fn(async () => ({ status: answers[fetchOrder.mock.calls.length - 1] }))
    const seen: OrderStatus[] = []
    const poller = pollOrder(fetchOrder, (o) => seen.push(o.status))
    expect(fetchOrder).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(2000)
    expect(seen).toEqual(['pending'])
    await vi.advanceTimersByTimeAsync(4000)
    expect(seen).toEqual(['pending', 'pending', 'paid'])
    expect(poller.active()).toBe(false)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(fetchOrder).toHaveBeenCalledTimes(3)
    expect(isOpen('paid')).toBe(false)
  })

  it('keeps asking after a failed ask, stops on stop() (leaving the page)', async () => {
    vi.useFakeTimers()
    let n = 0
    const fetchOrder = vi.fn(async () => {
      n += 1
      if (n === 1) throw new TypeError('offline')
      return { status: 'pending' as OrderStatus }
    })
    const poller = pollOrder(fetchOrder, () => {})
    await vi.advanceTimersByTimeAsync(6000)
    expect(fetchOrder).toHaveBeenCalledTimes(3)
    poller.stop()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(fetchOrder).toHaveBeenCalledTimes(3)
  })

  it('gives up after about two minutes and says so', async () => {
    vi.useFakeTimers()
    const fetchOrder = vi.fn(async () => ({ status: 'pending' as OrderStatus }))
    const timedOut = vi.fn()
    pollOrder(fetchOrder, () => {}, { interval: 2000, limit: 120_000 }, timedOut)
    await vi.advanceTimersByTimeAsync(119_000)
    expect(timedOut).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(10_000)
    expect(timedOut).toHaveBeenCalledTimes(1)
    const asked = fetchOrder.mock.calls.length
    expect(asked).toBeGreaterThanOrEqual(59)
    expect(asked).toBeLessThanOrEqual(60)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(fetchOrder).toHaveBeenCalledTimes(asked)
  })
})

describe('paid playback', () => {
  const price = { amount: 499, currency: 'USD', display: 'US$4.99' } as const

  it('opens on 200, locks on 402 with the price the server sent', async () => {
    setSession('tok', 900)
    const urls: string[] = []
    let answer = json(200, { private: true, expires_at: null, price })
    vi.stubGlobal('fetch', vi.fn(async (url: string) => {
      urls.push(url)
      return answer
    }))
    expect((await askPlayback('lives', 3, price, true)).gate).toEqual({ state: 'open' })
    answer = json(402, { error: { code: 'payment_required', message: 'buy it', details: { price: { amount: 15000, currency: 'TWD', display: 'NT$150' } } } })
    expect((await askPlayback('videos', 9, price, true)).gate).toEqual({ state: 'locked', price: { amount: 15000, currency: 'TWD', display: 'NT$150' } })
    expect(urls).toEqual(['/api/lives/3/playback', '/api/videos/9/playback'])
  })

  it('asks a signed-out viewer to sign in, without asking the server', async () => {
    const fetch = vi.fn()
    vi.stubGlobal('fetch', fetch)
    expect((await askPlayback('lives', 3, price, false)).gate).toEqual({ state: 'sign_in', price })
    expect(fetch).not.toHaveBeenCalled()
  })

  it('keeps a 402 price out of the form field errors', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => json(402, { error: { code: 'payment_required', message: 'buy', details: { price } } })))
    const error = (await api('/api/lives/3/playback', { method: 'POST' }).catch((e: unknown) => e)) as ApiError
    expect(error.details).toEqual([])
    expect(error.info).toEqual({ price })
    expect(fieldErrors(error)).toEqual({})
  })

  it('renews the cookie before it expires', () => {
    const now = Date.parse('2026-01-01T00:00:00Z')
    expect(renewDelay('2026-01-01T00:10:00Z', now)).toBe(480_000)
    expect(renewDelay('2026-01-01T00:00:01Z', now)).toBe(10_000)
    expect(renewDelay(null, now)).toBeNull()
  })

  it('the paywall shows the price and links to the buy page', () => {
    const global = { plugins: [i18n], stubs: { RouterLink: RouterLinkStub } }
    const live = mount(PaywallPanel, { global, props: { kind: 'live', id: 3, price } })
    const buy = live.get('[data-test=buy-button]')
    expect(live.get('[data-test=paywall]').text()).toContain('US$4.99')
    expect(buy.text()).toBe('Buy ticket — US$4.99')
    expect(live.getComponent(RouterLinkStub).props('to')).toEqual({ path: '/payments/create', query: { type: 'live_ticket', live_id: '3' } })
    const video = mount(PaywallPanel, { global, props: { kind: 'video', id: 9, price: null } })
    expect(video.get('[data-test=buy-button]').text()).toBe('Buy video')
    expect(video.getComponent(RouterLinkStub).props('to')).toEqual({ path: '/payments/create', query: { type: 'video', video_id: '9' } })
    const signedOut = mount(PaywallPanel, { global, props: { kind: 'video', id: 9, price, signIn: true } })
    expect(signedOut.find('[data-test=buy-button]').exists()).toBe(false)
    expect(signedOut.getComponent(RouterLinkStub).props('to')).toEqual({ name: 'login', query: { next: '/videos/9' } })
  })
})

describe('tips in the chat', () => {
  const user = (id: number): User => ({
    id, username: `u${id}`, email: `u${id}.example`, email_verified: true, role: 'viewer', bio: null,
    avatar_url: null, is_active: true, created_at: '2026-01-01T00:00:00Z',
  })

  function mountChat(me: User | null, ownerId = 1) {
    const pinia = createPinia()
    setActivePinia(pinia)
    useAuth().user = me
    let chat!: ReturnType<typeof useChat>
    const Host = defineComponent({
      setup() {
        chat = useChat(7)
        return () => h(ChatPanel, { chat, liveId: 7, ownerId })
      },
    })
    const wrapper = mount(Host, { global: { plugins: [pinia, i18n], stubs: { RouterLink: RouterLinkStub } } })
    return { wrapper, chat }
  }

  it('renders a tip highlighted, with its amount and message', async () => {
    const { wrapper, chat } = mountChat(null)
    chat.handle({ type: 'message', id: 1, user: { id: 5, username: 'ann' }, text: 'hello', created_at: '2026-01-01T00:00:00Z' })
    chat.handle({
      type: 'message', id: 2, user: { id: 6, username: 'bob' }, text: 'Great show <3', created_at: '2026-01-01T00:00:01Z',
      tip: { amount: 500, currency: 'USD', display: 'US$5.00' },
    })
    chat.handle({
      type: 'message', id: 3, user: { id: 6, username: 'bob' }, text: '', created_at: '2026-01-01T00:00:02Z',
      tip: { amount: 15000, currency: 'TWD', display: 'NT$150' },
    })
    await flushPromises()
    const tips = wrapper.findAll('[data-test=chat-tip]')
    expect(tips).toHaveLength(2)
    expect(tips[0].classes()).toContain('tip')
    expect(tips[0].get('.tip-amount').text()).toBe('US$5.00')
    expect(tips[0].get('.text').text()).toBe('Great show <3')
    expect(tips[0].text()).toContain('bob tipped US$5.00')
    expect(tips[1].get('.tip-amount').text()).toBe('NT$150')
    expect(tips[1].find('.text').exists()).toBe(false)
    const plain = wrapper.get('[data-message-id="1"]')
    expect(plain.classes()).not.toContain('tip')
    expect(plain.attributes('data-test')).toBeUndefined()
  })

  it('offers a Tip button to signed-in viewers, not to the streamer', () => {
    const viewer = mountChat(user(2)).wrapper
    const tip = viewer.get('[data-test=tip-button]')
    expect(tip.text()).toContain('Tip')
    const link = viewer.findAllComponents(RouterLinkStub).find((l) => l.attributes('data-test') === 'tip-button')
    expect(link?.props('to')).toEqual({ path: '/payments/create', query: { type: 'tip', live_id: '7' } })
    expect(mountChat(user(1)).wrapper.find('[data-test=tip-button]').exists()).toBe(false)
    expect(mountChat(null).wrapper.find('[data-test=tip-button]').exists()).toBe(false)
  })

  it('offers a ticket instead of the input when the chat ticket needs one (402)', async () => {
    setSession('tok', 900)
    vi.stubGlobal('fetch', vi.fn(async () => json(402, { error: { code: 'payment_required', message: 'buy a ticket', details: {} } })))
    const sockets: string[] = []
    const pinia = createPinia()
    setActivePinia(pinia)
    const auth = useAuth()
    auth.user = user(2)
    auth.restored = true
    vi.spyOn(auth, 'restore').mockResolvedValue()
    let chat!: ReturnType<typeof useChat>
    const Host = defineComponent({
      setup() {
        chat = useChat(7, { connect: (url) => {
          sockets.push(url)
          return { send: () => {}, close: () => {}, readyState: 0, onopen: null, onmessage: null, onclose: null }
        } })
        return () => h(ChatPanel, { chat, liveId: 7, ownerId: 1 })
      },
    })
    const wrapper = mount(Host, { global: { plugins: [pinia, i18n], stubs: { RouterLink: RouterLinkStub } } })
    await chat.open()
    await flushPromises()
    expect(chat.ticketRequired.value).toBe(true)
    expect(sockets).toHaveLength(1)
    expect(sockets[0]).toMatch(/^wss?:\/\/[^/]+\/ws\/lives\/7\/chat$/) // read-only: no ticket
    expect(wrapper.find('[data-test=chat-input]').exists()).toBe(false)
    expect(wrapper.get('[data-test=chat-buy-ticket]').text()).toBe('Buy a ticket to chat')
    chat.stop()
  })
})

describe('the payment pages', () => {
  const buyer = {
    id: 2, username: 'bea', email: 'bea.example', email_verified: true, role: 'viewer', bio: null,
    avatar_url: null, is_active: true, created_at: '2026-01-01T00:00:00Z',
  } as const

  async function mountPage(component: object, path: string, props: Record<string, unknown> = {}) {
    const { createRouter, createMemoryHistory } = await import('vue-router')
    const router = createRouter({
      history: createMemoryHistory(),
      routes: [
        { path: '/payments/create', component: { render: () => null } },
        { path: '/payments/:id', component: { render: () => null } },
        { path: '/:rest(.*)*', component: { render: () => null } },
      ],
    })
    await router.push(path)
    await router.isReady()
    const pinia = createPinia()
    setActivePinia(pinia)
    const auth = useAuth()
    auth.user = { ...buyer }
    auth.restored = true
    setSession('tok', 900)
    const wrapper = mount(component, { props, global: { plugins: [router, pinia, i18n] } })
    return { wrapper, router }
  }

  it('the order page follows a pending order until it is paid, then offers to watch', async () => {
    vi.useFakeTimers()
    const statuses: OrderStatus[] = ['pending', 'pending', 'paid']
    const asked: string[] = []
    vi.stubGlobal('fetch', vi.fn(async (url: string) => {
      asked.push(url)
      const status = statuses[Math.min(asked.length, statuses.length) - 1]
      return json(200, { ...order(5, status), user_id: 2, buyer: null, events: [], refunds: [], refundable: 0, can_refund: false, refund_deadline: null })
    }))
    const { default: OrderView } = await import('@/views/OrderView.vue')
    const { wrapper } = await mountPage(OrderView, '/payments/5?return=1', { id: '5' })
    await flushPromises()
    expect(wrapper.get('[data-test=order]').attributes('data-status')).toBe('pending')
    expect(wrapper.find('[data-test=watch-link]').exists()).toBe(false)
    await vi.advanceTimersByTimeAsync(2000)
    expect(asked).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(2000)
    await flushPromises()
    expect(asked).toHaveLength(3)
    expect(wrapper.get('[data-test=order]').attributes('data-status')).toBe('paid')
    expect(wrapper.get('[data-test=order-result]').text()).toContain('Thank you')
    expect(wrapper.get('[data-test=watch-link]').attributes('href')).toBe('/lives/3')
    await vi.advanceTimersByTimeAsync(30_000)
    expect(asked).toHaveLength(3) // paid: no more asking
    expect(new Set(asked)).toEqual(new Set(['/api/orders/5']))
    wrapper.unmount()
  })

  it('the order page stops asking when it is left', async () => {
    vi.useFakeTimers()
    const fetch = vi.fn(async () => json(200, { ...order(6, 'pending'), user_id: 2, buyer: null, events: [], refunds: [], refundable: 0, can_refund: false, refund_deadline: null }))
    vi.stubGlobal('fetch', fetch)
    const { default: OrderView } = await import('@/views/OrderView.vue')
    const { wrapper } = await mountPage(OrderView, '/payments/6', { id: '6' })
    await flushPromises()
    await vi.advanceTimersByTimeAsync(2000)
    expect(fetch).toHaveBeenCalledTimes(2)
    wrapper.unmount()
    await vi.advanceTimersByTimeAsync(20_000)
    expect(fetch).toHaveBeenCalledTimes(2)
  })

  it('the buy page creates one order for a double click and goes to its checkout', async () => {
    const posts: RequestInit[] = []
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
      if (url === '/api/lives/3') return json(200, { id: 3, title: 'Concert', username: 'cat', user_id: 1, price: { amount: 499, currency: 'USD', display: 'US$4.99' } })
      if (url === '/api/payments/config') {
        return json(200, {
          providers: [{ name: 'ecpay', currencies: ['TWD'] }, { name: 'sandbox', currencies: ['USD', 'TWD'] }, { name: 'stripe', currencies: ['USD'] }],
          currencies: [{ code: 'USD', minor_units: 2, whole_units_only: false, tip_minimum: 100 }],
          fee_bps: 1000, refund_window_seconds: 86400, order_ttl_seconds: 1800,
        })
      }
      if (url === '/api/orders' && init.method === 'POST') {
        posts.push(init)
        await new Promise((resolve) => setTimeout(resolve, 5))
        return json(201, { order: order(41), checkout: { url: 'https://pay.example/cs_41', method: 'GET', form: null } })
      }
      return json(404, { error: { code: 'not_found', message: url } })
    }))
    const assign = vi.spyOn(window.location, 'assign').mockImplementation(() => {})
    const { default: PaymentCreateView } = await import('@/views/PaymentCreateView.vue')
    const { wrapper } = await mountPage(PaymentCreateView, '/payments/create?type=live_ticket&live_id=3')
    await flushPromises()
    expect(wrapper.get('[data-test=price]').text()).toBe('US$4.99')
    // Only the providers that take USD, the first chosen.
    expect(wrapper.findAll('[data-provider]').map((r) => r.attributes('data-provider'))).toEqual(['sandbox', 'stripe'])
    const pay = wrapper.get('[data-test=pay-button]')
    expect(pay.text()).toBe('Pay US$4.99')
    const form = wrapper.get('[data-test=pay-form]')
    await Promise.all([form.trigger('submit'), form.trigger('submit')])
    await new Promise((resolve) => setTimeout(resolve, 20))
    await flushPromises()
    expect(posts).toHaveLength(1)
    expect(JSON.parse(String(posts[0].body))).toEqual({ item: { type: 'live_ticket', live_id: 3 }, currency: 'USD', provider: 'sandbox' })
    expect((posts[0].headers as Record<string, string>)['Idempotency-Key']).toMatch(/^[0-9a-f-]{36}$/)
    expect(assign).toHaveBeenCalledTimes(1)
    expect(assign).toHaveBeenCalledWith('https://pay.example/cs_41')
    wrapper.unmount()
  })

  it('the buy page says so when the item is already owned', async () => {
    vi.stubGlobal('fetch', vi.fn(async (url: string) => {
      if (url === '/api/videos/9') return json(200, { id: 9, title: 'Film', username: 'cat', user_id: 1, price: { amount: 15000, currency: 'TWD', display: 'NT$150' } })
      if (url === '/api/payments/config') return json(200, { providers: [{ name: 'sandbox', currencies: ['USD', 'TWD'] }], currencies: [], fee_bps: 1000, refund_window_seconds: 1, order_ttl_seconds: 1 })
      return json(409, { error: { code: 'already_owned', message: 'you have it' } })
    }))
    const { default: PaymentCreateView } = await import('@/views/PaymentCreateView.vue')
    const { wrapper } = await mountPage(PaymentCreateView, '/payments/create?type=video&video_id=9')
    await flushPromises()
    await wrapper.get('[data-test=pay-form]').trigger('submit')
    await flushPromises()
    expect(wrapper.get('[data-test=already-owned]').text()).toContain('You already have this.')
    expect(wrapper.get('[data-test=watch-link]').attributes('href')).toBe('/videos/9')
    wrapper.unmount()
  })

  it('a tip: the amount in major units, its minimum enforced, the message sent along', async () => {
    const posts: OrderCreateIn[] = []
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
      if (url === '/api/lives/3') return json(200, { id: 3, title: 'Concert', username: 'cat', user_id: 1, price: null })
      if (url === '/api/payments/config') {
        return json(200, {
          providers: [{ name: 'sandbox', currencies: ['USD', 'TWD'] }],
          currencies: [
            { code: 'USD', minor_units: 2, whole_units_only: false, tip_minimum: 100 },
            { code: 'TWD', minor_units: 2, whole_units_only: true, tip_minimum: 3000 },
          ],
          fee_bps: 1000, refund_window_seconds: 86400, order_ttl_seconds: 1800,
        })
      }
      posts.push(JSON.parse(String(init.body)))
      return json(201, { order: order(42), checkout: { url: 'https://pay.example/cs_42', method: 'GET', form: null } })
    }))
    vi.spyOn(window.location, 'assign').mockImplementation(() => {})
    const { default: PaymentCreateView } = await import('@/views/PaymentCreateView.vue')
    const { wrapper } = await mountPage(PaymentCreateView, '/payments/create?type=tip&live_id=3')
    await flushPromises()
    expect(wrapper.text()).toContain('At least US$1.00.')
    const amount = wrapper.get('input[data-test=tip-amount]')
    await amount.setValue('0.50')
    expect(wrapper.text()).toContain('At least US$1.00.')
    expect(wrapper.get('[data-test=pay-button]').attributes('disabled')).toBeDefined()
    await wrapper.get('[data-test=pay-form]').trigger('submit')
    await flushPromises()
    expect(posts).toHaveLength(0)
    await wrapper.get('[data-test=tip-currency]').setValue('TWD')
    await amount.setValue('50.5')
    await new Promise((resolve) => setTimeout(resolve, 150)) // the form item shows its error after 100 ms
    expect(wrapper.text()).toContain('Whole dollars only in this currency.')
    await amount.setValue('50')
    await wrapper.get('textarea[data-test=tip-message]').setValue('  Great show!  ')
    const pay = wrapper.get('[data-test=pay-button]')
    expect(pay.attributes('disabled')).toBeUndefined()
    expect(pay.text()).toBe('Pay NT$50')
    await wrapper.get('[data-test=pay-form]').trigger('submit')
    await flushPromises()
    expect(posts).toEqual([{ item: { type: 'tip', live_id: 3 }, currency: 'TWD', provider: 'sandbox', amount: 5000, message: 'Great show!' }])
    wrapper.unmount()
  })
})

describe('PriceFields', () => {
  it('edits a price in major units and says what is wrong with it', async () => {
    const { default: PriceFields } = await import('@/components/PriceFields.vue')
    const draft = reactive(priceDraft(null, 'USD'))
    const wrapper = mount(PriceFields, { props: { modelValue: draft, label: 'Sell tickets' }, global: { plugins: [i18n] } })
    expect(wrapper.find('[data-test=price-amount]').exists()).toBe(false)
    await wrapper.get('.switch-text').trigger('click')
    expect(draft.enabled).toBe(true)
    await wrapper.vm.$nextTick()
    await wrapper.get('input[data-test=price-amount]').setValue('4.999')
    expect(wrapper.get('[data-test=price-problem]').text()).toBe('Enter an amount such as 4.99.')
    await wrapper.get('input[data-test=price-amount]').setValue('4.99')
    expect(wrapper.find('[data-test=price-problem]').exists()).toBe(false)
    expect(priceBody(draft)).toEqual({ amount: 499, currency: 'USD' })
  })
})

describe('the watch page of a sold live', () => {
  class FakeSocket {
    readyState = 0
    onopen = null
    onmessage = null
    onclose = null
    send(): void {}
    close(): void {}
  }

  async function watchPage(playback: Response) {
    const asked: string[] = []
    vi.stubGlobal('WebSocket', FakeSocket)
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
      asked.push(`${init.method ?? 'GET'} ${url}`)
      if (url === '/api/lives/3') {
        return json(200, {
          id: 3, title: 'Concert', description: null, user_id: 1, username: 'cat', status: 'live',
          scheduled_start: null, start_time: null, end_time: null, viewer_count: 4, chat_enabled: false,
          playback_url: '/hls/3/master.m3u8', thumbnail_url: null, price: { amount: 499, currency: 'USD', display: 'US$4.99' },
          created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z',
        })
      }
      if (url === '/api/lives/3/playback') return playback
      return json(404, { error: { code: 'not_found', message: url } })
    }))
    const pinia = createPinia()
    setActivePinia(pinia)
    const auth = useAuth()
    auth.user = { id: 2, username: 'bea', email: 'b.example', email_verified: true, role: 'viewer', bio: null, avatar_url: null, is_active: true, created_at: '2026-01-01T00:00:00Z' }
    auth.restored = true
    vi.spyOn(auth, 'restore').mockResolvedValue()
    setSession('tok', 900)
    const { default: LiveWatchView } = await import('@/views/LiveWatchView.vue')
    const wrapper = mount(LiveWatchView, {
      props: { id: '3' },
      global: { plugins: [pinia, i18n], stubs: { RouterLink: RouterLinkStub, HlsPlayer: { name: 'HlsPlayer', props: ['src'], template: '<div data-test="player"></div>' } } },
    })
    await flushPromises()
    return { wrapper, asked }
  }

  it('shows the paywall, not the player, when the ticket is not bought (402)', async () => {
    const { wrapper, asked } = await watchPage(json(402, { error: { code: 'payment_required', message: 'buy', details: { price: { amount: 499, currency: 'USD', display: 'US$4.99' } } } }))
    expect(asked).toContain('POST /api/lives/3/playback')
    expect(wrapper.find('[data-test=player]').exists()).toBe(false)
    expect(wrapper.get('[data-test=paywall]').text()).toContain('This live needs a ticket')
    expect(wrapper.get('[data-test=buy-button]').text()).toBe('Buy ticket — US$4.99')
    expect(wrapper.get('h1').text()).toBe('Concert') // the title stays
    wrapper.unmount()
  })

  it('starts the player only after the playback cookie was granted (200)', async () => {
    const { wrapper, asked } = await watchPage(json(200, { private: true, expires_at: null, price: null }))
    expect(asked.indexOf('POST /api/lives/3/playback')).toBeGreaterThan(asked.indexOf('GET /api/lives/3'))
    expect(wrapper.find('[data-test=paywall]').exists()).toBe(false)
    expect(wrapper.find('[data-test=player]').exists()).toBe(true)
    wrapper.unmount()
  })
})
