// The web app's build. Element Plus components are imported on demand (unplugin-vue-components
// resolves <el-*> tags at build time), routes are lazy chunks, and every asset gets a .gz twin
// that streamd serves to clients that accept gzip (no compression at request time).
import { fileURLToPath, URL } from 'node:url'
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync, constants } from 'node:zlib'
import { defineConfig, type Plugin } from 'vite'
import type { OutputBundle, OutputChunk } from 'rolldown'
import vue from '@vitejs/plugin-vue'
import Components from 'unplugin-vue-components/vite'
import { ElementPlusResolver } from 'unplugin-vue-components/resolvers'

function precompress(): Plugin {
  let outDir = 'dist'
  return {
    name: 'streamd-precompress',
    apply: 'build',
    configResolved(config) {
      outDir = config.build.outDir
    },
    closeBundle() {
      const walk = (dir: string): void => {
        for (const name of readdirSync(dir)) {
          const path = join(dir, name)
          if (statSync(path).isDirectory()) walk(path)
          else if (/\.(js|css|svg|html|json)$/.test(name)) {
            const gz = gzipSync(readFileSync(path), { level: constants.Z_BEST_COMPRESSION })
            writeFileSync(`${path}.gz`, gz)
          }
        }
      }
      walk(outDir)
    },
  }
}

function chunkOf(id: string): string | null {
  // Styles (and Element Plus's style-import modules) go with the code that imports them.
  if (/\.css($|\?)|element-plus[\\/](theme-chalk|es[\\/]components[\\/][a-z-]+[\\/]style)[\\/]/.test(id)) return null
  if (/node_modules[\\/]hls\.js[\\/]/.test(id)) return 'hls'
  if (/node_modules[\\/](@vue|vue|vue-router|pinia|vue-i18n|@intlify)[\\/]/.test(id)) return 'vue'
  // Element Plus's core and the components the watch and home pages show go together; the
  // others (forms, dialogs, pickers) load with the pages that use them.
  const component = /node_modules[\\/]element-plus[\\/]es[\\/]components[\\/]([a-z-]+)/.exec(id)
  if (component) return WATCH_COMPONENTS.has(component[1]) ? 'element' : null
  if (/node_modules[\\/]dayjs[\\/]/.test(id)) return null
  if (/node_modules[\\/]/.test(id)) return 'element'
  // VOD's upload, progress stream and storyboard code go with the video pages that import them,
  // not into the shared chunk every page (the live watch page too) loads first.
  if (/src[\\/]composables[\\/]vod[\\/]/.test(id)) return null
  if (/src[\\/](api|composables|stores|i18n)[\\/]/.test(id)) return 'app'
  return null
}
const WATCH_COMPONENTS = new Set(['button', 'tag', 'alert', 'skeleton', 'skeleton-item', 'result',
  'icon', 'empty', 'config-provider', 'base'])

// /boot.js: a few hundred bytes of classic script that index.html runs first. On a watch page
// it asks for the live and preloads the page's code (hls.js included) while the app's own code
// is still loading: the route's code would otherwise be discovered only once the app has run,
// and its live fetched only once that code has run (two waits before the player can start).
const BOOT = `(function () {
  var m = /^\\/lives\\/(\\d+)\\/?$/.exec(location.pathname);
  if (!m) return;
  var path = '/api/lives/' + m[1];
  // The same request as the page's Link preload header (web/ui_routes.py), which it reuses.
  var request = fetch(path, { credentials: 'same-origin' });
  request.catch(function () {});
  window.__streamdPrefetch = {};
  window.__streamdPrefetch[path] = request;
  FILES.forEach(function (href) {
    var link = document.createElement('link');
    // crossorigin as on the tags Vite itself writes, or the browser will not reuse them.
    if (/\\.css$/.test(href)) { link.rel = 'preload'; link.as = 'style'; }
    else { link.rel = 'modulepreload'; }
    link.crossOrigin = '';
    link.href = href;
    document.head.appendChild(link);
  });
})();
`

function routeFiles(bundle: OutputBundle, view: string): string[] {
  const chunks = Object.values(bundle).filter((c): c is OutputChunk => c.type === 'chunk')
  const byName = new Map(chunks.map((c) => [c.fileName, c]))
  const start = chunks.find((c) => c.facadeModuleId?.endsWith(view))
  if (!start) throw new Error(`no chunk for ${view}`)
  const files = new Set<string>()
  const visit = (chunk: OutputChunk): void => {
    if (files.has(chunk.fileName)) return
    files.add(chunk.fileName)
    for (const css of (chunk as OutputChunk & { viteMetadata?: { importedCss: Set<string> } }).viteMetadata?.importedCss ?? []) files.add(css)
    for (const name of chunk.imports) {
      const next = byName.get(name)
      if (next) visit(next)
    }
  }
  visit(start)
  return [...files].map((f) => '/' + f)
}

function boot(): Plugin {
  return {
    name: 'streamd-boot',
    apply: 'build',
    generateBundle(_options, bundle) {
      const files = routeFiles(bundle, 'src/views/LiveWatchView.vue')
      this.emitFile({ type: 'asset', fileName: 'boot.js', source: BOOT.replace('FILES', JSON.stringify(files)) })
    },
    transformIndexHtml: {
      order: 'pre',
      handler: () => [{ tag: 'script', attrs: { src: '/boot.js' }, injectTo: 'head-prepend' }],
    },
  }
}

export default defineConfig({
  plugins: [
    vue(),
    Components({
      resolvers: [ElementPlusResolver({ importStyle: 'css' })],
      dts: 'components.d.ts',
    }),
    boot(),
    precompress(),
  ],
  resolve: { alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) } },
  // vue-i18n's feature flags: the Composition API only (no legacy API, no global <i18n-t>
  // components, no devtools), so its legacy half is left out of the bundle.
  define: {
    __VUE_I18N_LEGACY_API__: 'false',
    __VUE_I18N_FULL_INSTALL__: 'false',
    __INTLIFY_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  build: {
    target: 'es2020',
    sourcemap: false,
    chunkSizeWarningLimit: 600,
    rolldownOptions: {
      output: {
        // Few requests on the way to a first frame: vue and the app's shared code in one chunk,
        // Element Plus's core in another (the watch page needs none of it), hls.js only where
        // there is a player, the date picker (with dayjs) only where a date is picked.
        codeSplitting: {
          groups: [{ name: chunkOf }],
        },
      },
    },
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/hls': 'http://127.0.0.1:8080',
      '/ws': { target: 'ws://127.0.0.1:8080', ws: true },
    },
  },
  test: {
    environment: 'happy-dom',
    include: ['tests/**/*.test.ts'],
  },
})
