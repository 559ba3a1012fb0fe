"""One redaction for every URL or DSN shown to a person: console, logs, Dagster events.

Passwords ride inside URLs (`postgresql://billing:secret@db/billing`,
`http://user:token@prometheus:9090`) and inside libpq keyword strings
(`password=secret`); whatever shows such a string passes it through `redact` first.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@  ->  scheme://user:***@
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*):[^\s@]*@")
# password=secret (libpq keyword/value strings, query parameters)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?:'[^']*'|[^\s&;]+)", re.I)


def redact(text: object) -> str:
    """`text` with every password in a URL or `password=` pair replaced by ***."""
    result = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", str(text))
    return _KEYWORD_PASSWORD.sub(rf"\g<head>{MASK}", result)
