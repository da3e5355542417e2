"""Jinja2 templates of every mail rootnotify sends, and the blank form."""
