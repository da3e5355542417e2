"""rootnotify: the bot behind a root program's security-incident mailbox."""

__version__ = "0.1.0"
