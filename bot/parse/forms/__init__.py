"""The notification form, documents (.docx, PDF, HTML) and final reports, read."""
