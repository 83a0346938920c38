// Entry for the browser bundle used by tests/sdk/test_browser_sdk.py and
// tests/sdk/test_rudderstack_sdks.py. esbuild bundles this as one IIFE without code
// splitting, so every dynamic import() inside @segment/analytics-next is inlined: the test
// page must never try to fetch a chunk from cdn.segment.com (unreachable here). RudderStack's
// "bundled" build carries its plugins (XhrQueue...) inside, for the same reason: its default
// build loads them from cdn.rudderlabs.com.
import { AnalyticsBrowser } from '@segment/analytics-next'
import { RudderAnalytics } from '@rudderstack/analytics-js/bundled'

window.AnalyticsBrowser = AnalyticsBrowser
window.RudderAnalytics = RudderAnalytics
