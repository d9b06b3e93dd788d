// A request's state for a page: data, loading, error and a retry.
import { ref, shallowRef, type Ref, type ShallowRef } from 'vue'

export interface AsyncState<T> {
  data: ShallowRef<T | null>
  loading: Ref<boolean>
  error: ShallowRef<unknown>
  run: () => Promise<void>
}

export function useAsync<T>(load: () => Promise<T>, { immediate = true } = {}): AsyncState<T> {
  const data = shallowRef<T | null>(null)
  const loading = ref(false)
  const error = shallowRef<unknown>(null)
  let generation = 0

  async function run(): Promise<void> {
    const mine = ++generation
    loading.value = true
    error.value = null
    try {
      const value = await load()
      if (mine === generation) data.value = value
    } catch (exc) {
      if (mine === generation) error.value = exc
    } finally {
      if (mine === generation) loading.value = false
    }
  }
  if (immediate) void run()
  return { data, loading, error, run }
}
