/// <reference types="vite/client" />
declare module '*.vue' {
  import type { DefineComponent } from 'vue'
  const component: DefineComponent<object, object, unknown>
  export default component
}
declare module 'hls.js/light' {
  export * from 'hls.js'
  export { default } from 'hls.js'
}
