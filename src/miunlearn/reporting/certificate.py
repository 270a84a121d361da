"""The human-readable certificate of one deletion request: one self-contained HTML page.

The verdict comes first, in a coloured banner that fits above the fold; then the audit numbers against
their thresholds, the usefulness checks, what was forgotten, the method and its settings, and provenance.
"""

from __future__ import annotations

import html
import json
from typing import Any

#: verdict status -> banner colour (background, text)
COLOURS = {"forgotten": ("#d8f0dc", "#14532d"), "nothing-to-forget": ("#d8f0dc", "#14532d"),
           "inconclusive": ("#fdf1c7", "#713f12"),
           "not-forgotten": ("#fbd5d5", "#7f1d1d"), "did-nothing": ("#fbd5d5", "#7f1d1d"),
           "over-forgetting": ("#fbd5d5", "#7f1d1d")}
SHOWN_IDS = 200


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and value is not None else "—"


def certificate_html(cert: dict[str, Any]) -> str:
    verdict = cert["verdict"]
    background, colour = COLOURS.get(verdict["status"], ("#eee", "#222"))
    audit = cert["audit"]
    has_retrain = any("auc_retrain" in r for r in audit["attacks"].values())
    attack_rows = [[name, _num(r["auc_before"]), _num(r["auc"]), _num(r["threshold"]),
                    "pass" if r["passed"] else "FAIL"] + ([_num(r.get("auc_retrain"))] if has_retrain else [])
                   for name, r in audit["attacks"].items()]
    models = audit["models"]
    accuracy_rows = [[name] + [_num(100 * m[k], 1) for k in ("forget_acc", "retain_acc", "test_acc")]
                     + [_num(m.get("mia_efficacy"), 1)] for name, m in models.items()]
    findings = "".join(f"<li class=\"{'flag' if f['flagged'] else 'ok'}\">{_e(f['message'])}</li>"
                       for f in verdict["findings"])
    ids = cert["forgotten_ids"]
    shown = ", ".join(map(str, ids[:SHOWN_IDS])) + (f" … and {len(ids) - SHOWN_IDS} more (all in certificate.json)"
                                                    if len(ids) > SHOWN_IDS else "")
    provenance = cert["provenance"]
    prov_rows = [[k, v if not isinstance(v, dict) else json.dumps(v, sort_keys=True)] for k, v in provenance.items()]
    comparator = cert.get("retrain_comparator")
    body = f"""
<div id="verdict" style="background:{background};color:{colour}">
<div class="status">Verdict: {_e(verdict['status'])}</div><p>{_e(verdict['summary'])}</p>
<p class="small">Request {cert['request']} · {cert['count']} row(s) forgotten · method {_e(cert['method']['name'])}
· {_e(cert['time'])}</p></div>
<h2>Audit: forgotten rows (members) vs held-out audit rows (never seen)</h2>
<p>{audit['n_forget']} forgotten rows against {audit['n_audit']} held-out audit rows. An attack passes when its AUC is
at most the threshold, {_e(audit['threshold_rule'])} (level {audit['level']}).</p>
{_table(['attack', 'AUC before', 'AUC after', 'threshold', 'result'] + (['AUC retrain'] if has_retrain else []),
        attack_rows)}
<h2>Usefulness checks</h2><ul>{findings}</ul>
<h2>Accuracy (%)</h2>
{_table(['model', 'forgotten rows', 'kept rows (sample)', 'held-out audit rows', 'MIA-efficacy %'], accuracy_rows)}
{'' if not comparator else '<p>Retrained comparator: average gap ' + _num(comparator['avg_gap'], 2)
 + ' points, JS divergence to retrain on the forgotten rows ' + _num(comparator['js_to_retrain'], 4) + '.</p>'}
<h2>Forgotten IDs</h2><p class="ids">{_e(shown)}</p>
<h2>Method and settings</h2>
<p>{_e(cert['method']['name'])}: {_e(cert['method']['stop_reason'])} ({_num(cert['method']['seconds'], 2)} s)</p>
<pre>{_e(json.dumps(cert['method']['settings'], indent=1, sort_keys=True))}</pre>
<h2>Provenance</h2>{_table(['what', 'value'], prov_rows)}
"""
    title = f"miunlearn certificate: request {cert['request']}"
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>\n")


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:1em auto;padding:0 1em;color:#222}
#verdict{padding:.6em 1em;border-radius:6px;margin:.5em 0 1em}#verdict .status{font-size:1.4em;font-weight:bold}
.small{font-size:13px}table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;word-break:break-all}
li.flag{color:#7f1d1d;font-weight:bold}.ids{font-family:monospace;font-size:13px}pre{font-size:12px}
"""
