"""The IMAP poller: connect, fetch a batch, store it durably, move it aside."""
