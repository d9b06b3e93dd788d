import { ApiError } from './client'
import { i18n } from '@/i18n'

/** An error for the user, in their language: the API's code when the catalogue knows it,
 * else the server's own message (English), else a generic line. */
export function errorText(error: unknown): string {
  const { t, te } = i18n.global
  if (error instanceof ApiError) {
    const key = `errors.${error.code}`
    let text = te(key) ? t(key) : error.message
    if (error.retryAfter) text += ' ' + t('errors.retry_after', { seconds: error.retryAfter })
    return text
  }
  if (error instanceof TypeError) return t('errors.network')
  return t('errors.unknown')
}

/** Field → message for a 422's details, for form items. */
export function fieldErrors(error: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (error instanceof ApiError) for (const d of error.details) out[d.field] = d.message
  return out
}
