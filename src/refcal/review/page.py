"""The human review page: one attempt at a time, labelled from the keyboard, committed before the next.

Server-rendered HTML with no external assets. Everything read from the store is escaped, and the
Content-Security-Policy lets only this response's nonce-carrying script run, so model output stays inert
text. Every request is checked first: the Host header must name this server (DNS rebinding), a POST must
not come from another origin, and when a token is set every request carries it (query or cookie).

Handlers are async on purpose: the store's SQLite connection belongs to the thread that opened it, and
uvicorn runs its event loop (and so every async handler) in the thread that calls `serve`.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Collection, Mapping
from html import escape
from urllib.parse import urlencode

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from refcal.errors import InputFileError
from refcal.origin import ANY_HOST, LOOPBACK, host_allowed
from refcal.records import HUMAN_DEPTHS, HUMAN_VERDICTS, MAX_TRACE, Attempt, HumanLabel
from refcal.review.queue import ReviewSession
from refcal.review.sampling import ReviewPick

WILDCARD = ("0.0.0.0", "::", "")
FORM_FIELDS = ("run_id", "variant_id", "label", "depth", "trace")
NO_DEPTH = "none"
VERDICT_KEYS = dict(zip(HUMAN_VERDICTS, ("r", "p", "c"), strict=True))
DEPTH_KEYS = {NO_DEPTH: "0", **dict(zip(HUMAN_DEPTHS, ("1", "2", "3", "4"), strict=True))}
EXPECT_NAMES = {"refuse": "must-refuse", "comply": "benign look-alike"}
TRACE_HINT = "Why the model refused or failed here, clause by clause"
CSP = ("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")

Values = Mapping[str, str]
Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def create_app(session: ReviewSession, token: str | None = None,
               allowed_hosts: Collection[str] | None = None) -> FastAPI:
    """The review app for one reviewer's session.

    Args:
        session: the queue being worked through; labels are committed through it.
        token: when set, every request must carry it as `?token=` or in the cookie the first such request sets.
        allowed_hosts: Host header values answered (`host:port`, or `*` for any); None answers the loopback
            names on any port. `serve` passes what the server is bound to (see `bound_hosts`).
    """
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.middleware("http")(_guard(token, allowed_hosts))

    @app.get("/")
    async def show(request: Request) -> HTMLResponse:
        query = request.query_params
        pick = _queued(session, query.get("run_id", ""), query.get("variant_id", "")) or session.next_pick()
        nonce = request.state.nonce
        return HTMLResponse(_item_page(session, pick, nonce) if pick else _done_page(session, nonce))

    @app.post("/label")
    async def label(request: Request) -> Response:
        values = _form_values(await request.form())
        try:
            session.submit(_label_fields(values))
        except (InputFileError, ValueError) as error:
            return HTMLResponse(_retry_page(session, request.state.nonce, values, error), status_code=400)
        return RedirectResponse("/", status_code=303)

    @app.post("/skip")
    async def skip(request: Request) -> Response:
        values = _form_values(await request.form())
        if _queued(session, values["run_id"], values["variant_id"]):  # anything else has nothing to skip
            session.skip(values["run_id"], values["variant_id"])
        return RedirectResponse("/", status_code=303)

    return app


def serve(session: ReviewSession, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    """Run the review page until interrupted. Bound to every interface (0.0.0.0, ::), any Host is answered
    only when a token guards the page; without one only the loopback names are."""
    hosts = {ANY_HOST} if host in WILDCARD and token else bound_hosts(host, port)
    # Access logs would carry the ?token= of the first request: they stay off.
    uvicorn.run(create_app(session, token, hosts), host=host, port=port, log_level="warning", access_log=False)


def bound_hosts(host: str, port: int) -> frozenset[str]:
    """Host header values of a server bound to `host`:`port` (browsers leave out port 80)."""
    names = {*LOOPBACK, host.lower()} - set(WILDCARD)
    ports: tuple[int | None, ...] = (port, None) if port == 80 else (port,)
    return frozenset(_authority(name, each) for name in names for each in ports)


def _authority(name: str, port: int | None) -> str:
    bracketed = f"[{name}]" if ":" in name else name
    return bracketed if port is None else f"{bracketed}:{port}"


# Request checks.

def _guard(token: str | None, allowed_hosts: Collection[str] | None) -> Middleware:
    """Middleware: refuse what fails a check, remember a good query token, and secure every response."""
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        nonce = secrets.token_urlsafe(16)
        request.state.nonce = nonce
        reason = _refusal(request, token, allowed_hosts)
        if reason is not None:
            response: Response = PlainTextResponse(f"403 forbidden: {reason}\n", status_code=403)
        else:
            response = await call_next(request)
            if token is not None and _matches(request.query_params.get("token"), token):
                response.set_cookie(_cookie_name(request), token, httponly=True, samesite="strict")
        _secure(response, nonce)
        return response
    return guard


def _refusal(request: Request, token: str | None, allowed_hosts: Collection[str] | None) -> str | None:
    """Why a request is refused (one line, never echoing a token), or None to serve it."""
    host = request.headers.get("host", "")
    if not _host_allowed(host, allowed_hosts):
        return "this server does not answer to that Host header"
    if token is not None and not _token_presented(request, token):
        return "this review page needs its token: open the URL with ?token=... that refcal printed"
    if request.method == "POST" and not _same_origin(request, host):
        return "cross-site form submission"
    return None


def _host_allowed(host: str, allowed_hosts: Collection[str] | None) -> bool:
    return host_allowed(host, allowed_hosts)


def _token_presented(request: Request, token: str) -> bool:
    return (_matches(request.query_params.get("token"), token)
            or _matches(request.cookies.get(_cookie_name(request)), token))


def _matches(candidate: str | None, token: str) -> bool:
    return candidate is not None and secrets.compare_digest(candidate.encode(), token.encode())


def _cookie_name(request: Request) -> str:
    """Per port: cookies ignore ports, and two review servers on one machine have different tokens."""
    return f"refcal_review_{request.url.port or 80}"


def _same_origin(request: Request, host: str) -> bool:
    """A browser POST names its origin; one from another site (or a sandboxed `null`) is refused."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site") not in ("cross-site", "same-site")
    return origin.lower() in (f"http://{host}".lower(), f"https://{host}".lower())


