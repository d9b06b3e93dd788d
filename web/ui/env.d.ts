/// <reference types="vite/client" />
declare module '*.vue' {
  import type { DefineComponent } from 'vue'
  const component: DefineComponent<object, object, unknown>
  export default component
}
interface Window {
  /** Requests /boot.js started, by API path (src/api/prefetch.ts takes them). */
  __streamdPrefetch?: Record<string, Promise<Response>>
}
declare module 'hls.js/light' {
  export * from 'hls.js'
  export { default } from 'hls.js'
}
