"""Student-chosen text on its way out: to the instructor's terminal, and into CSV files a spreadsheet opens.

A student names their folder, files and LMS display name, and their errors' messages become reasons, so any
of these strings may hold terminal control sequences (a new window title, a cleared screen), characters that
hide or reorder text, or a spreadsheet formula. Every sink goes through this module:

- `for_terminal(value)`: the text with every character that is not printable (ESC, BEL, C1 controls, bidi
  overrides, zero-width characters, line and paragraph separators, newlines) shown as its escape (`\\x1b`).
- CSV: OWASP's rule for CSV injection: a cell that starts with `=`, `+`, `-`, `@` (or `|`, `%`, a tab, CR or
  LF, or a full-width `=+-@`) gets a leading apostrophe, so that a spreadsheet reads it as text; a number
  such as `-0.5` or `-1e-05` stays a number, and so does a lone `-`. `for_export` is that rule for the
  exports an LMS or a spreadsheet reads, with their control characters (ESC, BEL, C1) shown as escapes: no
  spreadsheet or LMS needs them raw. The grader's own files in OUT (grades.csv, late.csv, students.csv,
  inputs.csv, intake.csv) are read back by later runs, `report` and `export`, so their cells are escaped
  reversibly: a cell that starts with an apostrophe gets one more, one with a control character is written
  escaped behind `'\\`, and `read_rows` undoes both. (defusedcsv implements the rule too, but leaves a
  leading tab or CR, quotes `-1e-05`, and rewrites `|` inside a cell, so what it writes cannot be read back
  as it was.)
"""

from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path

FORMULA_START = frozenset("=+-@|%\t\r\n\uff1d\uff0b\uff0d\uff20")  # the last four: full-width = + - @
NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
TEXT_MARK = "'"
# No other cell starts so: a value's own leading apostrophe is doubled, and formula_safe adds one only
# before a formula character.
ESCAPED_MARK = TEXT_MARK + "\\"
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def for_terminal(value: object, keep_lines: bool = False) -> str:
    """`value` as text that a terminal shows as it is: every non-printable character as its escape; with
    `keep_lines`, line breaks stay (a traceback), escaped in each line."""
    text = str(value)
    if keep_lines:
        return "\n".join(for_terminal(line) for line in text.split("\n"))
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def formula_safe(value: object) -> str:
    """A CSV cell that no spreadsheet runs as a formula: OWASP's apostrophe before a formula's first
    character. Numbers, None (an empty cell) and a lone `-` (an LMS's "no grade") are left as they are: a
    formula character with nothing after it runs nothing."""
    text = "" if value is None else str(value)
    if len(text) > 1 and text[0] in FORMULA_START and not NUMBER.fullmatch(text):
        return TEXT_MARK + text
    return text


def for_export(value: object) -> str:
    """`formula_safe`, with every control character but tab and line breaks escaped as `for_terminal` does."""
    text = "" if value is None else str(value)
    return formula_safe(CONTROL.sub(lambda match: for_terminal(match.group()), text))


def escape_cell(value: object) -> str:
    """`formula_safe`, reversibly (`unescape_cell` undoes it): a cell that already starts with the apostrophe
    gets one more, and one with a control character is written as the apostrophe, a backslash and its
    Python escapes, so that `cat` shows no escape sequence raw either."""
    text = "" if value is None else str(value)
    if CONTROL.search(text):
        return ESCAPED_MARK + text.encode("unicode_escape").decode("ascii")
    return TEXT_MARK + text if text.startswith(TEXT_MARK) else formula_safe(text)


def unescape_cell(text: str) -> str:
    escaped = text[len(ESCAPED_MARK) :]
    if text.startswith(ESCAPED_MARK) and escaped.isascii():  # the grader's escapes are ASCII
        try:
            return codecs.decode(escaped, "unicode_escape")
        except UnicodeError:  # not the grader's escapes (a sheet edited by hand): the text as it is
            pass
    return text[1:] if text.startswith(TEXT_MARK) else text


class _Writer:
    """csv.writer whose every cell passes through `cell` first."""

    def __init__(self, file, cell, **options):
        self._writer = csv.writer(file, **options)
        self._cell = cell

    def writerow(self, row):
        return self._writer.writerow([self._cell(value) for value in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)


def writer(file, reversible: bool = True, **options) -> _Writer:
    """A csv.writer for the grader's own files (`reversible`, read back with `read_rows`), or, with
    `reversible=False`, for a file another program reads (an LMS import, a spreadsheet)."""
    return _Writer(file, escape_cell if reversible else for_export, **options)


class DictWriter(csv.DictWriter):
    """csv.DictWriter whose cells are escaped as `writer`'s."""

    def __init__(self, file, fieldnames, reversible: bool = True, **options):
        super().__init__(file, fieldnames, **options)
        # DictWriter only calls writerow and writerows; typeshed names the class of csv.writer's objects,
        # which cannot be subclassed.
        self.writer = writer(file, reversible)  # type: ignore[assignment]


def read_rows(path: Path, encoding: str = "utf-8") -> list[dict]:
    """The rows of a CSV file the grader wrote with `writer`, as they were before they were escaped."""
    with open(path, newline="", encoding=encoding) as file:
        return [
            {key: unescape_cell(value) if isinstance(value, str) else value for key, value in row.items()}
            for row in csv.DictReader(file)
        ]
