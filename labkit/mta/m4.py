"""Read and change a sendmail.mc as m4, keeping everything else of the file as it was.

A :class:`McFile` splits the text into *statements*: macro calls at the top level
(``define(`confX', `v')dnl``, ``FEATURE(`access_db')dnl``, ...) and the text between
them (comments, ``dnl`` lines, blank lines). Macro calls are found with m4's own quoting
rules: a backquote opens a quoted string, a quote closes it, quotes nest, and commas and
parentheses inside quotes do not count; a call may span several lines. Editing replaces,
removes or inserts whole statements, so every untouched byte is kept, comments and
``dnl`` included, and ``str(mc)`` is the original text when nothing changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labkit.errors import LabkitError

#: Macros this editor understands as statements.
MACROS = ("define", "undefine", "FEATURE", "DAEMON_OPTIONS", "CLIENT_OPTIONS",
          "TRUST_AUTH_MECH", "MAILER", "MAILER_DEFINITIONS", "OSTYPE", "DOMAIN", "VERSIONID",
          "include", "LOCAL_CONFIG", "LOCAL_RULESETS", "HACK", "EXPOSED_USER",
          "MASQUERADE_AS", "MASQUERADE_DOMAIN", "RELAY_DOMAIN", "LOCAL_DOMAIN", "divert",
          "INPUT_MAIL_FILTER", "MAIL_FILTER")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class McSyntaxError(LabkitError):
    """The sendmail.mc text cannot be read as m4 (an unclosed quote or parenthesis)."""


@dataclass
class Statement:
    """A piece of the file: a macro call (``macro`` set) or plain text (``macro`` None)."""
    text: str
    macro: str | None = None
    args: tuple[str, ...] = ()
    line: int = 0  # 1-based line where it starts

    @property
    def first_arg(self) -> str | None:
        return self.args[0] if self.args else None


def quote(value: str) -> str:
    """``value`` as an m4 quoted string: `value'."""
    if value.count("`") != value.count("'"):
        raise LabkitError(f"cannot quote {value!r} for m4: its ` and ' quotes do not pair up")
    return f"`{value}'"


def unquote(arg: str) -> str:
    """An argument without its outer m4 quotes and surrounding blanks."""
    a = arg.strip()
    if a.startswith("`") and a.endswith("'"):
        return a[1:-1]
    return a


def _scan_call(text: str, start: int) -> tuple[int, list[str]]:
    """Parse the argument list that opens at ``text[start] == '('``.

    Returns the index just after the closing parenthesis and the raw arguments.
    """
    depth_q = 0
    depth_p = 0
    args: list[str] = []
    current: list[str] = []
    i = start
    while i < len(text):
        c = text[i]
        if depth_q:
            if c == "`":
                depth_q += 1
            elif c == "'":
                depth_q -= 1
            current.append(c)
        elif c == "`":
            depth_q = 1
            current.append(c)
        elif _is_dnl(text, i):  # dnl deletes through the end of the line, in arguments too
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl + 1
            continue
        elif c == "(":
            depth_p += 1
            if depth_p > 1:
                current.append(c)
        elif c == ")":
            depth_p -= 1
            if depth_p == 0:
                args.append("".join(current))
                return i + 1, args
            current.append(c)
        elif c == "," and depth_p == 1:
            args.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    raise McSyntaxError("unclosed " + ("quote (a ` without its ')" if depth_q
                                       else "parenthesis"))


