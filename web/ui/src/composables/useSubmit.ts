// A form's submit: busy while it runs, the API's error in the user's language, and the 422's
// messages per field.
import { ref } from 'vue'
import { errorText, fieldErrors } from '@/api/errors'

export function useSubmit(action: () => Promise<void>) {
  const busy = ref(false)
  const error = ref('')
  const fields = ref<Record<string, string>>({})

  async function submit(): Promise<void> {
    busy.value = true
    error.value = ''
    fields.value = {}
    try {
      await action()
    } catch (exc) {
      error.value = errorText(exc)
      fields.value = fieldErrors(exc)
    } finally {
      busy.value = false
    }
  }
  return { busy, error, fields, submit }
}
