"""The staff web view: the incident board in a browser (read-only; commands stay mail).

`app.py` builds the Starlette application, `auth.py` is the sign-in by
mailed one-time link, `pages.py` shapes what the pages show beyond the
shared read model (`bot/operator/views.py`), `server.py` runs it on uvicorn.
Templates are under `mailtemplates/web/`, beside the mail templates, so an
operator's `[bot] templates_dir` overrides them the same way.
"""
