// Entry for the browser bundle used by tests/sdk/test_browser_sdk.py.
// esbuild bundles this as one IIFE without code splitting, so every dynamic
// import() inside @segment/analytics-next is inlined: the test page must never
// try to fetch a chunk from cdn.segment.com (unreachable here).
import { AnalyticsBrowser } from '@segment/analytics-next'

window.AnalyticsBrowser = AnalyticsBrowser
