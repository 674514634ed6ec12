"""Readability of the after-visit summaries an EHR received, scored by textstat (PyPI).

Reads the NDJSON files `telechart demo --export` wrote (every resource the sandbox EHR holds),
takes each after-visit summary DocumentReference (LOINC 34133-9), decodes its attachment (HTML is
reduced to its words with the standard library's parser), and scores it in its language with
score.py: Flesch-Kincaid grade <= 6 in English, Fernandez-Huerta >= 70 in Spanish.
Exit status 1 when any summary misses its target, or when there is no summary at all.
"""
import base64
import html.parser
import json
import pathlib
import subprocess
import sys


class Words(html.parser.HTMLParser):
    """The text a reader hears: block elements end a sentence; style and script are skipped."""

    BLOCKS = {"h1", "h2", "h3", "p", "li", "section", "main", "title"}

    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script", "title"):
            self.skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script", "title"):
            self.skip -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def words_of(attachment):
    raw = base64.b64decode(attachment["data"]).decode("utf-8")
    if attachment.get("contentType", "").startswith("text/html"):
        parser = Words()
        parser.feed(raw)
        raw = "".join(parser.parts)
    # A heading or list line is a sentence of its own.
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    return "\n".join(line if line[-1] in ".!?:" else line + "." for line in lines)


passages = []
for path in sys.argv[1:]:
    for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines():
        resource = json.loads(line)
        if resource.get("resourceType") != "DocumentReference":
            continue
        codes = [c.get("code") for c in resource.get("type", {}).get("coding", [])]
        if "34133-9" not in codes:
            continue
        for content in resource.get("content", []):
            attachment = content.get("attachment", {})
            if "data" not in attachment:
                continue
            language = (attachment.get("language") or "en").split("-")[0]
            passages.append({"id": resource.get("id"), "language": language, "text": words_of(attachment)})

if not passages:
    print("no after-visit summary in", sys.argv[1:], file=sys.stderr)
    sys.exit(1)
scored = subprocess.run(
    [sys.executable, str(pathlib.Path(__file__).with_name("score.py"))],
    input=json.dumps(passages), capture_output=True, text=True,
)
results = [json.loads(l) for l in scored.stdout.splitlines() if l.strip()]
english = [r["flesch_kincaid_grade"] for r in results if "flesch_kincaid_grade" in r]
spanish = [r["fernandez_huerta"] for r in results if "fernandez_huerta" in r]
print(json.dumps({
    "summaries": len(results),
    "english": len(english), "worst_fk_grade": max(english) if english else None,
    "spanish": len(spanish), "worst_fernandez_huerta": min(spanish) if spanish else None,
    "failing": [r for r in results if not r["ok"]],
}))
sys.exit(scored.returncode)
