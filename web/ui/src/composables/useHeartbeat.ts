// Tells streamd an HLS player is watching (POST /api/lives/{id}/heartbeat), so viewers who do
// not open the chat count too. The server issues the player id and the interval.
import { onBeforeUnmount, ref } from 'vue'
import { api } from '@/api/client'

interface Beat {
  player_id: string
  viewer_count: number
  interval: number
}

export function useHeartbeat(liveId: number) {
  const viewerCount = ref<number | null>(null)
  let playerId: string | null = null
  let timer: ReturnType<typeof setTimeout> | null = null
  let running = false
  let beats = 0

  async function beat(): Promise<void> {
    if (!running) return
    let interval = 15
    try {
      const body = playerId ? { player_id: playerId } : {}
      const answer = await api<Beat>(`/api/lives/${liveId}/heartbeat`, { method: 'POST', body, auth: false })
      playerId = answer.player_id
      viewerCount.value = answer.viewer_count
      interval = answer.interval
      beats += 1
    } catch {
      interval = 10
    }
    // The first beat only gets an id: the next one, soon after, is the one that counts.
    if (running) timer = setTimeout(() => void beat(), (beats === 1 ? 1 : interval) * 1000)
  }

  function start(): void {
    if (running) return
    running = true
    void beat()
  }
  function stop(): void {
    running = false
    if (timer) clearTimeout(timer)
  }
  onBeforeUnmount(stop)
  return { viewerCount, start, stop }
}
