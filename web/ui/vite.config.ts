// The web app's build. Element Plus components are imported on demand (unplugin-vue-components
// resolves <el-*> tags at build time), routes are lazy chunks, and every asset gets a .gz twin
// that streamd serves to clients that accept gzip (no compression at request time).
import { fileURLToPath, URL } from 'node:url'
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync, constants } from 'node:zlib'
import { defineConfig, type Plugin } from 'vite'
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

export default defineConfig({
  plugins: [
    vue(),
    Components({
      resolvers: [ElementPlusResolver({ importStyle: 'css' })],
      dts: 'components.d.ts',
    }),
    precompress(),
  ],
  resolve: { alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) } },
  build: {
    target: 'es2020',
    sourcemap: false,
    chunkSizeWarningLimit: 600,
    rolldownOptions: {
      output: {
        // hls.js only on pages with a player; vue and the router on every page.
        codeSplitting: {
          groups: [
            { name: 'hls', test: /node_modules[\\/]hls\.js/ },
            { name: 'vue', test: /node_modules[\\/](@vue|vue|vue-router|pinia|vue-i18n|@intlify)[\\/]/ },
          ],
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
