"""The program's rules and the mail-hygiene rules, as data."""
