// Placing an order and going to its checkout. An order is created with an Idempotency-Key that
// lasts the page's lifetime, so a double click, or a retry after a network error, gets the
// same order back instead of a second one; only a changed body (another tip amount) gets a
// new key.
import { api, ApiError } from '@/api/client'
import type { Checkout, OrderCreated, OrderCreateIn } from '@/api/types'

/** A random UUID, also where crypto.randomUUID is missing (plain http on a LAN address is not
 * a secure context; getRandomValues works there). */
export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === 'function') {
    try {
      return crypto.randomUUID()
    } catch {
      // not a secure context: below
    }
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = (bytes[6] & 0x0f) | 0x40 // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80 // RFC 4122 variant
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

type Post = (body: OrderCreateIn, key: string) => Promise<OrderCreated>

const postOrder: Post = (body, key) =>
  api<OrderCreated>('/api/orders', { method: 'POST', body, headers: { 'Idempotency-Key': key } })

/** One per page visit: place(body) creates the order, or gets the same one back. */
export function orderPlacer(post: Post = postOrder, makeKey: () => string = newIdempotencyKey) {
  let key = makeKey()
  let sent: string | null = null // the body the key was last sent with
  let pending: Promise<OrderCreated> | null = null

  function place(body: OrderCreateIn): Promise<OrderCreated> {
    const text = JSON.stringify(body)
    // A second click while the first is on its way: the same answer.
    if (pending && text === sent) return pending
    // Another order (the buyer changed the amount after an error): another key. The same body
    // again (a retry) keeps the key, and the server answers with the order it made, if any.
    if (sent !== null && text !== sent) key = makeKey()
    sent = text
    const mine = post(body, key).catch((exc: unknown) => {
      // The key went with another body before (a stale page): the next try starts afresh.
      if (exc instanceof ApiError && exc.code === 'idempotency_conflict') {
        key = makeKey()
        sent = null
      }
      throw exc
    })
    pending = mine
    void mine.then(
      () => { if (pending === mine) pending = null },
      () => { if (pending === mine) pending = null },
    )
    return mine
  }
  return { place, key: () => key }
}

/** Only a web address may be navigated to (never a javascript: URL). */
function safeUrl(url: string): string {
  const parsed = new URL(url, window.location.origin)
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new Error(`refusing checkout URL ${parsed.protocol}`)
  return parsed.href
}

/** Send the browser to the payment provider: GET a page, or POST its form (ECPay). */
export function goToCheckout(checkout: Checkout, location: Pick<Location, 'assign'> = window.location): void {
  const url = safeUrl(checkout.url)
  if (checkout.method !== 'POST') {
    location.assign(url)
    return
  }
  const form = document.createElement('form')
  form.method = 'post'
  form.action = url
  form.hidden = true
  for (const [name, value] of Object.entries(checkout.form ?? {})) {
    const input = document.createElement('input')
    input.type = 'hidden'
    input.name = name
    input.value = value
    form.appendChild(input)
  }
  document.body.appendChild(form)
  form.submit()
}