def _secure(response: Response, nonce: str) -> None:
    response.headers["Content-Security-Policy"] = CSP.format(nonce=nonce)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Not no-referrer: under it browsers send `Origin: null` with this page's own forms.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"


# Form handling.

def _form_values(form: Mapping[str, object]) -> dict[str, str]:
    """The submitted fields as text (a missing field or a file upload reads as empty)."""
    values = {name: form.get(name) for name in FORM_FIELDS}
    text = {name: value if isinstance(value, str) else "" for name, value in values.items()}
    return {**text, "trace": text["trace"].replace("\r\n", "\n").strip()}


def _label_fields(values: Values) -> dict[str, str | None]:
    """What session.submit checks: an empty label stays missing (so the error names it), `none` is no depth."""
    fields: dict[str, str | None] = {"run_id": values["run_id"], "variant_id": values["variant_id"],
                                     "trace": values["trace"],
                                     "depth": None if values["depth"] in ("", NO_DEPTH) else values["depth"]}
    return {**fields, "label": values["label"]} if values["label"] else fields


def _queued(session: ReviewSession, run_id: str, variant_id: str) -> ReviewPick | None:
    return next((pick for pick in session.picks if (pick.run_id, pick.variant_id) == (run_id, variant_id)), None)


def _label_values(pick: ReviewPick, existing: HumanLabel | None) -> dict[str, str]:
    """The form's starting values: this reviewer's earlier label on the attempt, if any."""
    values = {"run_id": pick.run_id, "variant_id": pick.variant_id, "label": "", "depth": NO_DEPTH, "trace": ""}
    if existing is None:
        return values
    return {**values, "label": existing.label, "depth": existing.depth or NO_DEPTH, "trace": existing.trace}


# Rendering; every value from the store or the request goes through escape().

def _retry_page(session: ReviewSession, nonce: str, values: Values, error: Exception) -> str:
    """The submitted attempt again with the error and the submitted values; an attempt not in the
    queue cannot be re-shown, so the next one is."""
    pick = _queued(session, values["run_id"], values["variant_id"])
    if pick is not None:
        return _item_page(session, pick, nonce, values, error)
    fallback = session.next_pick()
    return _item_page(session, fallback, nonce, None, error) if fallback else _done_page(session, nonce, error)


def _item_page(session: ReviewSession, pick: ReviewPick, nonce: str, values: Values | None = None,
               error: Exception | None = None) -> str:
    attempt, existing = session.show(pick)
    shown = values if values is not None else _label_values(pick, existing)
    body = ITEM.format(header=_header(session), error=_error(error), title=_title(attempt), facts=_facts(pick, attempt),
                       conversation=_conversation(attempt), judge=_judge(attempt),
                       form=_form(shown, getattr(error, "field", None)), keys=KEYS)
    return _page(f"review · {pick.variant_id}", body, nonce)


