"""The read-only status page on the metrics port: settings, per-stream board, routes (docs/web.md)."""
