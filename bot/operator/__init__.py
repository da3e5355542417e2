"""The operator's side: the read model, terminal views, health, checks, export, web."""
