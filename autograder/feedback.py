"""The exporter of nbgrader's GenerateFeedback, with its compiled templates kept for the whole process.

nbgrader makes a new HTMLExporter, and so a new Jinja environment, for every submission, and Jinja compiles
the feedback templates again each time (about 0.3 s of the 0.7 s a feedback page costs here). Jinja's
bytecode cache keys each compiled template by its name and a checksum of its source, so a template that
changes on disk is compiled again.
"""
from __future__ import annotations

import threading

import jinja2
from nbconvert.exporters import HTMLExporter


class _ProcessBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates in memory, shared by every exporter of this process."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with self._lock:
            self._code[bucket.key] = bucket.bytecode_to_string()


TEMPLATES = _ProcessBytecodeCache()


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTMLExporter whose Jinja environment uses the process's compiled templates."""

    def _create_environment(self) -> jinja2.Environment:
        environment = super()._create_environment()
        environment.bytecode_cache = TEMPLATES
        return environment
