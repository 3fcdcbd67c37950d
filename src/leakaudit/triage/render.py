"""Triage output: terminal (rich) and a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from leakaudit.triage.model import LOW_RISK, Assessment


def print_assessment(a: Assessment, console) -> None:
    from rich.markup import escape

    def p(text: str, **kw) -> None:  # our markup on; every user text goes through escape()
        console.print(text, markup=True, **kw)

    p(f"[bold]{escape(a.profile.name)}[/]: {escape(a.profile.title)}   [bold]top risk {a.score:.3f}[/]",
      highlight=False)
    if a.measured_from:
        p(f"  measured results from {escape(', '.join(a.measured_from))} replace the assumed leakage "
          "(marked 'measured')", highlight=False)
    for i, r in enumerate(a.risks, 1):
        p(f"  {i}. {escape(r.title)}: {r.score:.3f}" + (" (measured)" if r.measured else ""), highlight=False)
        for f in r.factors:
            p(f"       × {escape(f.text())}", highlight=False)
    p("  audits to run first:", highlight=False)
    for i, au in enumerate(a.audits, 1):
        p(f"    {i}. {escape(au['audit'])}: {escape(au['why'])}", highlight=False)
        if au["command"]:
            p(f"       $ {escape(au['command'])}", highlight=False)
    if a.control:
        c = a.control
        p(f"  most impactful control: [bold]{escape(c['title'])}[/] ({escape(c['why'])})", highlight=False)
    else:
        p("  most impactful control: none of the candidate controls applies", highlight=False)
    if a.flags:
        for fl in a.flags:
            p(f"  [bold]{escape(fl['regulation'])}[/] ({escape(fl['status'])}): {escape(fl['why'])}",
              highlight=False)
    else:
        p("  regulatory flags: none (no personal data, PHI or high-risk domain in the profile)", highlight=False)
    for n in a.notes:
        p(f"  note: {escape(n)}", highlight=False)


def print_comparison(ranked: list[Assessment], console) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="Deployments ranked by top risk", show_lines=True)
    for col in ("rank", "profile", "top risk", "score", "driving factors", "control", "flags"):
        t.add_column(col)
    for i, a in enumerate(ranked, 1):
        top = a.risks[0]
        t.add_row(str(i), escape(f"{a.profile.name}: {a.profile.title}"), escape(top.key), f"{a.score:.3f}",
                  escape(", ".join(f"{f.name} {f.value:.2g}" + ("*" if f.source == "assumed" else "")
                                   + ("†" if f.source == "measured" else "") for f in top.factors)),
                  escape((a.control["title"].split(" (")[0] if a.control else "—")
                         + (" (low risk: not urgent)" if a.control and a.score < LOW_RISK else "")),
                  escape(", ".join(f["regulation"] for f in a.flags) or "—"))
    console.print(t)
    console.print("* assumed  † measured; the score is the product of the factors "
                  "(leakaudit.triage.model)", highlight=False)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>leakaudit triage</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}
code{background:#f4f4f4;padding:.1em .3em}.measured{color:#06c;font-weight:bold}.assumed{color:#a60}</style>
</head><body>
<h1>Deployment risk triage</h1>
<p>Scores are products of documented factors (leakaudit.triage.model); higher is riskier.</p>
{% if ranked|length > 1 %}
<h2>Ranking</h2>
<table><tr><th>rank</th><th>profile</th><th>top risk</th><th>score</th><th>control</th><th>flags</th></tr>
{% for a in ranked %}<tr><td>{{ loop.index }}</td><td>{{ a.profile.name }}: {{ a.profile.title }}</td>
<td>{{ a.risks[0].key }}</td><td>{{ '%.3f' % a.score }}</td>
<td>{{ a.control.title if a.control else '—' }}</td>
<td>{{ a.flags | map(attribute='regulation') | join(', ') or '—' }}</td></tr>{% endfor %}
</table>{% endif %}
{% for a in ranked %}
<h2>{{ a.profile.name }}: {{ a.profile.title }}</h2>
{% if a.measured_from %}<p class="measured">Measured results from {{ a.measured_from | join(', ') }} replace the assumed leakage.</p>{% endif %}
<table><tr><th>risk</th><th>score</th><th>factors</th></tr>
{% for r in a.risks %}<tr><td>{{ r.title }}</td><td>{{ '%.3f' % r.score }}</td><td><ul>
{% for f in r.factors %}<li class="{{ f.source }}">{{ f.text() }}</li>{% endfor %}</ul></td></tr>{% endfor %}
</table>
<h3>Audits to run first</h3><ol>
{% for au in a.audits %}<li><b>{{ au.audit }}</b>: {{ au.why }}{% if au.command %}<br><code>{{ au.command }}</code>{% endif %}</li>{% endfor %}
</ol>
<h3>Most impactful control</h3>
<p>{% if a.control %}<b>{{ a.control.title }}</b>: {{ a.control.why }} ({{ a.control.effect }}){% else %}none applies{% endif %}</p>
<h3>Regulatory flags</h3>
{% if a.flags %}<ul>{% for fl in a.flags %}<li><b>{{ fl.regulation }}</b> ({{ fl.status }}): {{ fl.why }}</li>{% endfor %}</ul>
{% else %}<p>none</p>{% endif %}
{% for n in a.notes %}<p><i>{{ n }}</i></p>{% endfor %}
{% endfor %}
</body></html>
"""


def write_html(ranked: list[Assessment], path: str | Path, *, option: str = "--html") -> Path:
    """Write the triage page to ``path`` atomically; a file there that leakaudit did not write
    is refused (``leakaudit --overwrite`` replaces it), one it wrote is replaced."""
    import jinja2

    from leakaudit.runs.staged import write_owned_text

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return write_owned_text(path, option, env.from_string(_TEMPLATE).render(ranked=ranked))
