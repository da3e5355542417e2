"""Taking mail in: SMTP, IMAP and files. Store durably, decide nothing."""
