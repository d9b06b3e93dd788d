// Message catalogues: every string the UI shows comes from here. The first language is the
// browser's (zh* → zh-TW), then the user's choice, kept in localStorage.
import { createI18n } from 'vue-i18n'
import en from './en'
import zhTW from './zh-TW'

export const LOCALES = ['en', 'zh-TW'] as const
export type Locale = (typeof LOCALES)[number]
const STORAGE_KEY = 'streamd.locale'

export function pickLocale(saved: string | null, languages: readonly string[]): Locale {
  if (saved && (LOCALES as readonly string[]).includes(saved)) return saved as Locale
  for (const language of languages) {
    const lower = language.toLowerCase()
    if (lower.startsWith('zh')) return 'zh-TW'
    if (lower.startsWith('en')) return 'en'
  }
  return 'en'
}

/** Keys asked for but absent from a catalogue: the browser tests fail when any is listed. */
export const missingKeys: string[] = []

function savedLocale(): string | null {
  try {
    return localStorage.getItem(STORAGE_KEY)
  } catch {
    return null
  }
}

export const i18n = createI18n({
  legacy: false,
  locale: pickLocale(savedLocale(), typeof navigator === 'undefined' ? [] : navigator.languages),
  fallbackLocale: false,
  messages: { en, 'zh-TW': zhTW },
  missingWarn: false,
  fallbackWarn: false,
  missing(locale, key) {
    missingKeys.push(`${locale}:${key}`)
    console.error(`[i18n] missing ${locale}:${key}`)
    return key
  },
  datetimeFormats: {
    en: {
      short: { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' },
      long: { year: 'numeric', month: 'long', day: 'numeric', hour: '2-digit', minute: '2-digit' },
      time: { hour: '2-digit', minute: '2-digit', second: '2-digit' },
    },
    'zh-TW': {
      short: { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' },
      long: { year: 'numeric', month: 'long', day: 'numeric', hour: '2-digit', minute: '2-digit' },
      time: { hour: '2-digit', minute: '2-digit', second: '2-digit' },
    },
  },
})

export function setLocale(locale: Locale): void {
  i18n.global.locale.value = locale
  document.documentElement.lang = locale
  try {
    localStorage.setItem(STORAGE_KEY, locale)
  } catch {
    // private mode: the choice lasts this page only
  }
}
