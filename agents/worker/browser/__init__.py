"""Browser tasks: a per-worker pool of headless Chromium contexts driven over the DevTools
protocol (a pipe, no port), and the attempt that runs a test page or module in one."""
