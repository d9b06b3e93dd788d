// Money in the web app: the API's amounts are integers in ISO 4217 minor units (USD 499 =
// US$4.99); people type and read major units. Conversions go through decimal strings, never
// through a float multiplication (4.35 * 100 = 434.99999999999994).
import type { Currency, CurrencyInfo, Price, PriceIn } from '@/api/types'

export const CURRENCIES: readonly Currency[] = ['USD', 'TWD']
/** Decimal places of each currency's minor unit (the server's web/payments/money.py). */
const EXPONENT: Record<Currency, number> = { USD: 2, TWD: 2 }
/** Currencies charged in whole major units only (ECPay takes whole New Taiwan dollars). */
const WHOLE_ONLY: ReadonlySet<string> = new Set(['TWD'])
const SYMBOL: Record<Currency, string> = { USD: 'US$', TWD: 'NT$' }
/** The most one charge may be, in minor units (the server's limit). */
export const MAX_AMOUNT = 99_999_999

export function isCurrency(value: unknown): value is Currency {
  return typeof value === 'string' && (CURRENCIES as readonly string[]).includes(value)
}

function exponentOf(currency: string): number {
  return EXPONENT[currency as Currency] ?? 2
}

/** "4.99" (USD) → 499; "150" (TWD) → 15000. NaN for anything that is not a plain decimal with
 * at most the currency's decimal places (no signs, exponents or thousands separators). */
export function toMinor(major: string | number, currency: string): number {
  const exp = exponentOf(currency)
  const text = (typeof major === 'number' ? (Number.isFinite(major) ? String(major) : '') : major).trim()
  const match = /^(\d*)(?:\.(\d*))?$/.exec(text)
  if (!match || (match[1] === '' && !match[2])) return NaN
  const [, whole, frac = ''] = match
  if (frac.length > exp) return NaN
  const digits = (whole || '0') + frac.padEnd(exp, '0')
  const value = Number(digits)
  return Number.isSafeInteger(value) ? value : NaN
}

/** 499 (USD) → "4.99"; 15000 (TWD) → "150" (whole units shown without decimals): a decimal
 * string for an input field. */
export function fromMinor(minor: number, currency: string): string {
  const exp = exponentOf(currency)
  const sign = minor < 0 ? '-' : ''
  const abs = Math.abs(Math.trunc(minor))
  const scale = 10 ** exp
  const whole = Math.floor(abs / scale)
  const frac = String(abs % scale).padStart(exp, '0')
  if (exp === 0 || (WHOLE_ONLY.has(currency) && abs % scale === 0)) return `${sign}${whole}`
  return `${sign}${whole}.${frac}`
}

/** 499, "USD" → "US$4.99"; 15000, "TWD" → "NT$150": as the server writes amount_display. */
export function formatMoney(minor: number, currency: string): string {
  const symbol = SYMBOL[currency as Currency] ?? `${currency} `
  return symbol + fromMinor(minor, currency)
}

/** Why an amount cannot be charged, as an i18n key under `money.` with its parameters; null
 * when it can. `minimum` is in minor units (a tip's). */
export function amountProblem(
  minor: number,
  currency: string,
  { minimum = 1, whole = WHOLE_ONLY.has(currency) }: { minimum?: number; whole?: boolean } = {},
): { key: string; params?: Record<string, string> } | null {
  if (!Number.isFinite(minor)) return { key: 'invalid' }
  if (minor <= 0) return { key: 'positive' }
  if (whole && minor % 10 ** exponentOf(currency) !== 0) return { key: 'whole_units' }
  if (minor < minimum) return { key: 'minimum', params: { amount: formatMoney(minimum, currency) } }
  if (minor > MAX_AMOUNT) return { key: 'maximum', params: { amount: formatMoney(MAX_AMOUNT, currency) } }
  return null
}

/** A currency's rules from GET /api/payments/config, or this app's defaults. */
export function currencyInfo(code: Currency, known: readonly CurrencyInfo[] = []): CurrencyInfo {
  return known.find((c) => c.code === code) ?? {
    code, minor_units: exponentOf(code), whole_units_only: WHOLE_ONLY.has(code), tip_minimum: 1,
  }
}

/** A price form's state: the switch, the amount as typed (major units) and the currency. */
export interface PriceDraft {
  enabled: boolean
  amount: string
  currency: Currency
}

export function priceDraft(price: Price | null, fallback: Currency = 'USD'): PriceDraft {
  return price
    ? { enabled: true, amount: fromMinor(price.amount, price.currency), currency: price.currency }
    : { enabled: false, amount: '', currency: fallback }
}

/** The body's `price`: null when the item is free. Check draftProblem first. */
export function priceBody(draft: PriceDraft): PriceIn | null {
  return draft.enabled ? { amount: toMinor(draft.amount, draft.currency), currency: draft.currency } : null
}

export function draftProblem(draft: PriceDraft): { key: string; params?: Record<string, string> } | null {
  return draft.enabled ? amountProblem(toMinor(draft.amount, draft.currency), draft.currency) : null
}

/** The currency a new price starts in: New Taiwan dollars for a zh-TW page, else US dollars. */
export function defaultCurrency(locale: string): Currency {
  return locale.toLowerCase().startsWith('zh') ? 'TWD' : 'USD'
}
