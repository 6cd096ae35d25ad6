"""The feedback exporter compiles each template once per process, and again only when its source changes."""

from pathlib import Path

import jinja2
import nbformat
import nbgrader

from autograder.pipeline import feedback

FORMGRADER = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"

RESOURCES = {"nbgrader": {"notebook": "nb", "score": 1, "max_score": 2, "late_penalty": 0}}  # what GetGrades adds


def _exporter() -> feedback.FeedbackExporter:
    # As nbgrader's GenerateFeedback sets it up.
    return feedback.FeedbackExporter(
        template_name="feedback",
        extra_template_basedirs=[str(FORMGRADER / "templates")],
        extra_template_paths=[str(FORMGRADER / "static" / "node_modules" / "bootstrap" / "dist" / "css")],
    )


def _count_compiles(monkeypatch) -> list[str]:
    compiled = []
    original = jinja2.Environment.compile

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
        compiled.append(name)
        return original(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    return compiled


def test_a_second_exporter_compiles_no_template(monkeypatch):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Feedback"), nbformat.v4.new_code_cell("1 + 1")]
    )
    compiled = _count_compiles(monkeypatch)
    first, _ = _exporter().from_notebook_node(nb, resources=RESOURCES)
    before = len(compiled)
    second, _ = _exporter().from_notebook_node(nb, resources=RESOURCES)
    assert len(compiled) == before, compiled[before:]
    assert second == first and "Feedback" in second


def test_a_changed_template_is_compiled_again(tmp_path, monkeypatch):
    template = tmp_path / "page.j2"
    template.write_text("hello {{ name }}")

    def render() -> str:
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(tmp_path)), bytecode_cache=feedback.TEMPLATES
        )
        return environment.get_template("page.j2").render(name="ada")

    compiled = _count_compiles(monkeypatch)
    assert render() == "hello ada" and render() == "hello ada"
    assert compiled == ["page.j2"]
    template.write_text("goodbye {{ name }}")
    assert render() == "goodbye ada" and compiled == ["page.j2", "page.j2"]


def test_after_the_warm_up_the_first_page_compiles_no_template(monkeypatch):
    monkeypatch.setattr(feedback, "TEMPLATES", feedback._ProcessBytecodeCache())  # a process that made no page yet
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Feedback"), nbformat.v4.new_code_cell("1 + 1")]
    )
    compiled = _count_compiles(monkeypatch)
    feedback.warm_up()
    warmed = len(compiled)
    assert warmed > 0, "the warm-up compiled no template"
    page, _ = _exporter().from_notebook_node(nb, resources=RESOURCES)
    assert "Feedback" in page and compiled[warmed:] == []


def test_a_failed_warm_up_is_silent(monkeypatch):
    monkeypatch.setattr(feedback, "TEMPLATES", feedback._ProcessBytecodeCache())

    def broken(*args, **kwargs):
        raise RuntimeError("no templates here")

    monkeypatch.setattr(feedback.HTMLExporter, "from_notebook_node", broken)
    assert feedback.warm_up() is None
    assert feedback.TEMPLATES._code == {}
