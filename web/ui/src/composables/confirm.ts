import { i18n } from '@/i18n'

/** Ask before something that cannot be undone; true when the user confirmed. The dialog's code
 * loads on first use: pages that may never ask (the watch page's chat) do not wait for it. */
export async function confirmed(message: string, title: string, button = title): Promise<boolean> {
  const { ElMessageBox } = await import('element-plus/es/components/message-box/index.mjs')
  try {
    await ElMessageBox.confirm(message, title, {
      confirmButtonText: button,
      cancelButtonText: i18n.global.t('common.cancel'),
      type: 'warning',
    })
    return true
  } catch {
    return false
  }
}
