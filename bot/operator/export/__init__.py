"""The incident dossier: `rootnotify export` as Markdown, JSON, CSV, or a zip with the raw mail."""

from bot.operator.export.archive import write_archive
from bot.operator.export.writers import FORMATS, write_format

__all__ = ["FORMATS", "write_archive", "write_format"]
