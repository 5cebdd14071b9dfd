"""Offline checks of infra/template.yaml.

The template is loaded with cfn-lint's own decoder (it understands !Ref, !If, !GetAtt ...),
then the properties whose drift would break tally's correctness are asserted. A small
evaluator resolves parameters, conditions and the few intrinsics the template uses, so the
single-region, global-table and KMS variants are each checked as CloudFormation would
create them. The stream filter is evaluated against sample stream records with a small
implementation of Lambda's filter-rule matching.

Run from the repository root:  .venv/bin/python -m pytest -q infra/tests
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cfnlint.decode import decode

INFRA = Path(__file__).resolve().parents[1]
TEMPLATE = INFRA / "template.yaml"
REGION = "us-east-1"

# From docs/university.md and the engine: the processor's own items, and every source item type.
OWN_ENTITY_TYPES = {
    "stats",
    "assignment_stats",
    "academic_stats",
    "order_stats",
    "daily_stats",
    "tally_ledger",
    "tally_checkpoint",
    "tally_backfill_partial",
    "tally_backfill_marker",
}
SOURCE_ENTITY_TYPES = {
    "course",
    "student",
    "instructor",
    "assignment",
    "submission",
    "user",
    "order",
    "transaction",
    "session",
}


# --------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def template() -> dict:
    tpl, matches = decode(str(TEMPLATE))
    assert not matches, [str(m) for m in matches]
    assert tpl is not None
    return tpl


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


# --------------------------------------------------------------------------- evaluator

NOVALUE = object()


class Unresolved(dict):
    """A value only known at deploy time (a resource Ref or GetAtt), kept symbolic."""


class Stack:
    """Resolves the template for one set of parameter values, like CloudFormation would."""

    def __init__(self, template: dict, **overrides):
        self.template = template
        self.params = {}
        for name, spec in template.get("Parameters", {}).items():
            raw = overrides.get(name, spec.get("Default"))
            if spec["Type"] == "CommaDelimitedList" and not isinstance(raw, list):
                raw = str(raw).split(",")
            elif isinstance(raw, (int, float)):
                raw = str(raw)
            self.params[name] = raw
            check_parameter(name, spec, raw)
        unknown = set(overrides) - set(self.params)
        assert not unknown, f"unknown parameters {unknown}"
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": "111122223333",
            "AWS::Partition": "aws",
            "AWS::StackName": "tally",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self._conditions: dict[str, bool] = {}

    # conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self._cond(self.template["Conditions"][name])
        return self._conditions[name]

    def _cond(self, node) -> bool:
        (fn, args), = node.items()
        if fn == "Fn::Equals":
            a, b = (self.value(x) for x in args)
            assert isinstance(a, str) and isinstance(b, str), (a, b)
            return a == b
        if fn == "Fn::Not":
            return not self._cond(args[0])
        if fn == "Fn::And":
            return all(self._cond(a) for a in args)
        if fn == "Fn::Or":
            return any(self._cond(a) for a in args)
        if fn == "Condition":
            return self.condition(args)
        raise AssertionError(f"unsupported condition function {fn}")

    def exists(self, logical_id: str) -> bool:
        res = self.template["Resources"][logical_id]
        return "Condition" not in res or self.condition(res["Condition"])

    # values
    def value(self, node):
        if isinstance(node, list):
            out = [self.value(x) for x in node]
            return [x for x in out if x is not NOVALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, args), = node.items()
            if key == "Ref":
                return self._ref(args)
            if key == "Fn::GetAtt":
                target = args.split(".", 1) if isinstance(args, str) else list(args)
                assert self.exists(target[0]), f"GetAtt to absent resource {target[0]}"
                return Unresolved({"Fn::GetAtt": target})
            if key == "Fn::If":
                cond, yes, no = args
                return self.value(yes if self.condition(cond) else no)
            if key == "Fn::Join":
                sep, items = args
                items = self.value(items)
                if all(isinstance(i, str) for i in items):
                    return sep.join(items)
                return Unresolved({"Fn::Join": [sep, items]})
            if key == "Fn::Split":
                sep, source = args
                source = self.value(source)
                assert isinstance(source, str)
                return source.split(sep)
            if key == "Fn::Select":
                index, items = args
                items = self.value(items)
                index = int(self.value(index))
                assert 0 <= index < len(items), "Fn::Select out of range fails the deployment"
                return items[index]
            if key == "Fn::Sub":
                return self._sub(args)
        out = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NOVALUE}

    def _ref(self, name):
        if name == "AWS::NoValue":
            return NOVALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        assert name in self.template["Resources"], f"Ref to unknown {name}"
        assert self.exists(name), f"Ref to absent resource {name}"
        return Unresolved({"Ref": name})

    def _sub(self, args):
        text, variables = (args, {}) if isinstance(args, str) else args
        variables = {k: self.value(v) for k, v in variables.items()}
        pieces = []

        def lookup(match):
            name = match.group(1)
            if name in variables:
                val = variables[name]
            elif name in self.pseudo or name in self.params:
                val = self._ref(name)
            else:
                val = self.value({"Fn::GetAtt": name}) if "." in name else self._ref(name)
            pieces.append(val)
            return val if isinstance(val, str) else "\0"

        result = re.sub(r"\$\{([^}!]+)\}", lookup, text)
        if all(isinstance(p, str) for p in pieces):
            return result
        return Unresolved({"Fn::Sub": [text, variables]})

    def resource(self, logical_id: str) -> dict:
        assert self.exists(logical_id), f"{logical_id} is not created in this configuration"
        res = self.template["Resources"][logical_id]
        return self.value(res.get("Properties", {}))


def check_parameter(name: str, spec: dict, value) -> None:
    """Reject values CloudFormation itself would refuse, so every scenario is deployable."""
    for v in value if isinstance(value, list) else [value]:
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], v), f"{name}={v!r} violates AllowedPattern"
        if "AllowedValues" in spec:
            assert v in [str(x) for x in spec["AllowedValues"]], f"{name}={v!r} not allowed"
        if spec["Type"] == "Number":
            n = float(v)
            assert spec.get("MinValue", n) <= n <= spec.get("MaxValue", n), f"{name}={v} out of range"


def ref(name):
    return Unresolved({"Ref": name})


def getatt(name, attr):
    return Unresolved({"Fn::GetAtt": [name, attr]})


SINGLE = {}
GLOBAL = {"ReplicaRegions": "eu-west-1,ap-southeast-2"}
KMS_ARN = "arn:aws:kms:us-east-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
SCENARIOS = {
    "single": SINGLE,
    "global": GLOBAL,
    "single-kms": {"KmsKeyArn": KMS_ARN},
    "global-kms": {**GLOBAL, "KmsKeyArn": KMS_ARN},
}


def table_id(stack: Stack) -> str:
    single, glob = stack.exists("Table"), stack.exists("GlobalTable")
    assert single != glob, "exactly one table definition must be created"
    return "GlobalTable" if glob else "Table"


@pytest.fixture(params=sorted(SCENARIOS))
def stack(request, template) -> Stack:
    return Stack(template, **SCENARIOS[request.param])


# --------------------------------------------------------------------------- template


def test_is_a_sam_template(template):
    assert template["Transform"] == "AWS::Serverless-2016-10-31"


def test_exactly_one_table_definition_per_configuration(template):
    assert table_id(Stack(template)) == "Table"
    assert table_id(Stack(template, ReplicaRegions="eu-west-1")) == "GlobalTable"
    assert template["Parameters"]["ReplicaRegions"]["Type"] == "CommaDelimitedList"
    assert template["Parameters"]["ReplicaRegions"]["Default"] == ""


# --------------------------------------------------------------------------- table

TABLE_IDS = ["Table", "GlobalTable"]


@pytest.mark.parametrize("logical_id", TABLE_IDS)
def test_table_types_and_retention(resources, logical_id):
    res = resources[logical_id]
    assert res["Type"] == {"Table": "AWS::DynamoDB::Table", "GlobalTable": "AWS::DynamoDB::GlobalTable"}[logical_id]
    assert res["DeletionPolicy"] == "Retain"
    assert res["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("logical_id", TABLE_IDS)
def test_table_keys_and_indexes(resources, logical_id):
    props = resources[logical_id]["Properties"]
    assert props["TableName"] == {"Ref": "TableName"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
        "pk": "S",
        "sk": "S",
        "studentID": "S",
        "entityType": "S",
        "courseDate": "S",
    }
    assert [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]] == [("pk", "HASH"), ("sk", "RANGE")]
    gsis = {g["IndexName"]: g for g in props["GlobalSecondaryIndexes"]}
    assert set(gsis) == {"studentID-index", "entityType-courseDate-index"}
    assert [(k["AttributeName"], k["KeyType"]) for k in gsis["studentID-index"]["KeySchema"]] == [("studentID", "HASH")]
    assert [(k["AttributeName"], k["KeyType"]) for k in gsis["entityType-courseDate-index"]["KeySchema"]] == [
        ("entityType", "HASH"),
        ("courseDate", "RANGE"),
    ]
    for gsi in gsis.values():
        assert gsi["Projection"] == {"ProjectionType": "ALL"}


@pytest.mark.parametrize("logical_id", TABLE_IDS)
def test_table_stream_ttl_sse(resources, logical_id):
    props = resources[logical_id]["Properties"]
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_table_default_name(template):
    assert template["Parameters"]["TableName"]["Default"] == "university"


def test_single_region_table_protection(template):
    for overrides in ({}, {"KmsKeyArn": KMS_ARN}):
        props = Stack(template, **overrides).resource("Table")
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["DeletionProtectionEnabled"] is True
        sse = props["SSESpecification"]
        assert sse["SSEEnabled"] is True
        if overrides:
            assert sse["SSEType"] == "KMS" and sse["KMSMasterKeyId"] == KMS_ARN
        else:
            assert "KMSMasterKeyId" not in sse  # AWS managed key


@pytest.mark.parametrize("regions", ["eu-west-1", "eu-west-1,ap-southeast-2", "eu-west-1,ap-southeast-2,us-west-2"])
def test_global_table_replicas(template, regions):
    for overrides in ({}, {"KmsKeyArn": KMS_ARN}):
        stack = Stack(template, ReplicaRegions=regions, **overrides)
        props = stack.resource("GlobalTable")
        replicas = props["Replicas"]
        assert [r["Region"] for r in replicas] == [REGION, *regions.split(",")]
        for r in replicas:
            assert r["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
            assert r["DeletionProtectionEnabled"] is True
            if overrides:
                # Local replica by ARN; the others by the multi-Region key's shared id.
                want = KMS_ARN if r["Region"] == REGION else KMS_ARN.split("key/")[1]
                assert r["SSESpecification"] == {"KMSMasterKeyId": want}
            else:
                assert "SSESpecification" not in r
        assert props["SSESpecification"]["SSEEnabled"] is True


def test_replica_regions_pattern(template):
    spec = template["Parameters"]["ReplicaRegions"]
    for ok in ["", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "il-central-1"]:
        check_parameter("ReplicaRegions", spec, [ok])
    for bad in ["EU-WEST-1", "eu_west_1", "eu-west", "eu-west-1 "]:
        with pytest.raises(AssertionError):
            check_parameter("ReplicaRegions", spec, [bad])


def test_replica_regions_limit_is_three(template):
    # A fourth region would be silently ignored; the README says "up to 3". Keep them in step.
    assert "Up to 3" in template["Parameters"]["ReplicaRegions"]["Description"]
    props = Stack(template, ReplicaRegions="eu-west-1,eu-west-2,eu-west-3,eu-north-1").resource("GlobalTable")
    assert len(props["Replicas"]) == 4


# --------------------------------------------------------------------------- function


def test_function_build_and_runtime(resources):
    fn = resources["Function"]
    assert fn["Type"] == "AWS::Serverless::Function"
    assert fn["Metadata"] == {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": "bootstrap"}}
    props = fn["Properties"]
    assert props["Runtime"] == "provided.al2023"
    assert props["Handler"] == "bootstrap"
    assert props["Architectures"] == ["arm64"]
    assert props["CodeUri"] == "../processor/lambda"
    assert props["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": "FunctionLogGroup"}}


def package_bins(manifest_dir: Path) -> set[str]:
    """The binaries of the package whose manifest is in `manifest_dir`: its [[bin]] targets and,
    when src/main.rs exists, the implicit one named after the package."""
    manifest = tomllib.loads((manifest_dir / "Cargo.toml").read_text())
    bins = {b["name"] for b in manifest.get("bin", [])}
    if (manifest_dir / "src" / "main.rs").exists():
        bins.add(manifest["package"]["name"])
    return bins


def test_code_uri_builds_the_binary(resources):
    # rust-cargolambda runs `cargo lambda build --bin <Binary>` in CodeUri. Cargo resolves --bin in
    # the package whose manifest it finds there; a workspace root that is itself a package (ours:
    # the integration tests) would only look at that package and find no `bootstrap`.
    fn = resources["Function"]
    code_dir = (INFRA / fn["Properties"]["CodeUri"]).resolve()
    binary = fn["Metadata"]["BuildProperties"]["Binary"]
    manifest = tomllib.loads((code_dir / "Cargo.toml").read_text())
    assert "package" in manifest, f"{code_dir} must be a package, not a virtual workspace manifest"
    assert binary in package_bins(code_dir), f"`cargo lambda build --bin {binary}` in {code_dir} finds no such binary"
    root = tomllib.loads((INFRA.parent / "Cargo.toml").read_text())
    assert code_dir.relative_to(INFRA.parent).as_posix() in root["workspace"]["members"], "one Cargo.lock and target/ for all"


def test_the_rules_come_from_the_layer_and_default_to_the_built_in_ones(template):
    # Empty: the function runs the university rules compiled into it; no other value, since the
    # filter and the table are written for those rules.
    spec = template["Parameters"]["RulesFile"]
    assert (spec["Default"], spec["AllowedValues"]) == ("", [""])
    with pytest.raises(AssertionError):
        Stack(template, RulesFile="learning.toml")
    # A template `make template RULES=examples/rules/learning.toml` wrote.
    generated = json.loads(json.dumps(template))
    generated["Parameters"]["RulesFile"].update(Default="learning.toml", AllowedValues=["learning.toml"])
    props = Stack(generated).resource("Function")
    assert props["Environment"]["Variables"]["TALLY_RULES"] == "/opt/learning.toml", "layers mount under /opt"
    assert props["Layers"] == [ref("RulesLayer")]
    layer = template["Resources"]["RulesLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert (INFRA / layer["Properties"]["ContentUri"]).is_dir(), "sam build packages the folder as it is"
    assert layer["Properties"]["CompatibleArchitectures"] == template["Resources"]["Function"]["Properties"]["Architectures"]
    with pytest.raises(AssertionError):
        Stack(template, RulesFile="../etc/passwd")


def test_the_parts_the_rules_give_are_what_the_default_rules_give():
    # scripts/template-rules.py --check runs `tally rules filter` and `tally rules check` and
    # compares; `make test-infra` builds tally first.
    check = subprocess.run([sys.executable, str(INFRA.parent / "scripts" / "template-rules.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_function_settings(template, stack):
    props = stack.resource("Function")
    tid = table_id(stack)
    assert props["Environment"]["Variables"] == {"TABLE_NAME": ref(tid), "TALLY_RULES": "", "RUST_LOG": "info"}
    assert props["MemorySize"] == "256"
    assert props["Timeout"] == "60"
    assert props["Role"] == getatt("FunctionRole", "Arn")
    assert "Policies" not in props  # the explicit role is the whole grant
    assert "ReservedConcurrentExecutions" not in props
    log_group = stack.resource("FunctionLogGroup")
    assert log_group["RetentionInDays"] == "30"
    assert template["Parameters"]["LogRetentionDays"]["Default"] == 30


def test_reserved_concurrency_optional(template):
    assert template["Parameters"]["ReservedConcurrency"]["Default"] == -1
    assert Stack(template, ReservedConcurrency=5).resource("Function")["ReservedConcurrentExecutions"] == "5"
    assert Stack(template, ReservedConcurrency=0).resource("Function")["ReservedConcurrentExecutions"] == "0"


# --------------------------------------------------------------------------- event source mapping


def param(template, name):
    return template["Parameters"][name]


def test_mapping_settings(template, stack):
    esm = stack.resource("StreamMapping")
    assert esm["EventSourceArn"] == getatt(table_id(stack), "StreamArn")
    assert esm["FunctionName"] == ref("Function")
    assert esm["StartingPosition"] == "TRIM_HORIZON"
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["BisectBatchOnFunctionError"] is True
    assert esm.get("Enabled", True) is True
    assert esm["DestinationConfig"] == {"OnFailure": {"Destination": getatt("FailureQueue", "Arn")}}
    assert esm["MetricsConfig"] == {"Metrics": ["EventCount"]}
    assert "TumblingWindowInSeconds" not in esm


@pytest.mark.parametrize(
    "prop, default, low, high",
    [
        ("MaximumRetryAttempts", 10, 0, 10000),  # bounded: -1 would retry forever
        ("MaximumRecordAgeInSeconds", 86400, 60, 604800),  # API range, -1 excluded
        ("ParallelizationFactor", 1, 1, 10),
        ("BatchSize", 100, 1, 10000),
        ("MaximumBatchingWindowInSeconds", 1, 0, 300),
    ],
)
def test_mapping_parameters_are_bounded(template, resources, prop, default, low, high):
    assert resources["StreamMapping"]["Properties"][prop] == {"Ref": prop}
    p = param(template, prop)
    assert p["Type"] == "Number"
    assert p["Default"] == default
    assert p["MinValue"] == low and p["MaxValue"] == high
    assert low <= default <= high
    assert p["MinValue"] >= 0, "-1 (infinite) must not be accepted"


def test_failure_queue(resources):
    q = resources["FailureQueue"]
    assert q["Type"] == "AWS::SQS::Queue"
    assert q["Properties"]["MessageRetentionPeriod"] == 1209600
    assert q["Properties"].get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in q["Properties"]


# --------------------------------------------------------------------------- stream filter
#
# A subset of Lambda's filter-rule matching (the EventBridge pattern language): a pattern
# is a tree of objects whose leaves are lists of rules, ORed; every leaf must match; a rule
# on a field the record does not have never matches, except {"exists": false}.

SUPPORTED_RULES = {"anything-but", "prefix", "exists"}
MISSING = object()


def _leaf_matches(rules, value) -> bool:
    for rule in rules:
        if isinstance(rule, dict):
            (op, arg), = rule.items()
            if op == "exists":
                if (value is not MISSING) == arg:
                    return True
            elif op == "anything-but":
                excluded = arg if isinstance(arg, list) else [arg]
                if isinstance(value, str) and value not in excluded:
                    return True
            elif op == "prefix":
                if isinstance(value, str) and value.startswith(arg):
                    return True
            else:
                raise AssertionError(f"rule {op} not modelled")
        elif value is not MISSING and value == rule:
            return True
    return False


def pattern_matches(pattern: dict, event, *, exists_false_matches_absent_image: bool = True, _depth: int = 0) -> bool:
    """Lambda flattens patterns and records to paths, so {"exists": false} on
    dynamodb.NewImage.x.S also matches a record with no NewImage at all (a REMOVE). The filter
    must not depend on that: with `exists_false_matches_absent_image=False` a pattern reaching
    into an image (or `dynamodb` object) the record lacks never matches, and the tests require
    the same answers both ways."""
    for key, sub in pattern.items():
        present = isinstance(event, dict) and key in event
        if isinstance(sub, dict):
            if not present and not exists_false_matches_absent_image and _depth <= 1:
                return False
            if not pattern_matches(
                sub,
                event[key] if present else {},
                exists_false_matches_absent_image=exists_false_matches_absent_image,
                _depth=_depth + 1,
            ):
                return False
        elif isinstance(sub, list):
            if not _leaf_matches(sub, event[key] if present else MISSING):
                return False
        else:
            raise AssertionError(f"pattern value for {key} must be an object or a list")
    return True


def passes(patterns, record, **kw) -> bool:
    return any(pattern_matches(p, record, **kw) for p in patterns)


@pytest.fixture(scope="module")
def patterns(resources) -> list[dict]:
    filters = resources["StreamMapping"]["Properties"]["FilterCriteria"]["Filters"]
    assert 1 <= len(filters) <= 5, "Lambda allows 5 filters per mapping by default"
    out = []
    for f in filters:
        assert set(f) == {"Pattern"}
        assert isinstance(f["Pattern"], str) and len(f["Pattern"]) <= 4096
        out.append(json.loads(f["Pattern"]))
    return out


def _walk_rules(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk_rules(v)
    elif isinstance(node, list):
        yield from node


def test_filter_uses_only_supported_syntax(patterns):
    for p in patterns:
        # DynamoDB mappings filter on the `dynamodb` key; do not rely on eventName & co.
        assert set(p) == {"dynamodb"}
        for rule in _walk_rules(p):
            if isinstance(rule, dict):
                (op, arg), = rule.items()
                assert op in SUPPORTED_RULES, op
                if op == "anything-but":
                    # Lambda supports anything-but with a list of values, not with prefix & co.
                    assert isinstance(arg, list) and all(isinstance(a, str) for a in arg)
                if op == "prefix":
                    assert isinstance(arg, str) and arg
                if op == "exists":
                    assert isinstance(arg, bool)
            else:
                assert isinstance(rule, str)


def test_filter_excludes_exactly_the_own_entity_types(patterns):
    lists = [
        rule["anything-but"]
        for p in patterns
        for rule in _walk_rules(p)
        if isinstance(rule, dict) and "anything-but" in rule
    ]
    assert lists, "no anything-but rule on entityType"
    for excluded in lists:
        assert set(excluded) == OWN_ENTITY_TYPES
        assert not set(excluded) & SOURCE_ENTITY_TYPES


S = lambda v: {"S": v}  # noqa: E731
N = lambda v: {"N": str(v)}  # noqa: E731

SOURCE_ITEMS = {
    "course": {"pk": S("course#c1"), "sk": S("metadata"), "courseDate": S("2024-09-01")},
    "student": {"pk": S("course#c1"), "sk": S("student#s1"), "studentID": S("s1"), "enrolledAt": S("2024-09-01T10:00:00Z"), "ttl": N(1900000000)},
    "instructor": {"pk": S("course#c1"), "sk": S("instructor#i1"), "instructorID": S("i1")},
    "assignment": {"pk": S("course#c1"), "sk": S("assignment#a1"), "assignmentID": S("a1"), "dueDate": S("2024-10-01")},
    "submission": {"pk": S("course#c1"), "sk": S("submission#a1#s1"), "studentID": S("s1"), "assignmentID": S("a1"), "submittedAt": S("2024-09-20T08:00:00+02:00"), "grade": N("87.5")},
    "user": {"pk": S("user#u1"), "sk": S("profile")},
    "order": {"pk": S("user#u1"), "sk": S("2024-09-02#order#o1"), "amount": N("19.99")},
    "transaction": {"pk": S("user#u1"), "sk": S("2024-09-02#transaction#t1"), "amount": N("-5")},
    "session": {"pk": S("session#x1"), "sk": S("session"), "ttl": N(1700000000)},
}
OWN_ITEMS = {
    "stats": {"pk": S("course#c1"), "sk": S("stats"), "enrollmentCount": N(3)},
    "assignment_stats": {"pk": S("course#c1"), "sk": S("stats#assignment#a1"), "submissionCount": N(2)},
    "academic_stats": {"pk": S("user#s1"), "sk": S("academic_stats"), "enrollmentCount": N(1)},
    "order_stats": {"pk": S("user#u1"), "sk": S("order_stats"), "orderCount": N(4)},
    "daily_stats": {"pk": S("stats#university"), "sk": S("day#2024-09-02"), "orders": N(7)},
    "tally_ledger": {"pk": S("tally#ledger#course#c1"), "sk": S("shard-0001#000000000000000000123")},
    "tally_checkpoint": {"pk": S("tally#checkpoint#shard-0001"), "sk": S("checkpoint")},
    "tally_backfill_partial": {"pk": S("tally#backfill#run1"), "sk": S("part#000000#000000001")},
    "tally_backfill_marker": {"pk": S("tally#backfill"), "sk": S("in-progress"), "finished": {"BOOL": False}},
}
assert set(SOURCE_ITEMS) == SOURCE_ENTITY_TYPES and set(OWN_ITEMS) == OWN_ENTITY_TYPES


def item(entity_type=None, base=None, **extra):
    out = dict(base or {})
    if entity_type is not None:
        out["entityType"] = S(entity_type)
    out["updatedAt"] = S("2024-09-02T00:00:00Z")
    out.update(extra)
    return out


def record(event_name, old=None, new=None, ttl=False):
    image = new or old
    rec = {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": {
            "ApproximateCreationDateTime": 1725235200,
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "SequenceNumber": "4421584500000000017450439091",
            "SizeBytes": 120,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": f"arn:aws:dynamodb:{REGION}:111122223333:table/university/stream/2024-09-01T00:00:00.000",
    }
    if new is not None:
        rec["dynamodb"]["NewImage"] = new
    if old is not None:
        rec["dynamodb"]["OldImage"] = old
    if ttl:
        rec["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return rec


def lifecycle(entity_type, base):
    """INSERT, MODIFY, REMOVE and TTL REMOVE records of one item."""
    v1 = item(entity_type, base)
    v2 = item(entity_type, base, updatedAt=S("2024-09-03T00:00:00Z"), note=S("changed"))
    return {
        "INSERT": record("INSERT", new=v1),
        "MODIFY": record("MODIFY", old=v1, new=v2),
        "REMOVE": record("REMOVE", old=v2),
        "TTL-REMOVE": record("REMOVE", old=v2, ttl=True),
    }


def cases():
    keep, drop = [], []
    for et, base in SOURCE_ITEMS.items():
        keep += [(f"source {et} {ev}", r) for ev, r in lifecycle(et, base).items()]
    for et, base in OWN_ITEMS.items():
        drop += [(f"own {et} {ev}", r) for ev, r in lifecycle(et, base).items()]
    # An item retyped between a source type and an aggregate type must still be seen, so its
    # old contribution is retracted / its new one added.
    src, own = item("submission", SOURCE_ITEMS["submission"]), item("stats", SOURCE_ITEMS["submission"])
    keep += [("retyped source->own", record("MODIFY", old=src, new=own)), ("retyped own->source", record("MODIFY", old=own, new=src))]
    # Items the processor does not know are delivered so it can count them.
    keep += [(f"unknown entityType {ev}", r) for ev, r in lifecycle("widget", SOURCE_ITEMS["course"]).items()]
    untyped = {"pk": S("course#c9"), "sk": S("note#1")}
    keep += [
        ("untyped INSERT", record("INSERT", new=item(None, untyped))),
        ("untyped MODIFY", record("MODIFY", old=item(None, untyped), new=item(None, untyped, x=N(1)))),
        ("untyped REMOVE", record("REMOVE", old=item(None, untyped))),
        ("non-string entityType INSERT", record("INSERT", new=item(None, untyped, entityType=N(5)))),
        ("untyped user# REMOVE", record("REMOVE", old=item(None, {"pk": S("user#u9"), "sk": S("x")}))),
        ("untyped session# INSERT", record("INSERT", new=item(None, {"pk": S("session#z"), "sk": S("session")}))),
    ]
    # ... but nothing under the processor's own `tally#` prefix, typed or not.
    bookkeeping = {"pk": S("tally#lease#shard-0001"), "sk": S("lease")}
    drop += [
        ("untyped tally# INSERT", record("INSERT", new=item(None, bookkeeping))),
        ("untyped tally# MODIFY", record("MODIFY", old=item(None, bookkeeping), new=item(None, bookkeeping, x=N(2)))),
        ("untyped tally# REMOVE", record("REMOVE", old=item(None, bookkeeping))),
    ]
    return keep, drop


KEEP, DROP = cases()


@pytest.mark.parametrize("absent_image", [True, False], ids=["path-semantics", "image-required"])
@pytest.mark.parametrize("name, rec", KEEP, ids=[n for n, _ in KEEP])
def test_filter_keeps_source_records(patterns, name, rec, absent_image):
    assert passes(patterns, rec, exists_false_matches_absent_image=absent_image), name


@pytest.mark.parametrize("absent_image", [True, False], ids=["path-semantics", "image-required"])
@pytest.mark.parametrize("name, rec", DROP, ids=[n for n, _ in DROP])
def test_filter_drops_own_records(patterns, name, rec, absent_image):
    assert not passes(patterns, rec, exists_false_matches_absent_image=absent_image), name


def test_every_filter_is_needed(patterns):
    # Each filter is the only one letting some expected record through, so dropping or
    # breaking any of them fails test_filter_keeps_source_records.
    for i in range(len(patterns)):
        others = patterns[:i] + patterns[i + 1 :]
        assert any(not passes(others, r) for _, r in KEEP), f"filter {i + 1} is redundant"


def test_matcher_is_not_vacuous():
    assert pattern_matches({"dynamodb": {"NewImage": {"a": {"S": ["x"]}}}}, {"dynamodb": {"NewImage": {"a": {"S": "x"}}}})
    assert not pattern_matches({"dynamodb": {"NewImage": {"a": {"S": ["x"]}}}}, {"dynamodb": {"OldImage": {"a": {"S": "x"}}}})
    assert not pattern_matches({"a": [{"anything-but": ["x"]}]}, {})
    assert pattern_matches({"a": [{"exists": False}]}, {"b": 1})
    assert not pattern_matches({"a": [{"prefix": "tally#"}]}, {"a": "course#1"})
    gone = {"dynamodb": {"NewImage": {"entityType": {"S": [{"exists": False}]}}}}
    remove = {"dynamodb": {"OldImage": {"entityType": {"S": "course"}}}}
    assert pattern_matches(gone, remove)
    assert not pattern_matches(gone, remove, exists_false_matches_absent_image=False)
    assert pattern_matches(gone, {"dynamodb": {"NewImage": {"pk": {"S": "course#1"}}}}, exists_false_matches_absent_image=False)


# --------------------------------------------------------------------------- IAM

FORBIDDEN_FUNCTION_ACTIONS = {
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:DeleteItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
}


def statements(policy_document) -> list[dict]:
    st = policy_document["Statement"]
    return st if isinstance(st, list) else [st]


def as_list(x):
    return x if isinstance(x, list) else [x]


def function_statements(stack: Stack) -> list[dict]:
    role = stack.resource("FunctionRole")
    assert "ManagedPolicyArns" not in role, "managed policies would widen the grant"
    out = []
    for policy in role["Policies"]:
        out += statements(policy["PolicyDocument"])
    return out


def by_action_prefix(stmts, prefix):
    return [s for s in stmts if any(a.startswith(prefix) for a in as_list(s["Action"]))]


def test_function_role_trust(stack):
    role = stack.resource("FunctionRole")
    (trust,) = statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"


def test_function_policy_least_privilege(stack):
    stmts = function_statements(stack)
    for s in stmts:
        assert s["Effect"] == "Allow"
        for action in as_list(s["Action"]):
            assert "*" not in action, f"wildcard action {action}"
            assert action not in FORBIDDEN_FUNCTION_ACTIONS, action
        for resource in as_list(s["Resource"]):
            assert resource != "*" and not (isinstance(resource, str) and resource.endswith("*")), resource
        assert "NotAction" not in s and "NotResource" not in s

    tid = table_id(stack)
    stream = [s for s in stmts if "dynamodb:GetRecords" in as_list(s["Action"])]
    table = [s for s in stmts if "dynamodb:PutItem" in as_list(s["Action"])]
    assert len(stream) == 1 and len(table) == 1
    assert set(stream[0]["Action"]) == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    }
    assert stream[0]["Resource"] == getatt(tid, "StreamArn")
    assert set(table[0]["Action"]) == {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:ConditionCheckItem"}
    assert table[0]["Resource"] == getatt(tid, "Arn")
    assert len(by_action_prefix(stmts, "dynamodb:")) == 2

    (sqs,) = by_action_prefix(stmts, "sqs:")
    assert as_list(sqs["Action"]) == ["sqs:SendMessage"]
    assert sqs["Resource"] == getatt("FailureQueue", "Arn")

    kms = by_action_prefix(stmts, "kms:")
    if stack.params["KmsKeyArn"]:
        (k,) = kms
        assert k["Resource"] == KMS_ARN
        assert k["Condition"]["StringEquals"]["kms:ViaService"] == f"dynamodb.{REGION}.amazonaws.com"
    else:
        assert kms == []

    logs = by_action_prefix(stmts, "logs:")
    assert len(logs) == 1 and logs[0]["Resource"] == getatt("FunctionLogGroup", "Arn")
    assert {p.split(":")[0] for s in stmts for p in as_list(s["Action"])} <= {"dynamodb", "sqs", "logs", "kms"}


def test_operator_policy(stack):
    res = stack.template["Resources"]["BackfillOperatorPolicy"]
    assert res["Type"] == "AWS::IAM::ManagedPolicy"
    stmts = statements(stack.resource("BackfillOperatorPolicy")["PolicyDocument"])
    tid = table_id(stack)
    for s in stmts:
        assert s["Effect"] == "Allow"
        for action in as_list(s["Action"]):
            assert "*" not in action
            assert action not in {"dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteTable"}
        assert "*" not in as_list(s["Resource"])
    (table,) = [s for s in stmts if "dynamodb:Scan" in s["Action"]]
    assert set(table["Action"]) == {
        "dynamodb:Scan",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:DescribeTable",
    }
    table_arn = getatt(tid, "Arn")
    assert table["Resource"][0] == table_arn
    assert table["Resource"][1] == Unresolved({"Fn::Sub": ["${TableArn}/index/*", {"TableArn": table_arn}]})
    (stream,) = [s for s in stmts if "dynamodb:GetRecords" in s["Action"]]
    assert set(stream["Action"]) == {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"}
    assert stream["Resource"] == getatt(tid, "StreamArn")
    (sqs,) = by_action_prefix(stmts, "sqs:")
    assert set(sqs["Action"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    assert sqs["Resource"] == getatt("FailureQueue", "Arn")


# --------------------------------------------------------------------------- alarms


def alarm_props(stack, logical_id):
    assert stack.template["Resources"][logical_id]["Type"] == "AWS::CloudWatch::Alarm"
    return stack.resource(logical_id)


def dims(props):
    return {d["Name"]: d["Value"] for d in props["Dimensions"]}


def test_iterator_age_alarm(template, stack):
    a = alarm_props(stack, "IteratorAgeAlarm")
    assert (a["Namespace"], a["MetricName"], a["Statistic"]) == ("AWS/Lambda", "IteratorAge", "Maximum")
    assert dims(a) == {"FunctionName": ref("Function")}
    assert a["ComparisonOperator"] == "GreaterThanThreshold"
    assert a["Threshold"] == "300000"
    assert param(template, "IteratorAgeAlarmMs")["Default"] == 300000


@pytest.mark.parametrize("logical_id, metric", [("FunctionErrorsAlarm", "Errors"), ("FunctionThrottlesAlarm", "Throttles")])
def test_function_alarms(stack, logical_id, metric):
    a = alarm_props(stack, logical_id)
    assert (a["Namespace"], a["MetricName"], a["Statistic"]) == ("AWS/Lambda", metric, "Sum")
    assert dims(a) == {"FunctionName": ref("Function")}
    assert a["ComparisonOperator"] == "GreaterThanThreshold" and a["Threshold"] == 0


@pytest.mark.parametrize("logical_id, metric", [("TableThrottledRequestsAlarm", "ThrottledRequests"), ("TableSystemErrorsAlarm", "SystemErrors")])
def test_table_alarms_cover_each_operation(stack, logical_id, metric):
    a = alarm_props(stack, logical_id)
    returned = [m for m in a["Metrics"] if m.get("ReturnData", True)]
    assert len(returned) == 1 and "Expression" in returned[0]
    stats = [m for m in a["Metrics"] if "MetricStat" in m]
    operations = set()
    for m in stats:
        metric_def = m["MetricStat"]["Metric"]
        assert (metric_def["Namespace"], metric_def["MetricName"]) == ("AWS/DynamoDB", metric)
        assert m["MetricStat"]["Stat"] == "Sum"
        d = dims(metric_def)
        assert set(d) == {"TableName", "Operation"}
        assert d["TableName"] == ref(table_id(stack))
        operations.add(d["Operation"])
        assert m["Id"] in returned[0]["Expression"]
    assert operations == {"BatchGetItem", "TransactWriteItems"}
    assert a["ComparisonOperator"] == "GreaterThanThreshold" and a["Threshold"] == 0


def test_failure_queue_alarm(stack):
    a = alarm_props(stack, "FailureQueueAlarm")
    assert (a["Namespace"], a["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dims(a) == {"QueueName": getatt("FailureQueue", "QueueName")}
    assert a["ComparisonOperator"] == "GreaterThanThreshold" and a["Threshold"] == 0


@pytest.mark.parametrize(
    "logical_id, metric, threshold",
    [
        ("RecordsRejectedAlarm", "RecordsRejected", 0),
        ("RecordsRefusedAlarm", "RecordsRefused", 0),
        ("ConflictRetriesAlarm", "ConflictRetries", "100"),
    ],
)
def test_emf_alarms(template, stack, logical_id, metric, threshold):
    a = alarm_props(stack, logical_id)
    assert (a["Namespace"], a["MetricName"], a["Statistic"]) == ("Tally", metric, "Sum")
    # EMF metrics are matched on their exact dimension set: the engine must emit {TableName}.
    assert dims(a) == {"TableName": ref(table_id(stack))}
    assert a["Period"] == 300 and a["EvaluationPeriods"] == 1
    assert a["ComparisonOperator"] == "GreaterThanThreshold"
    assert a["Threshold"] == threshold
    assert a["TreatMissingData"] == "notBreaching"
    assert param(template, "ConflictRetriesAlarmThreshold")["Default"] == 100


ALARMS = [
    "IteratorAgeAlarm",
    "FunctionErrorsAlarm",
    "FunctionThrottlesAlarm",
    "TableThrottledRequestsAlarm",
    "TableSystemErrorsAlarm",
    "FailureQueueAlarm",
    "RecordsRejectedAlarm",
    "RecordsRefusedAlarm",
    "ConflictRetriesAlarm",
]


def test_alarm_actions_follow_topic_parameter(template):
    assert {k for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"} == set(ALARMS)
    topic = f"arn:aws:sns:{REGION}:111122223333:ops"
    without, with_topic = Stack(template), Stack(template, AlarmTopicArn=topic)
    for name in ALARMS:
        a = without.resource(name)
        assert "AlarmActions" not in a and "OKActions" not in a, name
        a = with_topic.resource(name)
        assert a["AlarmActions"] == [topic] and a["OKActions"] == [topic], name


# --------------------------------------------------------------------------- outputs


def test_outputs(template, stack):
    outputs = {k: stack.value(v["Value"]) for k, v in template["Outputs"].items()}
    tid = table_id(stack)
    assert outputs["TableName"] == ref(tid)
    assert outputs["TableArn"] == getatt(tid, "Arn")
    assert outputs["StreamArn"] == getatt(tid, "StreamArn")
    assert outputs["FunctionName"] == ref("Function")
    assert outputs["FailureQueueUrl"] == ref("FailureQueue")
    assert outputs["FailureQueueArn"] == getatt("FailureQueue", "Arn")
    assert outputs["BackfillOperatorPolicyArn"] == ref("BackfillOperatorPolicy")


# --------------------------------------------------------------------------- cfn-lint


def test_cfn_lint_is_clean():
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"cfn-lint exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert run.stdout.strip() == ""
