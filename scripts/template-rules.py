#!/usr/bin/env python3
"""Writes the parts of infra/template.yaml that follow from the rules, from `tally rules`:

- the event source mapping's FilterCriteria (`tally rules filter`), which keeps tally's own
  writes from invoking the function;
- both table definitions' keys, indexes, stream and TTL attribute (`tally rules check --json`);
- the RulesFile parameter's default, the rules file's name in the rules layer (infra/rules/),
  which the function reads at init (TALLY_RULES=/opt/<file>).

Each part sits between a `# >>> rules:NAME` and a `# <<< rules:NAME` comment; everything else
in the template is left as it is. Without RULES the parts are the embedded university rules'.

  template-rules.py [--check] [--tally PATH] [RULES]

--check changes nothing and exits 1, naming the parts, when the template differs from what the
rules give (tests run it so).
"""

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"
RULES_DIR = ROOT / "infra" / "rules"
BEGIN = re.compile(r"^(?P<indent> *)# >>> rules:(?P<name>[a-z-]+)\b.*$")
WIDTH = 84


def tally(binary, *args):
    run = subprocess.run([str(binary), *args], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"template-rules: `tally {' '.join(args)}` failed ({run.returncode}):\n{run.stderr}")
    return json.loads(run.stdout)


def folded_json(value, indent):
    """A JSON value as a folded (>-) YAML scalar: broken only at spaces outside strings, so that
    joining the lines with single spaces gives the JSON back."""
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    breaks, in_string, escaped = [], False, False
    for index, char in enumerate(text):
        if in_string:
            escaped = not escaped and char == "\\"
            if char == '"' and not escaped:
                in_string = False
        elif char == '"':
            in_string = True
        elif char == " ":
            breaks.append(index)
    lines, start, last = [], 0, None
    for at in breaks + [len(text)]:
        if at - start > WIDTH and last is not None:
            lines.append(text[start:last])
            start = last + 1
        last = at
    lines.append(text[start:])
    return [indent + line for line in lines]


def filter_block(criteria, indent):
    lines = [f"{indent}FilterCriteria:", f"{indent}  Filters:"]
    for entry in criteria["Filters"]:
        lines.append(f"{indent}    - Pattern: >-")
        lines.extend(folded_json(json.loads(entry["Pattern"]), indent + "        "))
    return lines


def table_block(table, indent):
    names = [table["pk"], table["sk"]]
    for index in table["indexes"]:
        for name in (index["pk"], index["sk"]):
            if name and name not in names:
                names.append(name)
    lines = [f"{indent}AttributeDefinitions:"]
    lines += [f"{indent}  - {{AttributeName: {name}, AttributeType: S}}" for name in names]
    lines += [
        f"{indent}KeySchema:",
        f"{indent}  - {{AttributeName: {table['pk']}, KeyType: HASH}}",
        f"{indent}  - {{AttributeName: {table['sk']}, KeyType: RANGE}}",
    ]
    if table["indexes"]:
        lines.append(f"{indent}GlobalSecondaryIndexes:")
        for index in table["indexes"]:
            lines.append(f"{indent}  - IndexName: {index['name']}")
            lines.append(f"{indent}    KeySchema:")
            lines.append(f"{indent}      - {{AttributeName: {index['pk']}, KeyType: HASH}}")
            if index["sk"]:
                lines.append(f"{indent}      - {{AttributeName: {index['sk']}, KeyType: RANGE}}")
            lines.append(f"{indent}    Projection: {{ProjectionType: ALL}}")
    lines += [
        f"{indent}# Both images: a record's effect is contribution(new) - contribution(old).",
        f"{indent}StreamSpecification:",
        f"{indent}  StreamViewType: NEW_AND_OLD_IMAGES",
        f"{indent}TimeToLiveSpecification:",
        f"{indent}  AttributeName: {table['ttl']}",
        f"{indent}  Enabled: true",
    ]
    return lines


def rules_file_block(name, indent):
    # The one value the filter and the table were written for: another, given at deploy time,
    # would run rules whose records the filter drops.
    return [f'{indent}Default: "{name}"', f'{indent}AllowedValues: ["{name}"]']


def render(template, parts):
    """The template with every marked part replaced; the names of the parts that changed."""
    out, changed, lines, index = [], [], template.split("\n"), 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        begin = BEGIN.match(line)
        if not begin:
            continue
        name, indent = begin["name"], begin["indent"]
        if name not in parts:
            sys.exit(f"template-rules: {TEMPLATE}: unknown part `{name}`")
        end = next((at for at in range(index, len(lines)) if lines[at].strip() == f"# <<< rules:{name}"), None)
        if end is None:
            sys.exit(f"template-rules: {TEMPLATE}: `# >>> rules:{name}` has no `# <<< rules:{name}`")
        wanted = parts[name](indent)
        if lines[index:end] != wanted:
            changed.append(name)
        out.extend(wanted)
        index = end
    return "\n".join(out), changed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rules", nargs="?", help="rules file (default: the embedded university rules)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the template differs")
    parser.add_argument("--tally", default=str(ROOT / "target" / "debug" / "tally"), help="the tally binary")
    args = parser.parse_args()
    given = [args.rules] if args.rules else []
    checked = tally(args.tally, "--json", "rules", "check", *given)
    criteria = tally(args.tally, "--json", "rules", "filter", *given)
    file_name = pathlib.Path(args.rules).name if args.rules else ""
    parts = {
        "filter": lambda indent: filter_block(criteria, indent),
        "table": lambda indent: table_block(checked["table"], indent),
        "rules-file": lambda indent: rules_file_block(file_name, indent),
    }
    template = TEMPLATE.read_text()
    rendered, changed = render(template, parts)
    packaged = RULES_DIR / file_name if file_name else None
    stale_copy = packaged is not None and (not packaged.exists() or packaged.read_bytes() != pathlib.Path(args.rules).read_bytes())
    if args.check:
        if changed or stale_copy:
            what = ", ".join(changed + ([f"infra/rules/{file_name}"] if stale_copy else []))
            rules = args.rules or "the embedded university rules"
            sys.exit(f"template-rules: infra/template.yaml is not what {rules} give ({what}); run `make template` to write it")
        return
    TEMPLATE.write_text(rendered)
    if stale_copy:
        shutil.copyfile(args.rules, packaged)
    print(f"infra/template.yaml: rules {checked['rules']} (digest {checked['digest']}); parts rewritten: {', '.join(changed) or 'none'}")


if __name__ == "__main__":
    main()
