"""Keep tokens out of the log: every line the server writes passes through `Redact`.

Tornado's access log writes each request's URI (`?token=...`), its uncaught-exception lines carry the
request's repr, and a client may put a (right or nearly right) token anywhere in a URL. So, rather
than trusting every log call, the handler filters each finished line: the value of any query
parameter whose name contains "token" becomes <redacted>, and the configured secrets (plain or
percent-encoded) become <token> wherever they appear.
"""
from __future__ import annotations

import logging
import re
from typing import Iterable
from urllib.parse import quote, quote_plus

# A match starts only where a word starts, and the name is taken possessively: the plain
# `\w*token\w*=` backtracked from every position of a long word, so one 15,000-character URL
# (any client can send one: it is logged) took over a second to clean, on the server's event loop.
_QUERY_TOKEN = re.compile(r"(?i)(?<!\w)(?=\w*token)(\w++=)[^&\s'\"#;,)]*")
_BASIC = re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/=_-]{4,}")


class Redact(logging.Filter):
    """A handler filter that rewrites each record's text without the secrets."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = set()
        for secret in secrets:
            if secret:
                forms.update((secret, quote(secret, safe=""), quote_plus(secret)))
        self.secrets = sorted(forms, key=len, reverse=True)  # longest first

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<token>")
        text = _QUERY_TOKEN.sub(r"\1<redacted>", text)
        return _BASIC.sub(r"\1<redacted>", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        record.msg, record.args = self.clean(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        return True


def install(secrets: Iterable[str]) -> None:
    """Filter every handler of the root logger (where every stage's lines go)."""
    redact = Redact(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