class McFile:
    """A sendmail.mc, as statements. ``str(mc)`` gives the (edited) text."""

    def __init__(self, text: str) -> None:
        self.statements: list[Statement] = []
        self._parse(text)

    @classmethod
    def parse(cls, text: str) -> McFile:
        return cls(text)

    def _parse(self, text: str) -> None:
        i, plain_start = 0, 0
        depth_q = 0
        line_of = _line_index(text)
        while i < len(text):
            c = text[i]
            if depth_q:  # quoted text at top level (e.g. in a comment-less string)
                depth_q += (c == "`") - (c == "'")
                i += 1
                continue
            if c == "#" or _is_dnl(text, i):
                nl = text.find("\n", i)  # comments and dnl run to the end of the line
                i = len(text) if nl < 0 else nl + 1
                continue
            m = _NAME.match(text, i) if (i == 0 or not _word(text[i - 1])) else None
            if m and m.group(0) in MACROS:
                name, end = m.group(0), m.end()
                args: list[str] = []
                if end < len(text) and text[end] == "(":
                    try:
                        end, args = _scan_call(text, end)
                    except McSyntaxError as exc:
                        raise McSyntaxError(f"line {line_of(i)}: {name}: {exc}") from None
                if _is_dnl(text, end):  # the dnl that ends the statement's line
                    nl = text.find("\n", end)
                    end = len(text) if nl < 0 else nl + 1
                elif end < len(text) and text[end] == "\n":
                    end += 1
                if plain_start < i:
                    self.statements.append(Statement(text[plain_start:i], line=line_of(plain_start)))
                self.statements.append(Statement(text[i:end], name, tuple(args), line_of(i)))
                i = plain_start = end
                continue
            if m:
                i = m.end()
                continue
            if c == "`":
                depth_q = 1
            i += 1
        if plain_start < len(text):
            self.statements.append(Statement(text[plain_start:], line=line_of(plain_start)))

    def __str__(self) -> str:
        return "".join(s.text for s in self.statements)

    # --- reading ---------------------------------------------------------------

    def calls(self, macro: str) -> list[Statement]:
        return [s for s in self.statements if s.macro == macro]

    def _find(self, macro: str, first: str) -> list[Statement]:
        return [s for s in self.calls(macro) if s.first_arg is not None
                and unquote(s.first_arg) == first]

    def get_define(self, name: str) -> str | None:
        """The value the file defines for ``name`` (the last define wins), else None."""
        found = None
        for s in self.statements:
            if s.macro in ("define", "undefine") and s.first_arg and unquote(s.first_arg) == name:
                found = unquote(s.args[1]) if s.macro == "define" and len(s.args) > 1 else None
        return found

    def features(self) -> dict[str, tuple[str, ...]]:
        """Each FEATURE in the file with its further arguments (unquoted)."""
        return {unquote(s.args[0]): tuple(unquote(a) for a in s.args[1:])
                for s in self.calls("FEATURE") if s.args}

    def has_feature(self, name: str) -> bool:
        return name in self.features()

    def mailers(self) -> list[str]:
        return [unquote(s.args[0]) for s in self.calls("MAILER") if s.args]

    def daemon_options(self) -> list[str]:
        return [unquote(s.args[0]) for s in self.calls("DAEMON_OPTIONS") if s.args]

    # --- changing --------------------------------------------------------------

    def _insert_before_mailers(self, stmt: Statement) -> None:
        """Insert where configuration belongs: before MAILER_DEFINITIONS / the first MAILER."""
        for idx, s in enumerate(self.statements):
            if s.macro in ("MAILER_DEFINITIONS", "MAILER", "LOCAL_CONFIG", "LOCAL_RULESETS"):
                self.statements.insert(idx, stmt)
                return
        if self.statements and not str(self).endswith("\n"):
            self.statements.append(Statement("\n"))
        self.statements.append(stmt)

    def set_define(self, name: str, value: str) -> None:
        """define(`name', `value')dnl: replaces the file's define(s) of ``name`` in place."""
        text = f"define({quote(name)}, {quote(value)})dnl\n"
        existing = [s for s in self.statements if s.macro in ("define", "undefine")
                    and s.first_arg and unquote(s.first_arg) == name]
        if existing:
            first = existing[0]
            first.text, first.macro, first.args = text, "define", (quote(name), quote(value))
            for s in existing[1:]:
                self.statements.remove(s)
        else:
            self._insert_before_mailers(Statement(text, "define", (quote(name), quote(value))))

    def remove_define(self, name: str) -> bool:
        """Drop every define/undefine of ``name`` (the m4 default then applies)."""
        before = len(self.statements)
        self.statements = [s for s in self.statements if not (
            s.macro in ("define", "undefine") and s.first_arg and unquote(s.first_arg) == name)]
        return len(self.statements) != before

    def undefine(self, name: str) -> None:
        """undefine(`name')dnl in place of any define of ``name``."""
        self.remove_define(name)
        self._insert_before_mailers(Statement(f"undefine({quote(name)})dnl\n", "undefine",
                                              (quote(name),)))

    def add_feature(self, name: str, *args: str) -> None:
        """FEATURE(`name', ...)dnl; replaces an existing FEATURE of the same name."""
        quoted = [quote(name), *(quote(a) if a else "" for a in args)]
        text = f"FEATURE({', '.join(quoted)})dnl\n"
        existing = self._find("FEATURE", name)
        if existing:
            existing[0].text, existing[0].args = text, tuple(quoted)
            for s in existing[1:]:
                self.statements.remove(s)
        else:
            self._insert_before_mailers(Statement(text, "FEATURE", tuple(quoted)))

    def remove_feature(self, name: str) -> bool:
        found = self._find("FEATURE", name)
        for s in found:
            self.statements.remove(s)
        return bool(found)

    def set_daemon_options(self, daemon_name: str, options: str) -> None:
        """The DAEMON_OPTIONS line whose Name= is ``daemon_name``, replaced or added."""
        text = f"DAEMON_OPTIONS({quote(options)})dnl\n"
        for s in self.calls("DAEMON_OPTIONS"):
            if s.args and re.search(rf"\bName={re.escape(daemon_name)}\b", unquote(s.args[0])):
                s.text, s.args = text, (quote(options),)
                return
        self._insert_before_mailers(Statement(text, "DAEMON_OPTIONS", (quote(options),)))

    def mail_filters(self) -> dict[str, str]:
        """The milters of INPUT_MAIL_FILTER lines: name -> equates (``S=..., F=...``)."""
        return {unquote(s.args[0]): unquote(s.args[1]) if len(s.args) > 1 else ""
                for s in self.calls("INPUT_MAIL_FILTER") if s.args}

    def set_mail_filter(self, name: str, equates: str) -> None:
        """INPUT_MAIL_FILTER(`name', `equates')dnl: the milter ``name`` in the mail path,
        replacing an existing line for it."""
        text = f"INPUT_MAIL_FILTER({quote(name)}, {quote(equates)})dnl\n"
        args = (quote(name), quote(equates))
        for s in self.calls("INPUT_MAIL_FILTER"):
            if s.args and unquote(s.args[0]) == name:
                s.text, s.args = text, args
                return
        self._insert_before_mailers(Statement(text, "INPUT_MAIL_FILTER", args))

    def set_trust_auth_mech(self, mechanisms: str) -> None:
        text = f"TRUST_AUTH_MECH({quote(mechanisms)})dnl\n"
        existing = self.calls("TRUST_AUTH_MECH")
        if existing:
            existing[0].text, existing[0].args = text, (quote(mechanisms),)
            for s in existing[1:]:
                self.statements.remove(s)
        else:
            self._insert_before_mailers(Statement(text, "TRUST_AUTH_MECH", (quote(mechanisms),)))

    def add_mailer(self, name: str) -> None:
        if name not in self.mailers():
            self.statements.append(Statement(f"MAILER({quote(name)})dnl\n", "MAILER",
                                             (quote(name),)))

    def remove_mailer(self, name: str) -> bool:
        found = self._find("MAILER", name)
        for s in found:
            self.statements.remove(s)
        return bool(found)


def _word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _is_dnl(text: str, i: int) -> bool:
    """True if the m4 builtin dnl starts at ``text[i]`` (a whole word)."""
    return (text.startswith("dnl", i) and (i == 0 or not _word(text[i - 1]))
            and (i + 3 >= len(text) or not _word(text[i + 3])))


def _line_index(text: str):
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def line_of(pos: int) -> int:
        lo, hi = 0, len(starts)
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if starts[mid] <= pos:
                lo = mid
            else:
                hi = mid
        return lo + 1
    return line_of
