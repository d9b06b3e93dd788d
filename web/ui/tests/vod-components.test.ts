// The processing progress bar and the seek bar's keyboard, mounted with the real catalogues.
import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import { i18n } from '@/i18n'
import VideoProgressBar from '@/components/VideoProgressBar.vue'
import SeekBar from '@/components/SeekBar.vue'

const global = { plugins: [i18n] }

describe('VideoProgressBar', () => {
  it('is a progressbar with its stage, percent and time left', () => {
    i18n.global.locale.value = 'en'
    const w = mount(VideoProgressBar, { global, props: { progress: { status: 'processing', percent: 42.4, stage: 'transcoding', eta_seconds: 65, error_message: null } } })
    const bar = w.get('[role=progressbar]')
    expect(bar.attributes('aria-valuenow')).toBe('42')
    expect(bar.attributes('aria-valuetext')).toBe('Making the qualities: 42 %')
    expect(w.text()).toContain('about 1:05 left')
  })

  it('shows why a video failed, and an unknown stage as the server wrote it', () => {
    const failed = mount(VideoProgressBar, { global, props: { progress: { status: 'failed', percent: 10, stage: null, eta_seconds: null, error_message: 'No video stream.' } } })
    expect(failed.get('[role=alert]').text()).toBe('No video stream.')
    expect(failed.find('[role=progressbar]').exists()).toBe(false)
    const odd = mount(VideoProgressBar, { global, props: { progress: { status: 'processing', percent: 5, stage: 'thinking', eta_seconds: null, error_message: null } } })
    expect(odd.text()).toContain('thinking')
  })
})

describe('SeekBar', () => {
  it('seeks with the keyboard and says where it is', async () => {
    const video = document.createElement('video')
    Object.defineProperty(video, 'duration', { value: 100 })
    const w = mount(SeekBar, { global, props: { video, storyboard: null } })
    video.dispatchEvent(new Event('durationchange'))
    const slider = w.get('[role=slider]')
    await slider.trigger('keydown', { key: 'ArrowRight' })
    expect(video.currentTime).toBe(5)
    await slider.trigger('keydown', { key: 'End' })
    expect(video.currentTime).toBe(100)
    await slider.trigger('keydown', { key: 'PageDown' })
    expect(slider.attributes('aria-valuenow')).toBe('70')
    expect(slider.attributes('aria-valuetext')).toBe('1:10 / 1:40')
  })
})
