// Orders: which statuses are still open, how they look, and following an open one until the
// payment provider's answer arrives.
import type { ItemType, Order, OrderStatus } from '@/api/types'

/** Waiting for the buyer or the provider; every other status is final (but for refunds). */
export function isOpen(status: OrderStatus): boolean {
  return status === 'created' || status === 'pending'
}

export type TagType = 'primary' | 'success' | 'warning' | 'info' | 'danger'
const TAG: Record<OrderStatus, TagType> = {
  created: 'info', pending: 'warning', paid: 'success', partially_refunded: 'primary',
  refunded: 'info', failed: 'danger', canceled: 'info', expired: 'info',
}
export function statusTagType(status: OrderStatus): TagType {
  return TAG[status] ?? 'info'
}

/** The page an order's item is watched on (a tip: the live it was given in). */
export function itemLink(order: Pick<Order, 'item_type' | 'live_id' | 'video_id'>): string | null {
  if (order.item_type === 'video') return order.video_id ? `/videos/${order.video_id}` : null
  return order.live_id ? `/lives/${order.live_id}` : null
}

/** The buy page's query for an item. */
export function buyQuery(type: ItemType, id: number, extra: Record<string, string> = {}): Record<string, string> {
  return type === 'video' ? { type, video_id: String(id), ...extra } : { type, live_id: String(id), ...extra }
}

export interface PollOptions {
  interval?: number // ms between answers and the next ask
  limit?: number // ms after which it gives up (the page offers a refresh)
  now?: () => number
}

/** Ask for the order every `interval` ms while it is open: stops on a final status, on stop()
 * (leaving the page) and after `limit` ms, when `onTimeout` runs. A failed ask is retried at
 * the next tick. One ask at a time: a slow answer delays the next instead of piling up. */
export function pollOrder<T extends { status: OrderStatus }>(
  fetchOrder: () => Promise<T>,
  onOrder: (order: T) => void,
  { interval = 2000, limit = 120_000, now = Date.now }: PollOptions = {},
  onTimeout: () => void = () => {},
): { stop: () => void; active: () => boolean } {
  const deadline = now() + limit
  let timer: ReturnType<typeof setTimeout> | null = null
  let stopped = false

  function stop(): void {
    stopped = true
    if (timer) clearTimeout(timer)
    timer = null
  }

  function schedule(): void {
    if (stopped) return
    if (now() >= deadline) {
      stop()
      onTimeout()
      return
    }
    timer = setTimeout(() => void tick(), interval)
  }

  async function tick(): Promise<void> {
    timer = null
    if (stopped) return
    try {
      const order = await fetchOrder()
      if (stopped) return
      onOrder(order)
      if (!isOpen(order.status)) {
        stop()
        return
      }
    } catch {
      // offline for a moment: the next tick asks again
    }
    schedule()
  }

  schedule()
  return { stop, active: () => !stopped }
}

type QueryValue = string | null | (string | null)[] | undefined

function first(value: QueryValue): string {
  return (Array.isArray(value) ? value[0] : value) ?? ''
}

/** What the buy page sells, from its query (?type=live_ticket&live_id=3); null when the link
 * is incomplete. */
export function parseItemQuery(query: Record<string, QueryValue>): { type: ItemType; id: number } | null {
  const type = first(query.type)
  if (type !== 'live_ticket' && type !== 'video' && type !== 'tip') return null
  const raw = first(type === 'video' ? query.video_id : query.live_id)
  if (!/^[1-9]\d{0,15}$/.test(raw)) return null
  const id = Number(raw)
  return Number.isSafeInteger(id) ? { type, id } : null
}
