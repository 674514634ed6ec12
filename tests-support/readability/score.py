"""Readability of patient-facing text, scored by textstat (PyPI), not by Telechart's own code.

Reads JSON from stdin: [{"id": ..., "language": "en"|"es", "text": ...}, ...]
Writes one JSON line per passage: id, language, the score and whether it meets the target —
Flesch-Kincaid grade <= 6 in English, Fernandez-Huerta >= 70 in Spanish.
Exit status 1 when any passage misses its target.
"""
import json
import sys

import textstat

passages = json.load(sys.stdin)
failed = False
for p in passages:
    text = p["text"]
    if p["language"] == "es":
        textstat.set_lang("es")
        score = textstat.fernandez_huerta(text)
        ok = score >= 70
        metric = "fernandez_huerta"
    else:
        textstat.set_lang("en_US")
        score = textstat.flesch_kincaid_grade(text)
        ok = score <= 6
        metric = "flesch_kincaid_grade"
    failed = failed or not ok
    print(json.dumps({"id": p["id"], "language": p["language"], metric: round(score, 2), "ok": ok}))
sys.exit(1 if failed else 0)
