"""Gradio tabs (image helpers, compare, video, feedback). `app.py` assembles them; the core never imports ui."""