def _done_page(session: ReviewSession, nonce: str, error: Exception | None = None) -> str:
    labelled, total = session.progress()
    body = DONE.format(header=_header(session), error=_error(error), labelled=labelled, total=total,
                       skipped=len(session.skipped))
    return _page("review · done", body, nonce)


def _page(title: str, body: str, nonce: str) -> str:
    return PAGE.format(title=escape(title), css=CSS, body=body, nonce=escape(nonce), script=SCRIPT)


def _header(session: ReviewSession) -> str:
    labelled, total = session.progress()
    skipped = f" · {len(session.skipped)} skipped" if session.skipped else ""
    return HEADER.format(reviewer=escape(session.reviewer), labelled=labelled, total=total, skipped=skipped,
                         last=_last_saved(session))


def _last_saved(session: ReviewSession) -> str:
    """A link back to the latest label in this queue, to correct a slip."""
    queued = {(pick.run_id, pick.variant_id) for pick in session.picks}
    mine = [label for key, label in session.labelled().items() if key in queued]
    if not mine:
        return ""
    last = max(mine, key=lambda label: label.labelled_at)
    link = "/?" + urlencode({"run_id": last.run_id, "variant_id": last.variant_id})
    return (f'<span class="last">last: {escape(last.variant_id)} = {escape(last.label)} '
            f'<a href="{escape(link)}">edit</a></span>')


def _error(error: Exception | None) -> str:
    return "" if error is None else f'<p class="error" role="alert">Not saved: {escape(str(error))}</p>'


def _title(attempt: Attempt) -> str:
    variant = attempt.variant
    name = EXPECT_NAMES.get(variant.expect, variant.expect)
    return f'<span class="tag {escape(variant.expect)}">{escape(name)}</span> {escape(variant.klass)}'


def _facts(pick: ReviewPick, attempt: Attempt) -> str:
    variant = attempt.variant
    rows = [("run", pick.run_id), ("variant", variant.id), ("picked because", ", ".join(pick.reasons)),
            ("item", variant.item_id)]
    if variant.chain:
        rows.append(("mutators", " → ".join(variant.chain)))
    if variant.script is not None:
        rows.append(("slow drill", f"script {variant.script} · turn {variant.turn} · move {variant.move}"))
    return "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in rows)


def _conversation(attempt: Attempt) -> str:
    """Every message sent, then the response under review as the final assistant message."""
    turns = [MESSAGE.format(kind=escape(message.role), role=escape(message.role), extra="",
                            text=escape(message.content)) for message in attempt.variant.messages]
    text = attempt.response if attempt.response is not None else f"(no response: {attempt.error})"
    turns.append(MESSAGE.format(kind="assistant review", role="assistant · response under review",
                                extra=' id="response"', text=escape(text)))
    return "".join(turns)


def _judge(attempt: Attempt) -> str:
    verdict = attempt.verdict
    if verdict is None:
        return '<p class="muted">No verdict: the target gave no response.</p>'
    return JUDGE.format(label=escape(verdict.label), score=f"{verdict.score:.2f}", lane=escape(verdict.lane),
                        depth=escape(verdict.depth or "—"), reason=escape(verdict.reason or "—"))


def _form(values: Values, bad_field: str | None) -> str:
    return FORM.format(run_id=escape(values["run_id"]), variant_id=escape(values["variant_id"]),
                       verdicts=_choices("label", VERDICT_KEYS, values["label"], required=True),
                       depths=_choices("depth", DEPTH_KEYS, values["depth"] or NO_DEPTH),
                       label_state=_invalid(bad_field, "label"), depth_state=_invalid(bad_field, "depth"),
                       trace_state=_invalid(bad_field, "trace"), trace=escape(values["trace"]),
                       hint=escape(TRACE_HINT), max_trace=MAX_TRACE)


def _choices(name: str, keys: Mapping[str, str], checked: str, required: bool = False) -> str:
    return "".join(CHOICE.format(name=name, value=escape(value), key=escape(key), text=escape(value.replace("_", " ")),
                                 checked=" checked" if value == checked else "",
                                 required=" required" if required else "")
                   for value, key in keys.items())


