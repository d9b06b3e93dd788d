import { describe, expect, it } from 'vitest'
import en from '@/i18n/en'
import zhTW from '@/i18n/zh-TW'
import { pickLocale } from '@/i18n'

function keys(tree: object, prefix = ''): string[] {
  return Object.entries(tree).flatMap(([key, value]) =>
    typeof value === 'object' ? keys(value, `${prefix}${key}.`) : [`${prefix}${key}`],
  )
}

function values(tree: object): string[] {
  return Object.values(tree).flatMap((v) => (typeof v === 'object' ? values(v) : [v as string]))
}

describe('message catalogues', () => {
  it('have the same keys in both languages', () => {
    expect(keys(zhTW).sort()).toEqual(keys(en).sort())
  })

  it('have no empty message and no stray linked-message @ or HTML', () => {
    for (const text of [...values(en), ...values(zhTW)]) {
      expect(text.trim()).not.toBe('')
      expect(text).not.toMatch(/@|<[a-z]/i)
    }
  })

  it('use the same placeholders in both languages', () => {
    const holes = (s: string) => (s.match(/\{[a-z]+\}/g) ?? []).sort()
    const zh = new Map(keys(zhTW).map((k) => [k, k.split('.').reduce<any>((o, p) => o[p], zhTW)]))
    for (const key of keys(en)) {
      const text = key.split('.').reduce<any>((o, p) => o[p], en) as string
      expect(holes(zh.get(key)), key).toEqual(holes(text))
    }
  })
})

describe('pickLocale', () => {
  it('takes a saved choice first', () => {
    expect(pickLocale('zh-TW', ['en-US'])).toBe('zh-TW')
  })
  it('falls back to the browser languages, any Chinese to zh-TW', () => {
    expect(pickLocale(null, ['zh-CN', 'en'])).toBe('zh-TW')
    expect(pickLocale(null, ['fr-FR', 'en-GB'])).toBe('en')
    expect(pickLocale('xx', ['de'])).toBe('en')
  })
})
