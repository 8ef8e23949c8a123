"""The one rule for a model's name, wherever it comes from: the config, the command line,
a registry, or a URL (the repository routes). A name is a name, never a spec: no '=',
':', '@' or '/', no spaces, nothing a log line or a path could be forged with."""

from __future__ import annotations

import re

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME.fullmatch(name) is not None
