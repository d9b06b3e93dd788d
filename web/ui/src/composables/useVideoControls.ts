// The controls both players share (HlsPlayer, WhepPlayer): play/pause, mute, volume and full
// screen over a <video> inside a frame. Each player brings its own play(): HLS retries muted
// when autoplay with sound is refused; WebRTC starts muted.
import { ref, watch, type Ref } from 'vue'

export function useVideoControls(
  root: Ref<HTMLElement | undefined>,
  video: Ref<HTMLVideoElement | undefined>,
  play: () => Promise<void>,
  startMuted: boolean,
) {
  const paused = ref(true)
  const muted = ref(startMuted)
  const volume = ref(1)

  function togglePlay(): void {
    const el = video.value
    if (!el) return
    if (el.paused) void play()
    else el.pause()
  }

  function toggleMute(): void {
    if (!video.value) return
    video.value.muted = !video.value.muted
    muted.value = video.value.muted
  }

  async function fullscreen(): Promise<void> {
    const el = root.value
    if (!el) return
    if (document.fullscreenElement) await document.exitFullscreen()
    else if (el.requestFullscreen) await el.requestFullscreen()
    else (video.value as HTMLVideoElement & { webkitEnterFullscreen?: () => void })?.webkitEnterFullscreen?.()
  }

  /** The <video>'s volumechange: mute changed by the browser (autoplay, its own controls). */
  function onVolumeChange(): void {
    if (video.value) muted.value = video.value.muted
  }

  watch(volume, (value) => {
    if (!video.value) return
    video.value.volume = value
    if (value > 0 && video.value.muted) toggleMute()
  })

  return { paused, muted, volume, togglePlay, toggleMute, fullscreen, onVolumeChange }
}
