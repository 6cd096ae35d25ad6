"""The exporter of nbgrader's GenerateFeedback, with its compiled templates kept for the whole process.

nbgrader makes a new HTMLExporter, and so a new Jinja environment, for every submission, and Jinja compiles
the feedback templates again each time (about 0.3 s of the 0.7 s a feedback page costs here). Jinja's
bytecode cache keys each compiled template by its name and a checksum of its source, so a template that
changes on disk is compiled again.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path

import jinja2
import nbformat
from nbconvert.exporters import HTMLExporter

log = logging.getLogger(__name__)


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


def warm_up() -> None:
    """Render one small feedback page, so that the first real one finds this process's caches filled.

    A process's first page costs about 0.8 s more than the next (templates compiled, the regular expressions
    of the Markdown and CSS-selector parsers, the Python lexer). A submission graded alone waits for that at
    its end, unless this ran while its kernel worked. The exporter is the one nbgrader's GenerateFeedback
    makes, with its templates; a failure here costs only the time it saves.
    """
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    from autograder.pipeline.config import nbgrader_config

    try:
        with tempfile.TemporaryDirectory(prefix="dpc-warm-") as root:
            config = nbgrader_config(Path(root))
            converter = GenerateFeedback(coursedir=CourseDirectory(config=config, root=root), config=config)
            exporter = converter.exporter_class(parent=converter, config=converter.config)
            page = nbformat.v4.new_notebook(
                cells=[
                    nbformat.v4.new_markdown_cell("A *formula* $\\varepsilon = \\ln 3$ and `code`"),
                    nbformat.v4.new_code_cell(
                        "print(sum(range(3)))", outputs=[nbformat.v4.new_output("stream", text="3\n")]
                    ),
                ]
            )
            # What GetGrades puts in the resources of a real page.
            grades = {"notebook": "warm-up", "score": 0.0, "max_score": 0.0, "late_penalty": 0.0}
            exporter.from_notebook_node(page, resources={"nbgrader": grades})
    except Exception as error:
        log.debug("the feedback warm-up failed: %s: %s", type(error).__name__, error)
