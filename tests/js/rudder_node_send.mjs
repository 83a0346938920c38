// Sends a fixed set of calls to a trackyard server with the official
// @rudderstack/rudder-sdk-node SDK, unmodified, and prints a JSON summary on stdout.
//
// Usage: node rudder_node_send.mjs '{"host": "http://127.0.0.1:PORT", "writeKey": "KEY", "runId": "abc"}'
// Exit status 0 only if every call was delivered and the error handler never ran.
// The SDK sends the time of each call only as originalTimestamp (never timestamp); one
// call is backdated an hour through it, as an app replaying a queue of old events would.
import Analytics from '@rudderstack/rudder-sdk-node'

const config = JSON.parse(process.argv[2])
const runId = config.runId ?? Date.now().toString(36)
const userId = `rudder-user-${runId}`
const anonymousId = `rudder-anon-${runId}`
const anHourAgo = new Date(Date.now() - 3600 * 1000)

const calls = [
  ['identify', { userId, traits: { email: 'ada@example.com', plan: 'pro' } }],
  ['track', { userId, event: 'Order Completed', properties: { order_id: `o-${runId}`, revenue: 42.5 } }],
  ['track', { anonymousId, event: 'Backdated', properties: { n: 1 }, originalTimestamp: anHourAgo }],
  ['page', { userId, category: 'Docs', name: 'Install', properties: { path: '/docs/install' } }],
  ['screen', { userId, name: 'Settings', properties: { tab: 'privacy' } }],
  ['group', { userId, groupId: `g-${runId}`, traits: { name: 'Acme' } }],
  ['alias', { userId, previousId: anonymousId }],
]

const errors = []
const client = new Analytics(config.writeKey, {
  dataPlaneUrl: config.host,
  flushAt: calls.length,
  // Few retries, so a broken server fails the test fast instead of backing off.
  retryCount: 1,
  errorHandler: (err) => errors.push(String(err?.response?.status ?? err?.message ?? err)),
  logLevel: 'error',
})

const sent = calls.map(
  ([method, params]) =>
    new Promise((resolve) => {
      client[method](params, (err, data) => {
        if (err) errors.push(`${method}: ${err.message ?? err}`)
        resolve(null)
      })
    }),
)
await client.flush()
await Promise.race([Promise.all(sent), new Promise((resolve) => setTimeout(resolve, 20000))])

console.log(JSON.stringify({ runId, userId, anonymousId, backdated: anHourAgo.toISOString(), errors }, null, 2))
process.exit(errors.length ? 1 : 0)
