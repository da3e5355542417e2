"""The incident dossier: `rootnotify export` as Markdown, JSON, CSV, or a zip with the raw mail."""

from bot.export.archive import write_archive
from bot.export.writers import FORMATS, write_format

__all__ = ["FORMATS", "write_archive", "write_format"]
