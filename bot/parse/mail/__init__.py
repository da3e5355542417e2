"""Raw RFC 5322 bytes to a typed message: MIME, large parts, archives, limits."""
