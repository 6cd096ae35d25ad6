"""The course's instructor tools: release, grade and report (spec section 6), built on nbgrader."""

import sys

# jsonschema (under nbformat) imports rfc3987_syntax only to check the "iri" string format, which no
# notebook schema uses; that import compiles a grammar for 1.5 to 3 s in every grading process.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None makes an import fail; typeshed wants a module
