"""Attached certificate lists (CSV, text, PEM, DER, PKCS#7, CRL) to typed records."""
