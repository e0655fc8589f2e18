"""Real-time streaming: live sessions, the server and adapters."""
