// A list the API pages with an opaque cursor: load more on demand (a button, or a sentinel
// element scrolled into view), reset when the filter changes.
import { ref, shallowRef } from 'vue'
import type { Page } from '@/api/types'

export function useCursorList<T>(fetchPage: (cursor: string | null) => Promise<Page<T>>) {
  const items = ref<T[]>([]) as { value: T[] }
  const cursor = ref<string | null>(null)
  const done = ref(false)
  const loading = ref(false)
  const error = shallowRef<unknown>(null)
  let generation = 0

  async function more(): Promise<void> {
    if (loading.value || done.value) return
    const mine = generation
    loading.value = true
    error.value = null
    try {
      const page = await fetchPage(cursor.value)
      if (mine !== generation) return
      items.value = [...items.value, ...page.items]
      cursor.value = page.next_cursor
      done.value = page.next_cursor === null
    } catch (exc) {
      if (mine === generation) error.value = exc
    } finally {
      if (mine === generation) loading.value = false
    }
  }

  function reset(): Promise<void> {
    generation += 1
    items.value = []
    cursor.value = null
    done.value = false
    loading.value = false
    return more()
  }

  /** Loads the next page whenever `el` comes into view. */
  function observe(el: Element): () => void {
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) void more()
    }, { rootMargin: '400px' })
    observer.observe(el)
    return () => observer.disconnect()
  }

  return { items, done, loading, error, more, reset, observe }
}
