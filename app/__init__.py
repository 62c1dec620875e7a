"""The chat app: `ChatService` (no UI) and its thin Gradio layer."""
