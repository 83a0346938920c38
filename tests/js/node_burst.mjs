// A burst from the official @segment/analytics-node SDK with its default settings:
// COUNT track calls at once, which it sends as many concurrent batches of 15.
// Prints the status of every batch request and the SDK's errors as JSON on stdout.
//
// Usage: node node_burst.mjs '{"host": "http://127.0.0.1:PORT", "writeKey": "KEY", "count": 2000}'
import { Analytics } from '@segment/analytics-node'

const config = JSON.parse(process.argv[2])
const analytics = new Analytics({ writeKey: config.writeKey, host: config.host })
const statuses = {}
const errors = []
analytics.on('http_response', (res) => {
  statuses[res.status] = (statuses[res.status] ?? 0) + 1
})
analytics.on('error', (err) => errors.push(String(err.reason?.message ?? err.reason ?? err.code)))
for (let i = 0; i < config.count; i++) {
  analytics.track({ userId: `burst-${i % 50}`, event: 'Burst', properties: { i } })
}
await analytics.closeAndFlush({ timeout: 60000 })
console.log(JSON.stringify({ statuses, errors }))
