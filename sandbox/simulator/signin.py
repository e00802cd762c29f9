"""The Login with Amazon sign-in and consent page, ``/ap/oa``: what a browser shows between app and Amazon.

A companion app sends the customer here with the OAuth 2 authorization request (``client_id``,
``response_type=code``, ``redirect_uri``, ``state``, ``scope``, and for PKCE ``code_challenge`` with
``code_challenge_method=S256``). Two scopes are served:

- ``profile``: sign-in. The customer is picked; the code exchanges for the app's access token of that
  customer (the token the companion API's ``Authorization: Bearer`` carries).
- ``dash:replenish`` with ``scope_data`` ``{"dash:replenish": {"device_model", "serial",
  "is_test_device"?}}``: the DRS consent. The customer is picked, then a product for each slot of the
  model (``catalog.DEVICE_MODELS``); the code is the one the backend exchanges when it links the device.

"Allow" redirects to ``redirect_uri`` with ``code``, ``scope`` and ``state``; "Cancel" with
``error=access_denied``. A request whose ``client_id`` or ``redirect_uri`` cannot be trusted gets an
error page and no redirect, as OAuth 2 requires; other request errors are redirected as ``error=``.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlparse

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from .catalog import DEVICE_MODELS, DeviceModelEntry
from .records import Product
from .state import Simulator, SimulatorError

SIGN_IN_SCOPES = frozenset({"profile", "profile:user_id"})
DRS_SCOPE = "dash:replenish"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9+_-]{1,64}$")
_CODE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# The OAuth parameters a form post carries back unchanged as hidden fields.
_REQUEST_FIELDS = (
    "client_id",
    "response_type",
    "redirect_uri",
    "state",
    "scope",
    "scope_data",
    "code_challenge",
    "code_challenge_method",
)
_NO_PRODUCT = "none"


class _Refused(Exception):
    """An authorization request refused with an OAuth ``error`` (redirected when the target is trusted)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class _Consent:
    """The DRS part of a request: which device the customer is asked about."""

    model: DeviceModelEntry
    serial: str
    is_test_device: bool


@dataclass(frozen=True)
class _AuthorizationRequest:
    redirect_uri: str
    state: str | None
    scope: str
    code_challenge: str | None
    consent: _Consent | None
    fields: dict[str, str]


def sign_in_page(simulator: Simulator, args: MultiDict[str, str]) -> Response:
    """``GET /ap/oa``: the page, or an error (page or redirect)."""
    request = _parse_or_refuse(simulator, args)
    if isinstance(request, Response):
        return request
    return _page(_title(request), _form(simulator, request))


def sign_in_answer(simulator: Simulator, form: MultiDict[str, str]) -> Response:
    """``POST /ap/oa``: the customer's answer → a redirect to the app with a code or an error."""
    request = _parse_or_refuse(simulator, form)
    if isinstance(request, Response):
        return request
    if form.get("action") != "allow":
        return _redirect_error(form, _Refused("access_denied", "The customer did not allow access"))
    try:
        customer_id = _customer(simulator, form)
        if request.consent is None:
            code = simulator.sign_in(
                customer_id=customer_id,
                redirect_uri=request.redirect_uri,
                code_challenge=request.code_challenge,
            )
        else:
            code = str(
                simulator.authorize(
                    customer_id=customer_id,
                    model_id=request.consent.model.model_id,
                    serial=request.consent.serial,
                    slots=_picked_products(request.consent.model, form),
                    is_test_device=request.consent.is_test_device,
                    code_challenge=request.code_challenge,
                    redirect_uri=request.redirect_uri,
                )["authorizationCode"]
            )
    except SimulatorError as exc:
        body = f"<p role='alert'>{html.escape(exc.message)}</p>" + _form(simulator, request)
        return _page(_title(request), body, status=exc.status)
    answer = {"code": code, "scope": request.scope}
    if request.state is not None:
        answer["state"] = request.state
    return _redirect(request.redirect_uri, answer)


class _Untrusted(Exception):
    """A request that must not be redirected anywhere (unknown client, bad redirect URI)."""


def _parse_or_refuse(simulator: Simulator, args: MultiDict[str, str]) -> _AuthorizationRequest | Response:
    """The request, or the answer refusing it: an error page if untrusted, else a redirect with ``error``."""
    try:
        return _parse(simulator, args)
    except _Untrusted as exc:
        return _page("Sign-in error", f"<p role='alert'>{html.escape(str(exc))}</p>", status=400)
    except _Refused as exc:
        return _redirect_error(args, exc)


def _parse(simulator: Simulator, args: MultiDict[str, str]) -> _AuthorizationRequest:
    if args.get("client_id") != simulator.client_id:
        raise _Untrusted("Unknown client_id: this application is not registered with Login with Amazon.")
    redirect_uri = args.get("redirect_uri", "")
    parsed = urlparse(redirect_uri)
    if not parsed.scheme or not parsed.netloc or parsed.fragment:
        raise _Untrusted("redirect_uri must be an absolute URI without a fragment.")
    if args.get("response_type") != "code":
        raise _Refused("unsupported_response_type", "Only response_type=code is supported")
    challenge = args.get("code_challenge") or None
    if challenge is not None and (
        args.get("code_challenge_method") != "S256" or not _CODE_CHALLENGE.match(challenge)
    ):
        raise _Refused("invalid_request", "code_challenge must be an S256 challenge (43 characters)")
    scopes = set((args.get("scope") or "").split())
    if not scopes:
        raise _Refused("invalid_scope", "scope is required")
    consent = None
    if DRS_SCOPE in scopes:
        consent = _consent(args.get("scope_data"))
    elif not scopes <= SIGN_IN_SCOPES:
        raise _Refused("invalid_scope", f"Unsupported scope {' '.join(sorted(scopes - SIGN_IN_SCOPES))}")
    fields = {name: args[name] for name in _REQUEST_FIELDS if args.get(name)}
    return _AuthorizationRequest(
        redirect_uri, args.get("state"), " ".join(sorted(scopes)), challenge, consent, fields
    )