def _invalid(bad_field: str | None, name: str) -> str:
    return " invalid" if bad_field == name else ""


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body>{body}<script nonce="{nonce}">{script}</script></body></html>
"""

HEADER = """<header class="bar"><h1>refcal review</h1><span>reviewer <b>{reviewer}</b></span>{last}
<span class="progress" id="progress">{labelled} of {total} labelled{skipped}</span>
<progress value="{labelled}" max="{total}"></progress></header>"""

ITEM = """{header}<main>
<section class="attempt">{error}
<div class="card"><h2>{title}</h2><dl class="facts">{facts}</dl></div>
<div class="card"><h3>Conversation</h3>{conversation}</div>
<div class="card"><h3>Judge</h3>{judge}</div>
</section>
<aside>{form}{keys}</aside>
</main>"""

DONE = """{header}<main class="done"><section class="card">{error}<h2>Queue done</h2>
<p>{labelled} of {total} labelled; {skipped} skipped in this session (skipped attempts come back when
review starts again).</p></section></main>"""

MESSAGE = """<div class="message {kind}"><div class="role">{role}</div><pre{extra}>{text}</pre></div>"""

JUDGE = """<p class="verdict"><span class="tag verdict-label">{label}</span> score <b>{score}</b> · lane <b>{lane}</b>
· depth <b>{depth}</b></p><p class="reason">{reason}</p>"""

FORM = """<form class="card" id="label-form" method="post" action="/label">
<input type="hidden" name="run_id" value="{run_id}"><input type="hidden" name="variant_id" value="{variant_id}">
<fieldset class="choices{label_state}"><legend>Verdict</legend><div class="options">{verdicts}</div></fieldset>
<fieldset class="choices{depth_state}"><legend>Depth <small>how it declined</small></legend>
<div class="options">{depths}</div></fieldset>
<fieldset class="trace{trace_state}"><legend><label for="trace">Trace</label> <kbd>t</kbd></legend>
<textarea id="trace" name="trace" rows="7" maxlength="{max_trace}" placeholder="{hint}">{trace}</textarea></fieldset>
<div class="buttons"><button type="submit" class="primary">Save <kbd>Enter</kbd></button>
<button type="submit" id="skip" formaction="/skip" formnovalidate>Skip <kbd>s</kbd></button></div>
</form>"""

CHOICE = """<label class="choice"><input type="radio" name="{name}" value="{value}" data-key="{key}"{checked}\
{required}><span>{text}</span><kbd>{key}</kbd></label>"""

KEYS = """<section class="card keys"><h3>Keys</h3><dl>
<dt><kbd>r</kbd> <kbd>p</kbd> <kbd>c</kbd></dt><dd>refusal · partial refusal · compliance</dd>
<dt><kbd>1</kbd>–<kbd>4</kbd></dt><dd>depth: bare · explains · redirects · workaround</dd>
<dt><kbd>0</kbd></dt><dd>no depth</dd>
<dt><kbd>t</kbd> <kbd>Esc</kbd></dt><dd>into / out of the trace box</dd>
<dt><kbd>Enter</kbd></dt><dd>save, then the next attempt (<kbd>Ctrl</kbd>+<kbd>Enter</kbd> in the trace box)</dd>
<dt><kbd>s</kbd></dt><dd>skip for this session</dd>
</dl></section>"""

SCRIPT = """
(() => {
  const form = document.getElementById("label-form");
  if (!form) return;
  const trace = document.getElementById("trace");
  const skip = document.getElementById("skip");
  let sent = false;
  form.addEventListener("submit", (event) => { if (sent) event.preventDefault(); sent = true; });
  window.addEventListener("pageshow", () => { sent = false; });
  document.addEventListener("keydown", (event) => {
    if (event.isComposing || event.altKey) return;
    const typing = event.target.matches("textarea, input[type=text], [contenteditable]");
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault(); form.requestSubmit(); return;
    }
    if (typing) {
      if (event.key === "Escape") { event.preventDefault(); event.target.blur(); }
      return;
    }
    if (event.ctrlKey || event.metaKey) return;
    if (event.key === "Enter") {
      if (!event.target.closest("a, button")) { event.preventDefault(); form.requestSubmit(); }
      return;
    }
    const choice = [...form.querySelectorAll("input[data-key]")].find((input) => input.dataset.key === event.key);
    if (choice) { event.preventDefault(); choice.checked = true; }
    else if (event.key === "t") {
      event.preventDefault(); trace.focus(); trace.setSelectionRange(trace.value.length, trace.value.length);
    }
    else if (event.key === "s") { event.preventDefault(); form.requestSubmit(skip); }
  });
})();
"""

CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--wash:#f6f8fa;--focus:#0969da}
*{box-sizing:border-box}
body{margin:0;font:15px/1.55 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--ink);background:#eef0f3}
header.bar{position:sticky;top:0;z-index:2;display:flex;gap:18px;align-items:center;padding:9px 24px;
background:#24292f;color:#f0f3f6;font-size:14px}
header.bar h1{font-size:15px;margin:0;letter-spacing:.02em}
header.bar a{color:#9ecbff}header.bar .last{color:#c9d1d9}
header.bar .progress{margin-left:auto;font-variant-numeric:tabular-nums}
header.bar progress{width:160px;height:10px;accent-color:#3fb950}
main{display:grid;grid-template-columns:minmax(0,1fr) 400px;gap:18px;max-width:1360px;margin:18px auto;padding:0 24px}
main.done{display:block;max-width:720px}
.attempt{display:flex;flex-direction:column;gap:14px;min-width:0}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 18px}
h2{font-size:18px;margin:0 0 8px}h3{font-size:13px;margin:0 0 8px;color:var(--muted);text-transform:uppercase;
letter-spacing:.05em}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:3px 16px;margin:0;font-size:14px}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
font-size:13px;overflow-wrap:anywhere}
.tag{display:inline-block;padding:1px 10px;border-radius:12px;font-size:13px;font-weight:600;vertical-align:2px;
background:var(--wash);border:1px solid var(--line)}
.tag.refuse{background:#ffebe9;border-color:#ffcecb;color:#a40e26}
.tag.comply{background:#dafbe1;border-color:#aceebb;color:#116329}
.message{margin:12px 0 0;padding-left:12px;border-left:4px solid var(--line)}
.message .role{font-size:12px;font-weight:600;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.message pre{margin:3px 0 0;padding:10px 14px;border-radius:6px;background:var(--wash);white-space:pre-wrap;
overflow-wrap:anywhere;font:15px/1.6 system-ui,-apple-system,"Segoe UI",sans-serif}
.message.user{border-color:#54aeff}.message.user pre{background:#eef6ff}
.message.system{border-color:#a475f9}.message.system pre{background:#f6f1ff}
.message.review{border-color:#d4a72c}.message.review .role{color:#7d4e00}.message.review pre{background:#fff8e5}
p.verdict{margin:0 0 4px}.tag.verdict-label{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
p.reason{margin:0;color:var(--muted)}.muted{color:var(--muted)}
aside{position:sticky;top:58px;align-self:start;max-height:calc(100vh - 72px);overflow:auto;display:flex;
flex-direction:column;gap:14px}
fieldset{border:0;margin:0 0 14px;padding:0;min-width:0}
legend{font-weight:600;margin-bottom:6px;padding:0}legend small{font-weight:400;color:var(--muted)}
.options{display:flex;flex-wrap:wrap;gap:6px}
label.choice{flex:1 1 auto;display:flex;align-items:center;gap:6px;padding:4px 8px;border:1px solid var(--line);
border-radius:6px;
cursor:pointer;background:#fff;font-size:14px;white-space:nowrap}
label.choice input{margin:0}label.choice kbd{margin-left:auto}
label.choice:has(input:checked){border-color:var(--focus);background:#ddf4ff;font-weight:600}
label.choice:has(input:focus-visible){outline:2px solid var(--focus)}
fieldset.invalid legend{color:#cf222e}fieldset.invalid label.choice,fieldset.invalid textarea{border-color:#cf222e}
kbd{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;border:1px solid #c9d1d9;border-bottom-width:2px;
border-radius:4px;padding:0 5px;background:var(--wash);color:#24292f;font-weight:400}
textarea{display:block;width:100%;font:inherit;line-height:1.5;padding:8px 10px;border:1px solid var(--line);
border-radius:6px;resize:vertical}
textarea:focus{outline:2px solid var(--focus);border-color:var(--focus)}
.buttons{display:flex;gap:10px}
button{font:inherit;padding:6px 14px;border-radius:6px;border:1px solid var(--line);background:var(--wash);
cursor:pointer}
button.primary{background:#1f883d;border-color:#1a7f37;color:#fff;font-weight:600}
button.primary kbd{background:#2da44e;border-color:#1a7f37;color:#fff}
.error{margin:0;padding:10px 14px;border-radius:6px;background:#ffebe9;border:1px solid #ff8182;color:#82071e}
.keys dl{display:grid;grid-template-columns:max-content 1fr;gap:5px 12px;margin:0;font-size:13px}
.keys dd{margin:0;color:var(--muted)}
@media (max-width:960px){main{grid-template-columns:1fr}aside{position:static;max-height:none}}
"""
