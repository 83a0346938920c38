// Sends a fixed set of calls to a trackyard server with the official
// @segment/analytics-node SDK, unmodified, and prints a JSON summary on stdout.
//
// Usage: node node_send.mjs '{"host": "http://127.0.0.1:PORT", "writeKey": "KEY",
//                            "runId": "abc", "flushAt": 20, "maxRetries": 1}'
// (the JSON config may also come on stdin when no argument is given).
// Exit status 0 only if every call was delivered and no 'error' was emitted.
import { Analytics } from '@segment/analytics-node'
import { readFileSync } from 'node:fs'

const config = JSON.parse(process.argv[2] ?? readFileSync(0, 'utf8'))
if (!config.host || !config.writeKey) {
  console.error('config needs host and writeKey')
  process.exit(2)
}
// runId keeps ids unique, so a test can find its own events on a shared server.
const runId = config.runId ?? Date.now().toString(36)
const userId = `node-user-${runId}`
const anonymousId = `node-anon-${runId}`

// The fixed set of calls: [method, params]. Tests compare stored events to what was sent.
const calls = [
  ['identify', { userId, traits: { email: 'ada@example.com', plan: 'pro', logins: 3 } }],
  [
    'track',
    {
      userId,
      event: 'Order Completed',
      properties: { order_id: `o-${runId}`, revenue: 42.5, currency: 'EUR', items: [{ sku: 'a1', qty: 2 }] },
    },
  ],
  ['track', { anonymousId, event: 'Signup Started', properties: { nested: { deep: true }, n: null } }],
  ['page', { userId, category: 'Docs', name: 'Install', properties: { path: '/docs/install' } }],
  ['screen', { userId, name: 'Settings', properties: { tab: 'privacy' } }],
  ['group', { userId, groupId: `g-${runId}`, traits: { name: 'Acme', employees: 12 } }],
  ['alias', { userId, previousId: anonymousId }],
]

const analytics = new Analytics({
  writeKey: config.writeKey,
  host: config.host,
  // Default flushAt: everything in one /v1/batch request; tests can lower it.
  flushAt: config.flushAt ?? calls.length,
  flushInterval: config.flushInterval ?? 10000,
  // Few retries, so a broken server fails the test fast instead of backing off.
  maxRetries: config.maxRetries ?? 1,
  httpRequestTimeout: config.httpRequestTimeout ?? 5000,
})

const errors = []
const responses = []
analytics.on('error', (err) => {
  errors.push({ code: err.code, reason: String(err.reason?.message ?? err.reason) })
})
analytics.on('http_response', (res) => {
  responses.push({ url: res.url, status: res.status, body: res.body })
})

// Each call's callback runs after delivery (or failure) and gives the event as sent.
const sent = calls.map(
  ([method, params]) =>
    new Promise((resolve) => {
      analytics[method](params, (err, ctx) => {
        if (err) errors.push({ code: 'callback', method, reason: String(err.reason ?? err.message ?? err) })
        // ctx.event is the event as the SDK built it (e.g. page category moved into properties).
        const event = ctx?.event ?? {}
        resolve({ method, params, messageId: event.messageId, timestamp: event.timestamp, sent: event })
      })
    }),
)

await analytics.closeAndFlush({ timeout: config.closeTimeout ?? 20000 })
// A callback that never ran (closeAndFlush timed out) must not hang the script.
const timedOut = new Promise((resolve) => setTimeout(resolve, 1000, null))
const results = await Promise.all(sent.map((p) => Promise.race([p, timedOut])))
results.forEach((r, i) => {
  if (r === null) errors.push({ code: 'not_delivered', method: calls[i][0], reason: 'callback never ran' })
})
const badStatus = responses.filter((r) => r.status < 200 || r.status >= 300)

console.log(JSON.stringify({ runId, userId, anonymousId, calls: results, responses, errors }, null, 2))
process.exit(errors.length || badStatus.length || responses.length === 0 ? 1 : 0)
