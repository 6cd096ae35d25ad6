"""autograder.sinks.sanitise: every kind of active content a student can put in a notebook is dropped, and what an
instructor needs to grade (text, images, Markdown, math, tables, https links, nbgrader's cell metadata) is
kept. Each payload is checked twice: in the sanitised notebook, and in the HTML that nbconvert's exporter
(formgrader's and the feedback page's renderer) makes of it, where no element may carry an event handler, a
`javascript:` URL, a frame or a form, and no script may appear that the template itself does not have."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from html.parser import HTMLParser

import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from autograder.settings import course_settings
from autograder.sinks import sanitise
from autograder.sinks.sanitise import clean_html, clean_markdown, clean_notebook, clean_output, clean_svg

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cfc0f01f0005"
        "0001ff5fa5b9a90000000049454e44ae426082"
    )
).decode()
AS_TEXT = "it is shown as text"


def _display(data: dict, metadata: dict | None = None):
    return new_output("display_data", data=data, metadata=metadata or {})


def _code(*outputs, source="pass"):
    return new_code_cell(source, outputs=list(outputs))


def _notebook(*cells, **metadata):
    nb = new_notebook(cells=list(cells))
    nb.metadata.update(metadata)
    return nb


class _Elements(HTMLParser):
    """Every start tag of a page with its attributes, and the text of its scripts."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append(json.dumps(dict(attrs), sort_keys=True))

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.scripts[-1] += data.strip()

    def handle_endtag(self, tag):
        self._in_script = False


