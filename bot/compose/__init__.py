"""Every mail the bot sends, from what was decided to a rendered template."""
