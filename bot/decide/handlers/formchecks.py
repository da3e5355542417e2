"""What a notification's form is checked for beyond reading it: whose CA it names.

A CA that answers only the seed's own questions (which do not ask for its
name) is still known by its sender: the configured CA of that contact fills
`ca_name`, and the acknowledgement says where the answer came from (R1a). A
form that names another CA than the sender's is flagged to the CA and staff;
the incident stays the sender's CA's, since only its contacts may touch it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from bot.parse.forms.notification import FieldValue, ParsedForm

CA_NAME_FROM_CONFIG = ("not on the form: taken from the configuration, "
                       "the sender is a contact of {ca}")


def _same_name(a: str, b: str) -> bool:
    """'Example CA', 'example ca.' and 'Example-CA' are one name to a reader."""
    def norm(text: str) -> str:
        return " ".join(re.findall(r"[^\W_]+", text.casefold()))
    return norm(a) == norm(b)


def with_ca_name(form: ParsedForm, ca_name: str) -> ParsedForm:
    """`form` with `ca_name` filled from the sender's configured CA when the form gave none."""
    if "ca_name" in form.fields:
        return form
    filled = FieldValue("ca_name", ca_name, note=CA_NAME_FROM_CONFIG.format(ca=ca_name))
    return replace(form, fields={"ca_name": filled, **form.fields})


def ca_name_flag(form: ParsedForm, ca_name: str) -> str | None:
    """A sentence when the form's CA name is not the sender's CA, else None."""
    given = form.fields.get("ca_name")
    if given is None or _same_name(given.value, ca_name):
        return None
    return (f"the form names the CA {given.value!r}, but the sender is a contact of "
            f"{ca_name}; the incident is recorded for {ca_name}")