def _elements(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


EXPORTERS = {}


def _render(nb, template="classic") -> str:
    """The page nbconvert makes (formgrader's template extends 'classic'; the feedback page does too)."""
    exporter = EXPORTERS.setdefault(template, HTMLExporter(template_name=template))
    return exporter.from_notebook_node(nbformat.from_dict(nb))[0]


TEMPLATE_SCRIPTS = {name: set(_elements(_render(_notebook(), name)).scripts) for name in ("classic", "lab")}


def assert_inert(page: str, template="classic"):
    """No element of the page can run anything or send anything."""
    parsed = _elements(page)
    for tag, attrs in parsed.tags:
        assert (
            tag
            not in (
                "iframe",
                "frame",
                "object",
                "embed",
                "form",
                "input",
                "button",
                "base",
                "meta",
                "textarea",
                "select",
                "svg",
                "math",
            )
            or (tag, attrs) == ("meta", {"charset": "utf-8"})
            or tag == "meta"
            and set(attrs) <= {"name", "content", "charset"}
            and "refresh" not in str(attrs)
        ), f"<{tag} {attrs}>"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"<{tag} {name}={value!r}>"
            assert "javascript:" not in (value or "").replace(" ", "").lower(), f"<{tag} {name}={value!r}>"
        if tag == "img":
            assert (attrs.get("src") or "data:image/").startswith("data:image/"), f"an outside image: {attrs}"
    foreign = set(parsed.scripts) - TEMPLATE_SCRIPTS[template]
    assert not foreign, f"scripts the template does not have: {foreign}"


# Payloads: (name, notebook cell) pairs; each must leave nothing active and nothing of its marker's script.
PAYLOADS = {
    "script tag (text/html)": _code(
        _display(
            {
                "text/html": "<script>window.PWNED=1</script><b>shown</b>",
                "text/plain": "<IPython.core.display.HTML object>",
            }
        )
    ),
    "img onerror (text/html)": _code(_display({"text/html": "<img src=x onerror='window.PWNED=1'>"})),
    "svg onload (text/html)": _code(_display({"text/html": "<svg onload='window.PWNED=1'><circle r=3></svg>"})),
    "iframe (text/html)": _code(
        _display(
            {
                "text/html": "<iframe src='/formgrader/api/grades'></iframe>"
                "<iframe srcdoc='<script>parent.PWNED=1</script>'></iframe>"
            }
        )
    ),
    "form (text/html)": _code(
        _display(
            {
                "text/html": "<form action='/formgrader/api/grade/1' method=post>"
                "<input name=score value=0><button>go</button></form>"
            }
        )
    ),
    "javascript: href (text/html)": _code(
        _display({"text/html": "<a href='javascript:window.PWNED=1'>x</a><a href='jav&#x09;ascript:alert(1)'>y</a>"})
    ),
    "handlers everywhere (text/html)": _code(
        _display(
            {
                "text/html": "<div onmouseover=alert(1) style='position:"
                "fixed;inset:0'><p onclick=alert(2)>hi</p><details "
                "open ontoggle=alert(3)></details></div>"
            }
        )
    ),
    "meta refresh and base (text/html)": _code(
        _display({"text/html": "<meta http-equiv=refresh content='0;url=javascript:alert(1)'><base href='//evil/'>"})
    ),
    "application/javascript": _code(
        _display({"application/javascript": "window.PWNED=1", "text/plain": "<IPython.core.display.Javascript object>"})
    ),
    "javascript only": _code(_display({"application/javascript": "window.PWNED=1"})),
    "widget view": _code(
        _display(
            {
                "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
                "text/plain": "HTML(value='<img src=x onerror=alert(1)>')",
            }
        )
    ),
    "svg output with script": _code(
        _display(
            {
                "image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg' "
                "onload='alert(1)'><script>alert(2)</script><foreignObject><div "
                "onclick='alert(3)'>x</div></foreignObject><rect width='1' "
                "height='1'/></svg>"
            }
        )
    ),
    "markdown output": _code(_display({"text/markdown": "<img src=x onerror=alert(1)> [x](javascript:alert(2))"})),
    "image metadata injection": _code(
        _display(
            {"image/png": PNG},
            {"image/png": {"width": "1 onload=window.PWNED=1", "filenames": {"image/png": "/api/x"}}},
        )
    ),
    "image data injection": _code(_display({"image/png": 'x" onerror="window.PWNED=1'})),
    "stream name injection": _code(new_output("stream", name='stdout" onclick="alert(1)', text="out")),
    "markdown script": new_markdown_cell("Answer <script>window.PWNED=1</script> here"),
    "markdown img onerror": new_markdown_cell("<img src=x onerror=window.PWNED=1>"),
    "markdown svg onload": new_markdown_cell("Look: <svg onload=window.PWNED=1><circle r=4></svg>"),
    "markdown javascript: link": new_markdown_cell("[click me](javascript:window.PWNED=1)"),
    "markdown javascript: reference": new_markdown_cell("[click][r]\n\n[r]: javascript:window.PWNED=1"),
    "markdown javascript: autolink": new_markdown_cell("<javascript:window.PWNED=1>"),
    "markdown iframe": new_markdown_cell('<iframe src="/formgrader/api/grades"></iframe>'),
    "markdown form": new_markdown_cell('<form method="post" action="/api/contents"><input name=x></form>'),
    "markdown mermaid": new_markdown_cell("```mermaid\n<img src=x onerror=window.PWNED=1>\n```"),
    "markdown outside image": new_markdown_cell("![tracker](http://127.0.0.1:9/marker.png)"),
    "markdown raw html block": new_markdown_cell('<div onclick="window.PWNED=1">\n\n*text*\n\n</div>'),
    "markdown html after text": new_markdown_cell("<x-y>\n[a](javascript:alert(1))"),
    "raw cell": new_raw_cell("<script>window.PWNED=1</script><img src=x onerror=alert(1)>"),
}


KEPT_TYPES = {
    "text/plain",
    "text/html",
    "text/markdown",
    "text/latex",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/svg+xml",
}


@pytest.mark.parametrize("name", PAYLOADS)
def test_payload_is_inert_in_the_notebook_and_the_page(name):
    nb = clean_notebook(_notebook(PAYLOADS[name]))
    assert "widgets" not in nb.metadata
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert set(output.get("data", {})) <= KEPT_TYPES, output
            assert "javascript" not in json.dumps(output.get("metadata", {})) and "onload" not in json.dumps(output)
            html = output.get("data", {}).get("text/html", "")
            assert not re.search(r"<\s*(script|iframe|form|svg|meta|base)|\son\w+\s*=|javascript:", html, re.I), html
        if cell.cell_type == "markdown":
            assert sanitise._hazards(cell.source + "\n", {}) == ([], False), cell.source
    nbformat.validate(nb)
    for template in ("classic", "lab"):
        assert_inert(_render(nb, template), template)


def test_what_an_instructor_grades_is_kept():
    markdown = (
        "# The answer\n\nWith $a<b$ and $\\varepsilon = \\ln 3$, the bound is\n\n"
        "$$\\frac{e^\\varepsilon}{1 + e^\\varepsilon} \\le p < 1$$\n\n"
        "$$\\begin{aligned} x &< y \\\\ y &= z \\end{aligned}$$\n\n"
        "| $n$ | count |\n|---|---|\n| 1 | 2 < 3 |\n\n"
        "See [the paper](https://arxiv.org/abs/1607.00133) & *emphasis*, `a < b`, H<sub>2</sub>O, "
        "x<sup>2</sup>, <b>bold</b>, <br> and <https://example.org>.\n\n> a quote\n\n- item <i>one</i>"
    )
    png = _display(
        {"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"},
        {"image/png": {"width": 320, "height": 240}},
    )
    table = _display(
        {
            "text/html": "<div><style scoped>.dataframe td {color: red}</style><table border='1' "
            "class='dataframe'><thead><tr style='text-align: right;'><th></th><th>eps</th>"
            "</tr></thead><tbody><tr><th>0</th><td>0.5</td></tr></tbody></table></div>",
            "text/plain": "   eps\n0  0.5",
        }
    )
    nb = _notebook(
        new_markdown_cell(markdown),
        _code(new_output("stream", name="stdout", text="printed 3\n"), png, table, source="print(3)"),
    )
    cleaned = clean_notebook(nbformat.from_dict(json.loads(json.dumps(nb))))
    assert cleaned.cells[0].source == markdown  # nothing in it is active: not one character changed
    code = cleaned.cells[1]
    assert code.source == "print(3)" and code.outputs[0].text == "printed 3\n"
    assert code.outputs[1].data["image/png"] == PNG and code.outputs[1].metadata == {
        "image/png": {"width": 320, "height": 240}
    }
    html = code.outputs[2].data["text/html"]
    assert "<table" in html and "<td>0.5</td>" in html and "style scoped" not in html and "color: red" not in html
    assert code.outputs[2].data["text/plain"] == "   eps\n0  0.5"
    page = _render(cleaned)
    assert_inert(page)
    for shown in (
        "$a&lt;b$",
        "\\frac{e^\\varepsilon}{1 + e^\\varepsilon} \\le p &lt; 1",
        "x &amp;&lt; y",
        '<a href="https://arxiv.org/abs/1607.00133">the paper</a>',
        "<sub>2</sub>",
        "<b>bold</b>",
        "<blockquote>",
        "<table>",
        "<h1",
        "<code>a &lt; b</code>",
        "<em>emphasis</em>",
    ):
        assert shown in page, shown
    assert page == _render(nb) or _render(nb).count("$a&lt;b$") == page.count("$a&lt;b$")


def test_raw_html_in_markdown_is_sanitised_not_escaped():
    """Formatting HTML stays HTML, each active piece is replaced by its sanitised form, and the Markdown and
    math around it are left as written."""
    source = (
        'Math $x<y$ stays.\n\n<div onclick="steal()">\n\n**bold markdown** inside\n\n</div>\n\n'
        '<img src="data:image/png;base64,' + PNG + '" onerror="steal()" alt="a plot"> and '
        '<a href="https://example.org" onclick="steal()">a link</a> and <span style="color: red; '
        'position: fixed; background: url(https://evil/x)">red</span>'
    )
    cleaned = clean_markdown(source)
    assert "onclick" not in cleaned and "onerror" not in cleaned and "position" not in cleaned and "evil" not in cleaned
    assert "Math $x<y$ stays." in cleaned and "**bold markdown** inside" in cleaned
    assert f'<img src="data:image/png;base64,{PNG}" alt="a plot">' in cleaned
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">a link</a>' in cleaned
    assert '<span style="color: red">red</span>' in cleaned
    assert clean_markdown(cleaned) == cleaned  # a fixed point
    assert_inert(_render(_notebook(new_markdown_cell(cleaned))))


def test_a_cell_that_cannot_be_patched_is_shown_as_its_text():
    source = "Quoted `<img src=x onerror=alert(1)>` and then <img src=x onerror=alert(1)>\n~~~~\nfence\n~~~~"
    cleaned = clean_markdown(source)
    assert AS_TEXT in cleaned and "~~~~~\n" in cleaned  # a fence longer than any in the text
    page = _render(_notebook(new_markdown_cell(cleaned)))
    assert_inert(page)
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # the instructor sees what was tried


@pytest.mark.parametrize("url", ["/api/contents", "//evil.example/x", "../../tree", "api/terminals"])
def test_a_markdown_link_to_the_viewers_own_server_is_shown_as_text(url):
    """As in HTML, a Markdown link that is not http(s), mailto or a fragment goes: a relative one would open
    the instructor's own Jupyter server (its API, its terminals) from inside the page."""
    cleaned = clean_markdown(f"See [the notes]({url}) and [the course](https://example.org/course).")
    assert AS_TEXT in cleaned
    assert clean_markdown("See [the course](https://example.org/course) and [below](#answer).") == (
        "See [the course](https://example.org/course) and [below](#answer)."
    )


def test_text_that_merely_looks_like_html_is_untouched():
    for text in (
        "a < b and c > d",
        "5 & 6",
        "If p<0.5 then",
        "$$\\left\\langle x, y \\right\\rangle$$",
        "\\begin{equation} a<b \\end{equation}",
        "time: 12:30, ratio 1:2",
        "mailto:me@example.org",
        "HTML is written `<b>` and &lt;b&gt;",
        "![plot](data:image/png;base64," + PNG + ")",
    ):
        assert clean_markdown(text) == text, text


def test_html_output_keeps_formatting_and_drops_the_rest():
    cleaned = clean_html(
        "<p onclick='x'>Text <b>bold</b> <img src='https://evil/p.png'> <a href='/api/"
        "contents'>local</a> <a href='#top'>top</a> <table><tr><td colspan='2'>1</td>"
        "</tr></table><textarea>secret</textarea><select><option>o</option></select></p>"
    )
    assert cleaned.startswith("<p>Text <b>bold</b> <img> <a rel=") and "/api/contents" not in cleaned
    assert 'href="#top"' in cleaned and '<td colspan="2">1</td>' in cleaned
    assert "textarea" not in cleaned and "secret" not in cleaned and "option" not in cleaned


def test_svg_output_is_kept_static():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots()
    axis.plot([1, 2, 3], [1, 4, 9])
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    cleaned = clean_svg(buffer.getvalue())
    assert cleaned is not None and cleaned.startswith("<svg") and "<path" in cleaned and 'xlink:href="#' in cleaned
    assert cleaned.count("transform=") == buffer.getvalue().count("transform=") > 0  # geometry is kept
    assert cleaned.count('clip-path="url(#') == buffer.getvalue().count('clip-path="url(#') > 0
    hostile = clean_svg(
        "<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'><script>alert(2)</script>"
        "<a href='javascript:alert(3)'><text>t</text></a><set attributeName='href' "
        "to='javascript:alert(4)'/><animate onbegin='alert(5)'/><image href='https://evil/x'/>"
        "<rect width='1' height='1' fill='url(https://evil/p#a)' style='fill: url(https://e/x)'/>"
        "<use href='https://evil/s.svg#a'/><foreignObject><div>html</div></foreignObject></svg>"
    )
    assert hostile is not None
    for active in (
        "onload",
        "script",
        "alert",
        "javascript",
        "evil",
        "set ",
        "animate",
        "image",
        "foreignObject",
        "html",
    ):
        assert active not in hostile, (active, hostile)
    assert "<text>t</text>" in hostile and "<rect" in hostile
    assert clean_svg("not an svg") is None


def test_outputs_of_other_kinds_leave_a_note():
    output = clean_output(_display({"application/javascript": "alert(1)", "application/pdf": "JVBER"}))
    assert output.data == {"text/plain": "[output not shown: application/javascript, application/pdf]"}
    assert clean_output({"output_type": "evil", "data": {}}) is None
    result = clean_output(
        {"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {}, "execution_count": "<b>"}
    )
    assert result.execution_count is None and result.data == {"text/plain": "1"}


def test_widget_state_and_foreign_metadata_are_dropped_nbgrader_flags_kept():
    flags = {
        "grade": True,
        "grade_id": "threshold_explanation",
        "locked": False,
        "points": 2,
        "schema_version": 3,
        "solution": True,
        "task": False,
        "checksum": "0123abcd",
        "cell_type": "markdown",
    }
    answer = new_markdown_cell(
        "My answer",
        metadata={
            "nbgrader": {**flags, "comment": "<img src=x onerror=alert(1)>", "score": 99},
            "tags": ["ok-tag", 'bad" onclick="x'],
            "editable": True,
            "jupyter": {"source_hidden": False},
            "widgets": {"x": 1},
            "colab": {"id": "y"},
        },
    )
    odd = new_markdown_cell("text", metadata={"nbgrader": {"grade_id": '"><script>', "grade": False}})
    nb = _notebook(
        answer,
        odd,
        widgets={
            "application/vnd.jupyter.widget-state+json": {
                "state": {"abc": {"model_name": "HTMLModel", "state": {"value": "<img src=x onerror=a()>"}}}
            }
        },
        title="<script>alert(1)</script>",
        kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
        language_info={"name": "python", "version": "3.11.7", "pygments_lexer": "ipython3"},
    )
    answer.id, odd.id = "good-id_1", 'bad id"><script>'
    cleaned = clean_notebook(nb)
    assert cleaned.metadata == {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python", "version": "3.11.7", "pygments_lexer": "ipython3"},
    }
    assert cleaned.cells[0].metadata == {
        "nbgrader": flags,
        "tags": ["ok-tag"],
        "editable": True,
        "jupyter": {"source_hidden": False},
    }
    assert "nbgrader" not in cleaned.cells[1].metadata
    assert cleaned.cells[0].id == "good-id_1" and cleaned.cells[1].id != odd.id
    nbformat.validate(cleaned)
    assert "widgets" not in _render(cleaned).lower().replace("jupyter-widgets", "")


def test_instructor_cells_stay_as_written():
    badge = (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/dp-course/differential-privacy/blob/main/x.ipynb)"
    )
    assert AS_TEXT in clean_markdown(badge)  # an outside image, from a student
    nb = clean_notebook(_notebook(new_markdown_cell(badge)), trusted=frozenset({badge}))
    assert nb.cells[0].source == badge


def test_sanitising_twice_changes_nothing():
    nb = clean_notebook(_notebook(*(json.loads(json.dumps(c)) for c in PAYLOADS.values())))
    once = json.dumps(nb, sort_keys=True)
    assert json.dumps(clean_notebook(nb), sort_keys=True) == once


def test_it_costs_milliseconds():
    """A notebook like the course's, with answers, tables and figures: well under 50 ms (a feedback page costs
    about 400 ms); 1 MB of HTML output under a second, and more than Grading.markup_size_limit is not parsed at all."""
    table = "<table>" + "".join(f"<tr><td>{i}</td><td>{i * 0.5}</td></tr>" for i in range(60)) + "</table>"
    cells = []
    for i in range(30):
        cells.append(new_markdown_cell(f"## Part {i}\n\nWith $\\varepsilon_{i} < 1$: see [x](https://e.org/{i})."))
        cells.append(_code(_display({"text/html": table, "text/plain": "t"}), _display({"image/png": PNG})))
    clean_notebook(_notebook(new_markdown_cell("warm <b>up</b>")))
    start = time.perf_counter()
    clean_notebook(_notebook(*cells))
    assert time.perf_counter() - start < 0.05
    start = time.perf_counter()
    big = clean_html("<div>" + "<p>hello <b>world</b></p>" * 40_000 + "</div>")
    assert time.perf_counter() - start < 1.0 and big.count("<p>") == 40_000
    start = time.perf_counter()
    huge = clean_output(
        _display({"text/html": "<p>x</p>" * (course_settings().markup_size_limit // 8 + 1), "text/plain": "t"})
    )
    assert time.perf_counter() - start < 0.1 and huge.data == {"text/plain": "t"}


def test_a_flood_of_html_outputs_costs_a_bounded_time():
    """32 MB of HTML outputs (the output limit): past the notebook's budget they keep their text form only."""
    block = "<p>row <b>x</b></p>" * 1_600  # 30 KB
    nb = _notebook(_code(*(_display({"text/html": block, "text/plain": f"t{i}"}) for i in range(1_000))))
    start = time.perf_counter()
    outputs = clean_notebook(nb).cells[0].outputs
    assert time.perf_counter() - start < 5
    parsed = sum("text/html" in o.data for o in outputs)
    assert 0 < parsed <= course_settings().markup_notebook_limit // len(block) + 1
    assert all(o.data["text/plain"] == f"t{i}" for i, o in enumerate(outputs))


def test_threads_each_get_their_own_parsers():
    results, errors = [], []

    def work():
        try:
            for _ in range(50):
                results.append(clean_markdown("<b onclick=x>y</b> $a<b$") == "<b>y</b> $a<b$")
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and all(results) and len(results) == 200