def _consent(scope_data: str | None) -> _Consent:
    try:
        data = json.loads(scope_data or "")
        drs = data[DRS_SCOPE]
        model_id, serial = drs["device_model"], drs["serial"]
    except (ValueError, KeyError, TypeError):
        raise _Refused("invalid_scope", "scope_data must name device_model and serial") from None
    if not isinstance(model_id, str) or not isinstance(serial, str) or not _IDENTIFIER.match(serial):
        raise _Refused("invalid_scope", "device_model and serial must be 1-64 characters of [A-Za-z0-9+_-]")
    model = DEVICE_MODELS.get(model_id)
    if model is None:
        raise _Refused("invalid_scope", f"Unknown device model {model_id}")
    flag = drs.get("is_test_device", False)
    # LWA's scope_data carries is_test_device as a boolean or as the string "true".
    return _Consent(model, serial, flag is True or flag == "true")


def _customer(simulator: Simulator, form: MultiDict[str, str]) -> str:
    chosen = form.get("customer", "")
    if chosen == "new":
        name = (form.get("new_customer_name") or "").strip()
        if not name:
            raise _MissingChoice("Type the new customer's name.")
        return str(simulator.create_customer(name=name)["customerId"])
    if not chosen:
        raise _MissingChoice("Choose who signs in.")
    return chosen


class _MissingChoice(SimulatorError):
    status = 400


def _picked_products(model: DeviceModelEntry, form: MultiDict[str, str]) -> dict[str, Product | None]:
    picked: dict[str, Product | None] = {}
    for slot_id, choices in model.slots.items():
        answer = form.get(f"slot.{slot_id}", _NO_PRODUCT)
        if answer == _NO_PRODUCT:
            picked[slot_id] = None
            continue
        match = [choice.product for choice in choices if choice.product.asin == answer]
        if not match:
            raise _MissingChoice(f"Pick a product offered for {slot_id}.")
        picked[slot_id] = match[0]
    return picked


def _title(request: _AuthorizationRequest) -> str:
    return "Amazon Dash Replenishment" if request.consent else "Sign in with Amazon"


def _form(simulator: Simulator, request: _AuthorizationRequest) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value, quote=True)}">'
        for name, value in request.fields.items()
    )
    customers = "".join(
        f'<li><label><input type="radio" name="customer" value="{html.escape(str(c["customerId"]), True)}"'
        f"{' checked' if index == 0 else ''}> {html.escape(str(c['name']))}</label></li>"
        for index, c in enumerate(simulator.customers())
    )
    new_checked = "" if customers else " checked"
    who = (
        "<fieldset><legend>Who is signing in?</legend><ul>"
        f"{customers}"
        f'<li><label><input type="radio" name="customer" value="new"{new_checked}> A new customer</label> '
        '<label>named <input name="new_customer_name" autocomplete="name"></label></li></ul></fieldset>'
    )
    products = ""
    if request.consent is not None:
        consent = request.consent
        test = " (test device: orders are not charged or shipped)" if consent.is_test_device else ""
        rows = []
        for slot_id, choices in consent.model.slots.items():
            options = "".join(
                f'<option value="{html.escape(c.product.asin, quote=True)}">{html.escape(c.title)}</option>'
                for c in choices
            )
            field = f"slot.{slot_id}"
            rows.append(
                f'<p><label for="{html.escape(field, quote=True)}">{html.escape(slot_id)}</label> '
                f'<select id="{html.escape(field, quote=True)}" name="{html.escape(field, quote=True)}">'
                f'{options}<option value="{_NO_PRODUCT}">No product for now</option></select></p>'
            )
        products = (
            f"<p>{html.escape(consent.model.name)}, serial <strong>{html.escape(consent.serial)}</strong>"
            f"{html.escape(test)} asks to reorder its supplies from Amazon.</p>"
            f"<fieldset><legend>Pick a product for each slot</legend>{''.join(rows)}</fieldset>"
        )
    allow = "Allow" if request.consent else "Sign in"
    return (
        f'<form method="post" action="/ap/oa">{hidden}{who}{products}'
        f'<p><button type="submit" name="action" value="allow">{allow}</button> '
        '<button type="submit" name="action" value="deny">Cancel</button></p></form>'
    )


def _page(title: str, body: str, status: int = 200) -> Response:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:1rem auto;padding:0 1rem}"
        "ul{list-style:none;padding:0}li{margin:.4rem 0}button,select,input{font-size:1rem;padding:.4rem}"
        "fieldset{margin:1rem 0}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return Response(page, status=status, content_type="text/html; charset=utf-8")


def _redirect(target: str, params: dict[str, str]) -> Response:
    separator = "&" if urlparse(target).query else "?"
    response = Response("", status=302)
    response.headers["Location"] = f"{target}{separator}{urlencode(params)}"
    return response


def _redirect_error(args: MultiDict[str, str], refused: _Refused) -> Response:
    params = {"error": refused.error, "error_description": refused.description}
    if args.get("state"):
        params["state"] = args["state"]
    return _redirect(args.get("redirect_uri", ""), params)
