"""`edge-xemo serve`: the analyzer behind a local port (kiosk page, WebSocket, Server-Sent Events,
Prometheus metrics) and a ROS 2 bridge. Needs the `serve` extra; nothing here is on the analysis path."""
