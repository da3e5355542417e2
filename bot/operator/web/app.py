"""The web view as a Starlette application: routes, the sign-in gate, HTML or JSON answers.

Every page reads through the read model the command line uses
(`bot/operator/views.py`), so `Accept: application/json` answers with exactly the
shapes of `incidents --json`, `show ID --json`, `quarantine --json` and
`status --json`. The only POSTs are the sign-in's and sign-out's, each
checked against a CSRF token; commands stay signed mail (`mailto:` links).
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from bot.context import Context
from bot.operator.web import auth, pages
from storage import queries, websignin
from storage.models import WebSession

log = logging.getLogger("rootnotify.web")

SESSION_COOKIE = "rn_session"
# The CSRF token of the sign-in forms, before there is a session (double submit).
LOGIN_CSRF_COOKIE = "rn_login_csrf"
# Long enough to read the sign-in mail and press the button, as the link's lifetime allows.
LOGIN_CSRF_SECONDS = 3600
PUBLIC_PATHS = ("/login", "/healthz")
SIGN_INS_SHOWN = 200
EXPORT_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json",
                "csv": "text/csv; charset=utf-8"}


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/login/")


class StaffOnly(BaseHTTPMiddleware):
    """Without a live session every page but /login, /login/… and /healthz is refused."""

    def __init__(self, app: Any, ctx: Context) -> None:
        super().__init__(app)
        self.ctx = ctx

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        staff = await run_in_threadpool(auth.session_for, self.ctx, cookie) if cookie else None
        request.state.staff = staff
        if staff is None and not _public(request.url.path):
            if wants_json(request):
                return JSONResponse({"error": "sign in first"}, status_code=401)
            return RedirectResponse("/login", status_code=303)
        return await call_next(request)


class Web:
    """The pages; each reads the database in a worker thread (Starlette runs sync ones so)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tz = ctx.config.bot.timezone
        self.env = ctx.renderer.env.overlay()
        self.env.filters["local"] = lambda value: pages.local(value, self.tz)
        self.env.filters["verdict"] = pages.verdict
        self.env.filters["label"] = pages.label

    # ------------------------------------------------------------ answers

    def html(self, request: Request, template: str, title: str, status_code: int = 200,
             **values: Any) -> HTMLResponse:
        staff: WebSession | None = getattr(request.state, "staff", None)
        text = self.env.get_template(f"web/{template}").render(
            title=title, staff=staff, csrf=staff.csrf if staff else values.pop("csrf", ""),
            program_name=self.ctx.program_name, zone=getattr(self.tz, "key", str(self.tz)),
            **values)
        return HTMLResponse(text, status_code=status_code,
                            headers={"Content-Security-Policy": "default-src 'none'; "
                                     "style-src 'unsafe-inline'; form-action 'self'",
                                     "X-Frame-Options": "DENY",
                                     "Referrer-Policy": "no-referrer"})

    def either(self, request: Request, answer: Any, template: str, title: str,
               **values: Any) -> Response:
        """JSON (the command line's shape) when asked for, else the page."""
        if wants_json(request):
            return JSONResponse(answer)
        return self.html(request, template, title, **values)

    def not_found(self, request: Request, text: str) -> Response:
        if wants_json(request):
            return JSONResponse({"error": text}, status_code=404)
        return self.html(request, "message.html.j2", "Not found", status_code=404, text=text,
                         link="/incidents", link_text="The board")

    def _cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                            secure=self.ctx.config.web.secure, path="/")

    def _csrf_ok(self, request: Request, form: Any) -> bool:
        staff: WebSession | None = request.state.staff
        expected = staff.csrf if staff else request.cookies.get(LOGIN_CSRF_COOKIE)
        return auth.same(form.get("csrf"), expected)

    def _csrf_refused(self, request: Request) -> Response:
        log.warning("POST %s from %s refused: CSRF token missing or wrong", request.url.path,
                    _client(request))
        return self.html(request, "message.html.j2", "Refused", status_code=403,
                         text="This form was not sent from this site's own page "
                              "(CSRF check failed). Reload the page and try again.",
                         link="/login", link_text="Sign in")

    def _login_csrf(self, request: Request) -> str:
        return request.cookies.get(LOGIN_CSRF_COOKIE) or auth.new_secret()

    # ------------------------------------------------------------ sign-in

    def healthz(self, request: Request) -> Response:
        from bot.operator.health import health

        # Public, for a monitor: the reasons are for staff, at /status.
        if health(self.ctx)["needs_attention"]:
            return PlainTextResponse("needs attention", status_code=503)
        return PlainTextResponse("ok")

    def login_form(self, request: Request, notice: str = "", status_code: int = 200
                   ) -> Response:
        csrf = self._login_csrf(request)
        response = self.html(request, "login.html.j2", "Sign in", status_code=status_code,
                             csrf=csrf, notice=notice)
        self._cookie(response, LOGIN_CSRF_COOKIE, csrf, LOGIN_CSRF_SECONDS)
        return response

    def login_get(self, request: Request) -> Response:
        return self.login_form(request)

    async def login_post(self, request: Request) -> Response:
        form = await request.form()
        if not self._csrf_ok(request, form):
            return self._csrf_refused(request)
        address = str(form.get("address") or "")
        sent = await run_in_threadpool(auth.request_link, self.ctx, address, _client(request))
        if not sent:
            return self.login_form(request, "Too many sign-in requests; try again in an hour.",
                                   status_code=429)
        return self.login_form(request, "If that is a staff address, a sign-in link is on its "
                                        "way; it works once, for 15 minutes.")

    def link_get(self, request: Request) -> Response:
        # Changes nothing, whoever opens it: a mail scanner fetching the link
        # must neither use the token up nor sign in.
        token = request.path_params["token"]
        csrf = self._login_csrf(request)
        response = self.html(request, "link.html.j2", "Sign in", csrf=csrf, token=token,
                             usable=auth.link_usable(self.ctx, token))
        self._cookie(response, LOGIN_CSRF_COOKIE, csrf, LOGIN_CSRF_SECONDS)
        return response

    async def link_post(self, request: Request) -> Response:
        form = await request.form()
        if not self._csrf_ok(request, form):
            return self._csrf_refused(request)
        try:
            signed = await run_in_threadpool(auth.sign_in, self.ctx,
                                             request.path_params["token"], _client(request),
                                             request.headers.get("user-agent", "")[:300])
        except auth.TooManyAttempts:
            return self.html(request, "message.html.j2", "Refused", status_code=429,
                             text="Too many sign-in attempts from here; try again in an hour.")
        if signed is None:
            return self.html(request, "link.html.j2", "Sign in", status_code=403, usable=False,
                             token="")
        response = RedirectResponse("/incidents", status_code=303)
        self._cookie(response, SESSION_COOKIE, signed.session_id,
                     int(auth.SESSION_LIFETIME.total_seconds()))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if not self._csrf_ok(request, form):
            return self._csrf_refused(request)
        await run_in_threadpool(auth.sign_out, self.ctx, request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------ pages

    def board(self, request: Request) -> Response:
        from bot.operator.views import filter_incidents, incidents_json

        p = request.query_params
        ca = p.get("ca") or None
        only_open, overdue = p.get("open") == "1", p.get("overdue") == "1"
        if wants_json(request):
            with self.ctx.db.read() as session:
                rows = incidents_json(session, self.ctx.clock.now())
            return JSONResponse(filter_incidents(rows, only_open=only_open, overdue=overdue,
                                                 ca=ca))
        sort = p.get("sort") if p.get("sort") in pages.BOARD_SORTS else pages.DEFAULT_SORT
        desc = p.get("desc") == "1"

        def query(**changes: str) -> str:
            from urllib.parse import urlencode

            values = {"open": "1" if only_open else "", "overdue": "1" if overdue else "",
                      "ca": ca or "", "sort": sort, "desc": "1" if desc else "", **changes}
            return urlencode({k: v for k, v in values.items() if v})

        page = int(p["page"]) if p.get("page", "").isdigit() else 1
        with self.ctx.db.read() as session:
            shown = pages.board(session, self.ctx.clock.now(), only_open=only_open,
                                overdue=overdue, ca=ca, sort=sort, descending=desc, page=page,
                                size=pages.BOARD_PAGE_SIZE)
        return self.html(request, "board.html.j2", "Incidents", rows=shown.rows,
                         total=shown.total, page=shown.page, pages=shown.pages, sort=sort,
                         desc=desc, only_open=only_open, overdue=overdue, ca=ca, query=query,
                         cas=[c.name for c in self.ctx.config.cas])

    def incident(self, request: Request) -> Response:
        from bot.operator.views import incident_json

        incident_id = request.path_params["incident_id"]
        q = request.query_params.get("q", "")
        with self.ctx.db.read() as session:
            incident = queries.incident(session, incident_id)
            if incident is None:
                return self.not_found(request, f"no incident {incident_id}")
            data = incident_json(session, incident, self.ctx.clock.now())
            search = pages.certificate_search(session, q, incident.id) if q else None
        if wants_json(request):
            return JSONResponse(data)
        return self.html(request, "incident.html.j2", data["id"], i=data, q=q, search=search,
                         actions=pages.actions(data["id"], self.ctx.config.bot.address,
                                               self.ctx.clock.now(), self.tz))

    def raw_message(self, request: Request) -> Response:
        incident_id = request.path_params["incident_id"].strip().upper()
        name = request.path_params["name"]
        outbound = name.startswith("out-")
        number = name.removeprefix("out-")
        if not number.isdigit():
            return self.not_found(request, f"no message {name}.eml")
        with self.ctx.db.read() as session:
            if outbound:
                row = queries.outbound_by_ids(session, [int(number)]).get(int(number))
                data = row.data if row is not None and row.incident_id == incident_id else None
            else:
                found = queries.inbound_by_ids(session, [int(number)]).get(int(number))
                data = (queries.raw_inbound(session, int(number))
                        if found is not None and found.incident_id == incident_id else None)
        if data is None:
            return self.not_found(request, f"no message {name}.eml in {incident_id}")
        # As a download, never rendered: the bytes are a stranger's.
        return Response(bytes(data), media_type="message/rfc822", headers={
            "Content-Disposition": f'attachment; filename="{incident_id}-{name}.eml"',
            "X-Content-Type-Options": "nosniff"})

    def export(self, request: Request) -> Response:
        from bot.operator.export import write_format

        fmt = request.query_params.get("format", "md")
        if fmt not in EXPORT_TYPES:
            return PlainTextResponse(f"format must be one of {', '.join(EXPORT_TYPES)}",
                                     status_code=400)
        incident_id = request.path_params["incident_id"]
        out = io.StringIO()
        with self.ctx.db.read() as session:
            incident = queries.incident(session, incident_id)
            if incident is None:
                return self.not_found(request, f"no incident {incident_id}")
            write_format(session, self.ctx, incident, fmt, out)
        return Response(out.getvalue(), media_type=EXPORT_TYPES[fmt], headers={
            "Content-Disposition": f'attachment; filename="{incident.id}.{fmt}"'})

    def deadlines(self, request: Request) -> Response:
        now = self.ctx.clock.now()
        with self.ctx.db.read() as session:
            rows = pages.deadlines(session, now, self.tz)
        overdue, week, later = pages.by_week(rows, now, self.tz)
        return self.either(request, rows, "deadlines.html.j2", "Open deadlines",
                           overdue=overdue, week=week, later=later)

    def certificates(self, request: Request) -> Response:
        q = request.query_params.get("q", "")
        with self.ctx.db.read() as session:
            search = pages.certificate_search(session, q) if q else None
        return self.either(request, search, "certificates.html.j2", "Certificate search",
                           q=q, search=search)

    def quarantine(self, request: Request) -> Response:
        from bot.operator.views import quarantine_json

        with self.ctx.db.read() as session:
            rows = quarantine_json(session)
        return self.either(request, rows, "quarantine.html.j2", "Quarantine", rows=rows)

    def status(self, request: Request) -> Response:
        from bot.operator.health import health

        data = health(self.ctx)
        return self.either(request, data, "status.html.j2", "Status", data=data,
                           pretty=json.dumps(data, indent=2, ensure_ascii=False))

    def sign_ins(self, request: Request) -> Response:
        from bot.clock import iso

        with self.ctx.db.read() as session:
            rows = [{"address": r.address, "at": iso(r.at), "client": r.client,
                     "user_agent": r.user_agent}
                    for r in websignin.sign_ins(session, SIGN_INS_SHOWN)]
        return self.either(request, rows, "sign-ins.html.j2", "Sign-ins", rows=rows)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def make_app(ctx: Context) -> Starlette:
    web = Web(ctx)
    routes = [
        Route("/", lambda request: RedirectResponse("/incidents", status_code=303)),
        Route("/healthz", web.healthz),
        Route("/login", web.login_get, methods=["GET"]),
        Route("/login", web.login_post, methods=["POST"]),
        Route("/login/{token}", web.link_get, methods=["GET"]),
        Route("/login/{token}", web.link_post, methods=["POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        Route("/incidents", web.board),
        Route("/incidents/{incident_id}", web.incident),
        Route("/incidents/{incident_id}/messages/{name}.eml", web.raw_message),
        Route("/incidents/{incident_id}/export", web.export),
        Route("/deadlines", web.deadlines),
        Route("/certificates", web.certificates),
        Route("/quarantine", web.quarantine),
        Route("/status", web.status),
        Route("/sign-ins", web.sign_ins),
    ]
    return Starlette(routes=routes, middleware=[Middleware(StaffOnly, ctx=ctx)])
